"""A DVME level that fuses other backbone levels of its grid (``fuse: [random, simclr]``): each named level's
backbone, and for a level with ``pretrain`` that stage's export as the entry's checkpoint, per dataset; the
same pretraining runs and feature stores as the single-backbone runs; names and levels checked up front."""

from __future__ import annotations

import pytest

from medtransfer.grid.plan import expand
from medtransfer.grid.runner import make_plan
from medtransfer.grid.spec import GridSpecError, load_grid
from medtransfer.grid.state import run_dir

from .bench_helpers import DVME, LINEAR, REPO, SYNTHETIC

SIMCLR = str(REPO / "configs" / "pretrain" / "simclr.yaml")


def fused_grid(fuse: list[str] | None = None, **backbones) -> dict:
    """Two datasets x the linear probe of random-init and SimCLR-pretrained test_resnet, and a DVME level
    fusing them (``fuse``) in a second sub-grid: 4 probes, 2 fusions, 2 pretraining runs."""
    return {
        "name": "fused",
        "overrides": {"trainer.max_epochs": 1, "data.init_args.num_train": 64},
        "axes": {
            "dataset": {"synthetic": SYNTHETIC,
                        "grades": {"config": SYNTHETIC, "overrides": {"data.init_args.kind": "multiclass"}}},
            "fraction": {"small": 0.25},
            "seed": [0],
        },
        "grids": [
            {"protocol": {"linear": LINEAR},
             "backbone": {"random": "test_resnet",
                          "simclr": {"value": "test_resnet",
                                     "pretrain": {"config": SIMCLR, "overrides": {"trainer.max_epochs": 3}}},
                          **backbones}},
            {"protocol": {"linear": DVME},
             "backbone": {"dvme": {"fuse": fuse or ["random", "simclr"]},
                          "concat": {"fuse": fuse or ["random", "simclr"],
                                     "overrides": {"model.init_args.fusion": "concat"}}}},
        ],
    }


def test_a_fusing_level_loads_each_named_levels_backbone_and_its_datasets_export(write_grid, resolver):
    plan = make_plan(write_grid(fused_grid()), resolver=resolver)
    stages = {r.labels["dataset"]: r for r in plan.runs if r.pretraining}
    assert sorted(stages) == ["grades", "synthetic"]  # the fusions add no pretraining runs of their own
    by_id = {r.id: r for r in plan.runs}
    for dataset, stage in stages.items():
        export = str(run_dir(plan.spec.output_dir, stage) / "backbone.pt")
        for label, fusion in (("dvme", "dvme"), ("concat", "concat")):
            run = by_id[f"{dataset}-linear-{label}-fsmall-s0"]
            args = run.config["model"]["init_args"]
            assert [(b["name"], b["checkpoint"]) for b in args["backbones"]] == [
                ("test_resnet", None), ("test_resnet", export)]
            assert args["fusion"] == fusion  # the level's own overrides still apply
            assert run.required_ids == [stage.id]
            # the probes' feature stores: the fusion reads the same two (dataset, weights) families
            probes = [by_id[f"{dataset}-linear-{b}-fsmall-s0"] for b in ("random", "simclr")]
            assert run.store_keys == tuple(p.store_keys[0] for p in probes)


def test_fused_levels_without_pretraining_need_no_stage(write_grid):
    grid = fused_grid(fuse=["random", "other"], other="test_convnext")
    runs = expand(load_grid(write_grid(grid)))
    fused = next(r for r in runs if r.id == "synthetic-linear-dvme-fsmall-s0")
    expected = '--model.init_args.backbones=[{"name": "test_resnet"}, {"name": "test_convnext"}]'
    assert expected in fused.fit_args()


def test_an_unknown_label_is_refused_with_the_known_ones(write_grid):
    with pytest.raises(GridSpecError) as refusal:
        load_grid(write_grid(fused_grid(fuse=["random", "byol"])))
    message = str(refusal.value)
    assert "\n" not in message
    expected = "grids[1].backbone.dvme.fuse: unknown backbone level 'byol'; known: ['random', 'simclr']"
    assert expected in message


@pytest.mark.parametrize(
    ("level", "axis", "reason"),
    [
        ({"fuse": "random"}, "backbone", "expected a list of the grid's backbone labels"),
        ({"fuse": ["random", "random"]}, "backbone", "labels repeat"),
        ({"fuse": ["random"], "value": "test_resnet"}, "backbone", "give no value or pretrain beside fuse"),
        ({"fuse": ["random"]}, "protocol", "only a backbone level can fuse"),
    ],
)
def test_malformed_fusing_levels_are_refused(write_grid, level, axis, reason):
    grid = fused_grid()
    grid["grids"][1][axis]["bad"] = level
    with pytest.raises(GridSpecError, match=reason):
        load_grid(write_grid(grid))


def test_a_level_with_more_than_a_backbone_cannot_be_fused(write_grid):
    """Its other overrides would silently not reach the fusion."""
    grid = fused_grid(fuse=["random", "small"],
                      small={"value": "test_resnet", "overrides": {"model.init_args.stem": "small"}})
    with pytest.raises(GridSpecError, match="backbone level 'small' must be one backbone name"):
        load_grid(write_grid(grid))


def test_a_label_defined_twice_differently_is_ambiguous(write_grid):
    grid = fused_grid()
    grid["grids"].append({"protocol": {"other": LINEAR}, "backbone": {"random": "test_convnext"}})
    with pytest.raises(GridSpecError, match="level 'random' is defined differently in two sub-grids"):
        load_grid(write_grid(grid))
