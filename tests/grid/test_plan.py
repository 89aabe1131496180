"""Grid expansion (axes, sub-grids, exclusions, run ids, argument order) and run fingerprints."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import torch

from medtransfer.grid.fingerprint import group_fingerprint, run_fingerprint
from medtransfer.grid.plan import expand, store_waits
from medtransfer.grid.resolve import InvalidRunError, resolve
from medtransfer.grid.runner import describe_plan, make_plan
from medtransfer.grid.spec import GridSpecError, load_grid

from .bench_helpers import DVME, KNN, LINEAR, SYNTHETIC, small_grid


def test_expansion_crosses_every_axis_in_a_stable_order(write_grid):
    runs = expand(load_grid(write_grid(small_grid())))
    assert len(runs) == 8  # 1 dataset x 1 protocol x 2 backbones x 2 fractions x 2 seeds
    assert [r.id for r in runs[:3]] == [
        "synthetic-linear-supervised-fsmall-s0",
        "synthetic-linear-supervised-fsmall-s1",
        "synthetic-linear-supervised-ffull-s0",
    ]
    assert len({r.id for r in runs}) == 8
    run = runs[-1]
    assert run.labels == {
        "dataset": "synthetic",
        "protocol": "linear",
        "backbone": "ssl",
        "fraction": "full",
        "seed": "1",
    }
    args = run.fit_args()
    # the verb, config pieces first (dataset, then protocol), then the grid's overrides, then the axis values
    assert args[:5] == ["fit", "--config", SYNTHETIC, "--config", LINEAR]
    assert args[5:] == [
        "--trainer.max_epochs=1",
        "--data.init_args.num_train=64",
        "--model.init_args.backbone=test_convnext",
        "--data.init_args.train_fraction=1.0",
        "--seed_everything=1",
        "--data.init_args.fraction_seed=1",
    ]


def test_sub_grids_union_and_exclusions(write_grid):
    grid = small_grid(exclude=[{"backbone": "ssl", "fraction": "small"}])
    backbones = grid["axes"].pop("backbone")
    del grid["axes"]["protocol"]
    grid["grids"] = [
        {"protocol": {"linear": LINEAR}, "backbone": backbones},
        {
            "protocol": {"fused": {"config": LINEAR, "overrides": {"model.init_args.lr": 0.01}}},
            "backbone": {"dvme": ["test_resnet", "test_convnext"]},
        },
    ]
    runs = expand(load_grid(write_grid(grid)))
    ids = [r.id for r in runs]
    assert len(runs) == 6 + 4  # linear: 8 minus 2 excluded; fused: 1 backbone x 2 fractions x 2 seeds
    assert not any("ssl-fsmall" in i for i in ids)
    fused = next(r for r in runs if r.labels["protocol"] == "fused")
    assert '--model.init_args.backbones=["test_resnet", "test_convnext"]' in fused.fit_args()
    assert "--model.init_args.lr=0.01" in fused.fit_args()


def test_two_labels_that_make_one_run_id_are_refused(write_grid):
    """``res/net`` and ``res_net`` are two labels but one run id: one run would be planned and reported under
    one of them."""
    grid = small_grid()
    grid["axes"]["backbone"] = {"res/net": "test_resnet", "res_net": "test_convnext"}
    refusal = (r"two runs get the id synthetic-linear-res_net-fsmall-s0 \(.*backbone='res/net'.*; "
               r".*backbone='res_net'.*\): give their levels")
    with pytest.raises(GridSpecError, match=refusal):
        expand(load_grid(write_grid(grid)))


def test_dotted_override_axis_and_verb(write_grid):
    grid = small_grid()
    grid["axes"]["model.init_args.lr"] = [0.001, 0.01]
    grid["axes"]["protocol"] = {"knn": {"config": LINEAR, "verb": "test"}}
    runs = expand(load_grid(write_grid(grid)))
    assert len(runs) == 16
    assert runs[0].id == "synthetic-knn-supervised-fsmall-lr=0.001-s0"
    assert runs[0].fit_args()[0] == "test"
    assert "--model.init_args.lr=0.001" in runs[0].fit_args()


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda g: g["axes"].update(lr=[0.1]), "axes.lr: unknown axis"),
        (
            lambda g: g["axes"].update(dataset={"pcam": "configs/data/nope.yaml"}),
            "config piece configs/data/nope.yaml",
        ),
        (lambda g: g["axes"].update(fraction=[0.1, -1]), "axes.fraction.-1: a label fraction"),
        (lambda g: g["axes"].update(seed=[0, "x"]), "axes.seed.x: a seed is an integer"),
        (lambda g: g.update(exclude=[{"colour": "red"}]), "exclude[0] names unknown axis ['colour']"),
        (lambda g: g.update(lanucher="slurm"), "unknown key(s) ['lanucher']"),
    ],
)
def test_bad_grid_files_name_the_key(write_grid, change, message):
    grid = small_grid()
    change(grid)
    with pytest.raises(GridSpecError, match="grid.yaml") as err:
        expand(load_grid(write_grid(grid)))
    assert message in str(err.value)


def test_fingerprints_identify_configs_not_places(write_grid, resolver, tmp_path: Path):
    spec = load_grid(write_grid(small_grid()))
    runs = expand(spec)
    resolve(runs, tmp_path / "features", resolver)
    assert len({r.fingerprint for r in runs}) == 8
    # seeds are repeats of one configuration: 2 backbones x 2 fractions = 4 groups of 2
    assert len({r.group for r in runs}) == 4
    assert runs[0].group == runs[1].group and runs[0].fingerprint != runs[1].fingerprint
    # frozen-backbone runs get the grid's shared store folder, which is not part of their identity
    assert runs[0].config["model"]["init_args"]["features_dir"] == str(tmp_path / "features")
    elsewhere = expand(spec)
    resolve(
        elsewhere,
        tmp_path / "other" / "features",
        resolver,
        lambda run: [("trainer.logger.init_args.save_dir", "/elsewhere"), ("trainer.devices", 1)],
    )
    assert [r.fingerprint for r in elsewhere] == [r.fingerprint for r in runs]
    # what a results.json stores (JSON of the resolved config) gives the same fingerprint
    stored = json.loads(json.dumps(runs[0].config, default=str))
    assert run_fingerprint(stored) == runs[0].fingerprint
    assert group_fingerprint(stored) == runs[0].group
    assert run_fingerprint(stored, "test") != runs[0].fingerprint
    stored["model"]["init_args"]["lr"] = 0.5
    assert run_fingerprint(stored) != runs[0].fingerprint


def test_each_feature_store_is_extracted_by_one_run(write_grid, resolver, tmp_path: Path):
    grid = small_grid(
        grids=[
            {
                "protocol": {"linear": LINEAR},
                "backbone": {"supervised": "test_resnet", "ssl": "test_convnext"},
            },
            {"protocol": {"fused": DVME}, "backbone": {"dvme": ["test_resnet", "test_convnext"]}},
        ]
    )
    del grid["axes"]["protocol"], grid["axes"]["backbone"]
    runs = expand(load_grid(write_grid(grid)))
    resolve(runs, tmp_path / "features", resolver)
    by_id = {r.id: r for r in runs}
    waits = store_waits(runs)
    first_resnet = "synthetic-linear-supervised-fsmall-s0"
    first_convnext = "synthetic-linear-ssl-fsmall-s0"
    assert waits[first_resnet] == set() and waits[first_convnext] == set()
    # other fractions and seeds read the same stores; the fusion reads both backbones' stores
    assert waits["synthetic-linear-supervised-ffull-s1"] == {first_resnet}
    assert waits["synthetic-fused-dvme-fsmall-s0"] == {first_resnet, first_convnext}
    assert set(by_id["synthetic-fused-dvme-fsmall-s0"].store_keys) == (
        set(by_id[first_resnet].store_keys) | set(by_id[first_convnext].store_keys)
    )


def test_knn_runs_as_test_and_shares_the_linear_probes_stores(write_grid, resolver, tmp_path: Path):
    grid = small_grid()
    grid["axes"]["protocol"] = {"linear": LINEAR, "knn": {"config": KNN, "verb": "test"}}
    grid["axes"]["backbone"] = {"supervised": "test_resnet"}
    grid["axes"]["fraction"] = [1.0]
    runs = expand(load_grid(write_grid(grid)))
    resolve(runs, tmp_path / "features", resolver)
    linear, knn = runs[0], runs[2]
    assert knn.labels["protocol"] == "knn" and knn.fit_args()[0] == "test"
    assert knn.config["model"]["class_path"].endswith("KNN")
    assert knn.store_keys == linear.store_keys
    assert store_waits(runs)[knn.id] == {linear.id}


@pytest.mark.parametrize(("backbones", "key", "closest"), [
    ({"supervised": "test_resnet", "swav": "resnet50.swav"}, "backbone", "resnet50.swav_in1k"),
    ({"dvme": ["test_resnet", "resnet5O"]}, "backbones[1]", "resnet50"),
])
def test_an_unknown_backbone_stops_the_plan_naming_the_closest(write_grid, resolver, backbones, key, closest):
    # the parser takes any string: before, --dry_run passed and every run with the name failed as it started
    grid = small_grid()
    grid["axes"]["backbone"] = backbones
    if "dvme" in backbones:
        grid["axes"]["protocol"] = {"fused": DVME}
    where = re.escape(f"model.init_args.{key}")
    with pytest.raises(InvalidRunError, match=rf"run .*: {where}: unknown backbone .*closest: .*{closest}"):
        make_plan(write_grid(grid), resolver=resolver)


@pytest.mark.parametrize(("amx", "noted"), [(False, True), (True, False)])
def test_dry_run_notes_runs_that_would_train_in_emulated_bf16(write_grid, resolver, monkeypatch, amx, noted):
    # right numbers, ~15x later: the plan says so before anything launches, and how to avoid it
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    grid = small_grid()
    grid["overrides"]["trainer.precision"] = "bf16-mixed"
    grid["overrides"]["trainer.accelerator"] = "cpu"
    text = describe_plan(make_plan(write_grid(grid), resolver=resolver))
    note = ("note: 8 runs to run: trainer.precision bf16-mixed on this CPU", "in software",
            "to run them here, set trainer.precision: 32-true in the grid's overrides")
    assert all(part in text for part in note) is noted
    assert ("note:" in text) is noted
