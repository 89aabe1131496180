"""Grids with a pretraining stage: a level's ``pretrain:`` becomes one run per dataset that goes first, whose
backbone export the level's runs load by path; resumable, skipped downstream when it fails, ordered on
SLURM; reported as a stage of its grid, apart from the tables."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from medtransfer.backbones import create_backbone
from medtransfer.backbones.export import save_backbone
from medtransfer.backbones.layouts import EXPORT_FORMAT
from medtransfer.grid.aggregate import collect
from medtransfer.grid.plan import Run
from medtransfer.grid.runner import describe_plan, make_plan, run_plan
from medtransfer.grid.spec import GridSpecError
from medtransfer.grid.state import DONE, INCOMPLETE, read_manifest, run_dir
from medtransfer.outputs.results import write_json_atomic

from .bench_helpers import LINEAR, REPO, SYNTHETIC, read_json, results_document

SIMCLR = str(REPO / "configs" / "pretrain" / "simclr.yaml")
FINETUNE = str(REPO / "configs" / "model" / "finetune.yaml")


def ssl_grid(**extra) -> dict:
    """Two datasets x linear/finetune x random-init or SimCLR-pretrained test_resnet x one fraction and seed:
    8 runs and one pretraining run per dataset."""
    return {
        "name": "ssl",
        "overrides": {"trainer.max_epochs": 1, "data.init_args.num_train": 64},
        "axes": {
            "dataset": {"synthetic": SYNTHETIC,
                        "grades": {"config": SYNTHETIC, "overrides": {"data.init_args.kind": "multiclass"}}},
            "protocol": {"linear": LINEAR, "finetune": FINETUNE},
            "backbone": {
                "random": "test_resnet",
                "simclr": {"value": "test_resnet",
                           "pretrain": {"config": SIMCLR, "overrides": {"trainer.max_epochs": 3}}},
            },
            "fraction": {"small": 0.25},
            "seed": [0],
        },
        **extra,
    }


def write_export(path: Path, fingerprint: str, steps: int) -> None:
    """A backbone export in SSLPretrain's format (``backbones/export.py``), without weights."""
    preprocessing = {"mean": [0.5] * 3, "std": [0.5] * 3, "input_size": 32, "interpolation": "bilinear"}
    torch.save({"format": EXPORT_FORMAT, "arch": "test_resnet", "timm_kwargs": {}, "embedding": "pre_logits",
                "preprocessing": preprocessing, "fingerprint": fingerprint,
                "trained_with": {"method": "simclr", "steps": steps}, "state_dict": {}}, path)


class InstantStage:
    """Stands in for ``medtransfer fit``: a pretraining run exports a backbone with a new fingerprint each
    time it runs (600 steps, training loss 5.1, kNN monitor AUROC 0.9); a run that loads an export records
    the fingerprint of the export as it is when it starts."""

    def __init__(self, fail: str | None = None) -> None:
        self.fail = fail
        self.started: list[str] = []
        self.exports: dict[str, str] = {}  # export path -> fingerprint
        self.counter = itertools.count()
        self.code = 0

    def __call__(self, run: Run, folder: Path, argv: list[str], env: dict[str, str]):
        self.started.append(run.id)
        self.code = 1 if run.id == self.fail else 0
        if self.code:
            return self
        extra, backbone = None, f"{next(self.counter):016d}"
        args = run.config["model"]["init_args"]
        if run.pretraining:
            path = str(folder / args["export"])
            self.exports[path] = backbone
            write_export(Path(path), backbone, steps=600)
            extra = {"pretraining": {"method": "simclr", "export": {"path": path, "fingerprint": backbone}}}
        elif args.get("checkpoint"):
            backbone = self.exports[args["checkpoint"]]
        document = results_document(run.config, {"auroc": 0.7}, seed=run.config["seed_everything"],
                                    extra=extra, model=run.config["model"]["class_path"].rsplit(".", 1)[-1])
        document["model"]["backbones"][0]["fingerprint"] = backbone
        if run.pretraining:
            document["metrics"] = {"train": {"loss": 5.1}, "val": {"auroc": 0.9}}
        write_json_atomic(folder / "results.json", document)
        return self

    def poll(self) -> int:
        return self.code

    def terminate(self) -> None:
        pass


