"""The grid files shipped in configs/benchmark/ plan as their comments say: every run's config parses with the
real ``medtransfer fit`` parser, no run repeats another, the MedMNIST v2 grid is the published recipe, and the
real-data SSL study's end-to-end rows give DVME and the single backbones the same budget."""

from __future__ import annotations

import pytest

from medtransfer.grid.runner import make_plan
from medtransfer.grid.state import PENDING

from .bench_helpers import REPO

BENCHMARKS = REPO / "configs" / "benchmark"
# paper.yaml's 360 runs take half a minute to parse: tests/verbs/test_benchmark.py parses one of each kind
GRIDS = sorted(p for p in BENCHMARKS.glob("*.yaml") if p.name != "paper.yaml")


@pytest.fixture(scope="module")
def plan_of(tmp_path_factory, resolver):
    """The plan of a shipped grid into an empty folder, made once per grid (the big ones take seconds)."""
    plans = {}

    def plan(grid):
        if grid not in plans:
            plans[grid] = make_plan(grid, output_dir=tmp_path_factory.mktemp(grid.stem) / "out", cwd=REPO,
                                    resolver=resolver)
        return plans[grid]

    return plan


@pytest.mark.parametrize("grid", GRIDS, ids=lambda p: p.stem)
def test_shipped_grid_plans_distinct_runs(grid, plan_of):
    plan = plan_of(grid)
    assert plan.runs and set(plan.status.values()) == {PENDING}
    fingerprints = [r.fingerprint for r in plan.runs]
    assert len(set(fingerprints)) == len(fingerprints)


def init_args(run, part):
    return run.config[part]["init_args"]


def test_medmnist_v2_grid_is_the_published_recipe(plan_of):
    plan = plan_of(BENCHMARKS / "medmnist_v2.yaml")
    assert sorted(r.id for r in plan.runs) == sorted(
        f"{d}-v2_recipe-resnet18_28-s{s}" for d in ("pneumonia", "retina") for s in range(3))
    for run in plan.runs:
        model, data, trainer = init_args(run, "model"), init_args(run, "data"), run.config["trainer"]
        assert run.config["model"]["class_path"].endswith("Finetune")
        assert (model["backbone"], model["stem"], model["checkpoint"]) == ("resnet18", "small", None)
        assert model["normalisation"] == {"mean": [0.5] * 3, "std": [0.5] * 3}
        assert (model["optimizer"], model["lr"], model["weight_decay"]) == ("adamw", 0.001, 0.0)
        assert (model["scheduler"], model["milestones"]) == ("multistep", [50, 75])
        assert trainer["max_epochs"] == 100
        assert trainer["precision"] in (None, "32-true")  # bf16 is ~15x slower on AVX2 CPUs
        assert (data["size"], data["image_size"], data["batch_size"]) == (28, 28, 128)
        assert (data["augmentation"], data["train_fraction"]) == ("none", 1.0)
        assert data["flag"] == {"pneumonia": "pneumoniamnist", "retina": "retinamnist"}[run.labels["dataset"]]
        monitors = [c["init_args"]["monitor"] for c in trainer["callbacks"]
                    if c["class_path"].endswith("TaskCheckpoint")]
        assert monitors == ["val/auroc"]
        assert run.config["seed_everything"] == data["fraction_seed"] == int(run.labels["seed"])


def test_ssl_study_end_to_end_rows_share_one_budget(plan_of):
    plan = plan_of(BENCHMARKS / "ssl_medmnist_methods.yaml")
    finetune = [r for r in plan.runs if r.labels.get("protocol") == "finetune"]
    assert len(finetune) == 2 * 4 * 3 * 3  # datasets x (3 backbones + DVME) x fractions x seeds
    budgets = set()
    for run in finetune:
        model, trainer = init_args(run, "model"), run.config["trainer"]
        budgets.add((trainer["max_steps"], trainer["val_check_interval"], model["lr"],
                     model["backbone_lr_multiplier"], model["weight_decay"], model["warmup_epochs"]))
        if run.labels["backbone"] == "dvme":
            assert model["mode"] == "end_to_end" and model["fusion"] == "dvme"
            assert [b["checkpoint"] for b in model["backbones"]] == [
                str(plan.spec.output_dir / "runs" / stage_folder(plan, run, m) / "backbone.pt")
                for m in ("simclr", "byol", "dino")]
        else:
            assert model["checkpoint"].endswith("backbone.pt")
    assert budgets == {(100, 20, 0.001, 0.1, 0.0001, 1.0)}


def stage_folder(plan, run, method):
    """The folder name of the pretraining run of ``method`` on the run's dataset."""
    [stage] = [s for s in plan.runs if s.pretraining
               and s.id.startswith(f"{run.labels['dataset']}-pretrain-{method}")]
    return stage.dir_name