def test_the_plan_pretrains_once_per_dataset_before_the_runs_that_load_it(write_grid, resolver):
    plan = make_plan(write_grid(ssl_grid()), resolver=resolver)
    stages = [r for r in plan.runs if r.pretraining]
    assert [r.id for r in stages] == ["synthetic-pretrain-simclr", "grades-pretrain-simclr"]
    assert plan.runs[:2] == stages and len(plan.runs) == 10
    pretraining = stages[0].config
    assert pretraining["model"]["class_path"] == "medtransfer.lightning_modules.SSLPretrain"
    assert pretraining["model"]["init_args"]["backbone"] == "test_resnet"  # the level's backbone
    assert pretraining["trainer"]["max_epochs"] == 3  # its own override wins over the grid's
    assert pretraining["data"]["init_args"]["train_fraction"] == 1.0  # the fraction axis is not shared
    assert stages[1].config["data"]["init_args"]["kind"] == "multiclass"  # the dataset level is

    users = [r for r in plan.runs if r.labels.get("backbone") == "simclr"]
    assert len(users) == 4
    for run in users:
        stage = next(s for s in stages if s.labels["dataset"] == run.labels["dataset"])
        assert run.required_ids == [stage.id]
        expected = run_dir(plan.spec.output_dir, stage) / "backbone.pt"
        assert run.config["model"]["init_args"]["checkpoint"] == str(expected)
    assert all(r.config["model"]["init_args"]["checkpoint"] is None
               for r in plan.runs if r.labels.get("backbone") == "random")
    text = describe_plan(plan)
    assert "pretraining: 2 runs (synthetic-pretrain-simclr, grades-pretrain-simclr) before the 4 runs" in text
    assert "<- synthetic-pretrain-simclr" in text


def test_pretraining_goes_first_and_a_finished_grid_starts_nothing(write_grid, resolver):
    grid = write_grid(ssl_grid())
    plan = make_plan(grid, resolver=resolver)
    first = InstantStage()
    assert run_plan(plan, start=first, say=lambda _: None) == 0
    assert first.started[:2] == ["synthetic-pretrain-simclr", "grades-pretrain-simclr"]
    assert len(first.started) == 10

    manifest = read_manifest(plan.spec.output_dir / "grid.json")
    assert [r["id"] for r in manifest["pretraining"]] == first.started[:2]
    assert len(manifest["runs"]) == 8 and not any("pretrain" in r["id"] for r in manifest["runs"])

    plan = make_plan(grid, resolver=resolver)
    assert set(plan.status.values()) == {DONE}
    again = InstantStage()
    assert run_plan(plan, start=again, say=lambda _: None) == 0 and again.started == []


def test_a_pretraining_run_done_again_redoes_the_runs_that_loaded_its_backbone(write_grid, resolver):
    grid = write_grid(ssl_grid())
    plan = make_plan(grid, resolver=resolver)
    starter = InstantStage()
    run_plan(plan, start=starter, say=lambda _: None)
    stage = next(r for r in plan.runs if r.id == "synthetic-pretrain-simclr")
    (run_dir(plan.spec.output_dir, stage) / "results.json").unlink()  # killed: it runs again, new weights

    plan = make_plan(grid, resolver=resolver)
    stale = {r.id for r in plan.runs if plan.status[r.id] != DONE}
    assert stale == {stage.id} | {r.id for r in plan.runs if stage.id in r.required_ids}
    assert plan.status[stage.id] == INCOMPLETE and len(stale) == 3
    run_plan(plan, start=starter, say=lambda _: None)
    assert set(starter.started[10:]) == stale and starter.started[10] == stage.id
    assert set(make_plan(grid, resolver=resolver).status.values()) == {DONE}


def test_a_failed_pretraining_skips_the_runs_that_need_it(write_grid, resolver):
    plan = make_plan(write_grid(ssl_grid()), resolver=resolver)
    starter = InstantStage(fail="grades-pretrain-simclr")
    messages: list[str] = []
    assert run_plan(plan, start=starter, say=messages.append) == 1
    skipped = [m for m in messages if m.startswith("SKIPPED")]
    assert len(skipped) == 2 and all("grades-pretrain-simclr it needs failed" in m for m in skipped)
    assert len(starter.started) == 8  # the other dataset's pretraining and all random-init runs ran
    assert not any(r.startswith("grades-") and "simclr" in r and "pretrain" not in r for r in starter.started)
    summary = (plan.spec.output_dir / "report" / "summary.md").read_text()
    assert "## Not finished (ssl: 3 runs)" in summary and "- grades-pretrain-simclr\n" in summary


def test_only_brings_the_pretraining_its_runs_need(write_grid, resolver):
    plan = make_plan(write_grid(ssl_grid()), only="grades-linear-simclr-*", resolver=resolver)
    assert {r.id for r in plan.todo()} == {"grades-pretrain-simclr", "grades-linear-simclr-fsmall-s0"}


def test_slurm_submits_pretraining_first_and_the_rest_after_it(write_grid, resolver, tmp_path):
    plan = make_plan(write_grid(ssl_grid()), resolver=resolver)
    assert run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path) == 0
    folder = plan.spec.output_dir / "slurm"
    runs = (folder / "runs.txt").read_text().split()
    assert [r.split("-pretrain-")[0] for r in runs[:2]] == ["synthetic", "grades"]
    submit = (folder / "submit.sh").read_text()
    assert "pre=$(sbatch --parsable --array=0-1 grid.sbatch)" in submit
    lines = [line for line in submit.splitlines() if "sbatch" in line and "pre=$(" not in line]
    assert lines and all("--dependency=afterok:$pre" in line for line in lines)


@pytest.mark.parametrize(("backbone", "message"), [
    ({"value": ["test_resnet", "test_convnext"], "pretrain": {"config": SIMCLR}},
     "must be one backbone name"),
    ({"value": "test_resnet", "pretrain": {"config": SIMCLR, "share": ["site"]}}, "shares axis ['site']"),
    ({"value": "test_resnet", "pretrain": {"config": LINEAR}}, "writes no backbone export"),
    ({"value": "test_resnet", "pretrain": {"overrides": {"trainer.max_epochs": 2}}},
     "expected a mapping with"),
])
def test_bad_pretraining_levels_name_the_key(write_grid, resolver, backbone, message):
    grid = ssl_grid()
    grid["axes"]["backbone"]["simclr"] = backbone
    with pytest.raises(GridSpecError, match=message.replace("[", r"\[").replace("]", r"\]")):
        make_plan(write_grid(grid), resolver=resolver)


def test_the_report_lists_its_pretraining_runs_apart_and_leaves_none_out(write_grid, resolver):
    """A grid's own pretraining runs are stages of it: no "left out" line, no table of their own, a section
    with their loss, steps, time and exported backbone; a pretraining config the grid does not plan is still
    left out."""
    plan = make_plan(write_grid(ssl_grid()), resolver=resolver)
    run_plan(plan, start=InstantStage(), say=lambda _: None)
    report = plan.spec.output_dir / "report"
    summary = (report / "summary.md").read_text()
    assert "8 runs from 10 results.json files; 2 pretraining runs (listed below, not scored)." in summary
    assert "Left out" not in summary and "Not finished" not in summary and "SSLPretrain" not in summary
    section = summary.split("## Pretraining runs")[1]
    for stage in (r for r in plan.runs if r.pretraining):
        results = read_json(run_dir(plan.spec.output_dir, stage) / "results.json")
        exported = results["extra"]["pretraining"]["export"]["fingerprint"]
        assert f"| {stage.id} | simclr | 600 | 5.1000 | auroc 90.00 | 1 s | `{exported}` |" in section
    assert len((report / "results.csv").read_text().splitlines()) == 1 + 8  # the evaluation runs only

    stage = next(r for r in plan.runs if r.pretraining)
    stale = read_json(run_dir(plan.spec.output_dir, stage) / "results.json")
    stale["config"]["trainer"]["max_epochs"] = 4  # an older version of the grid pretrained for longer
    (plan.spec.output_dir / "runs" / "older").mkdir()
    write_json_atomic(plan.spec.output_dir / "runs" / "older" / "results.json", stale)
    (left_out,) = collect(plan.spec.output_dir).excluded
    assert "matches none of the grid's 8 runs and 2 pretraining runs" in left_out.reason


def test_a_pretraining_run_started_by_hand_is_listed_with_what_it_exported(tmp_path):
    """Outside a grid too, a pretraining run is no table row but a pretraining run, its steps read from the
    export it wrote, while that export is still the one it recorded."""
    folder = tmp_path / "pretrain_simclr" / "version_0"
    folder.mkdir(parents=True)
    torch.manual_seed(0)
    exported = save_backbone(create_backbone("test_resnet"), folder / "backbone.pt", {"steps": 600})
    document = results_document({"model": {"class_path": "SSLPretrain"}}, {}, model="SSLPretrain",
                                extra={"pretraining": {"method": "byol", "export": exported}})
    document["metrics"] = {"train": {"loss": -0.52}}  # BYOL's objective is a negative cosine similarity
    document["model"]["weights"] = {"produced": exported | {"path": "backbone.pt"}}  # relative, as written
    write_json_atomic(folder / "results.json", document)

    collection = collect(tmp_path)
    assert not collection.records and not collection.excluded
    (run,) = collection.pretraining
    assert (run.method, run.steps, run.loss, run.export) == ("byol", 600, -0.52, exported["fingerprint"])
    assert not collection.failed
    assert run.monitor is None and run.run_id is None

    torch.manual_seed(1)
    replaced = save_backbone(create_backbone("test_resnet"), folder / "backbone.pt", {"steps": 5})
    (run,) = collect(tmp_path).pretraining
    assert run.steps is None
    assert run.export_note == f"export file replaced since (now {replaced['fingerprint']})"
    (folder / "backbone.pt").unlink()
    assert collect(tmp_path).pretraining[0].export_note == "export file missing"
