"""Tiny datasets and runs that the fault matrix's cases share: the synthetic run's arguments, a finished run
made once and copied into each case, image folders, label tables, and the checks of what a run wrote."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np

from .harness import Outcome, Workspace, cli
from .images import plain_png

REPO = Path(__file__).resolve().parents[2]
QUICKSTART = REPO / "configs" / "quickstart.yaml"
LINEAR = REPO / "configs" / "model" / "linear_probe.yaml"
SYNTHETIC = REPO / "configs" / "data" / "synthetic.yaml"
NUM_TEST = 16


# --- shared, expensive artefacts: made once per process, copied into each case's folder ---------------------

_TEMPLATES: dict[str, Path] = {}


def template(name: str, base: Path, make) -> Path:
    if name not in _TEMPLATES or not _TEMPLATES[name].exists():
        folder = base / "_templates" / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        make(folder)
        _TEMPLATES[name] = folder
    return _TEMPLATES[name]


def trainer_args(runs: Path, max_epochs: int = 1, name: str = "tiny") -> list[str]:
    return [
        "--trainer.max_epochs",
        str(max_epochs),
        "--trainer.log_every_n_steps",
        "1",
        "--trainer.enable_progress_bar",
        "false",
        "--trainer.enable_model_summary",
        "false",
        "--trainer.default_root_dir",
        str(runs),
        "--trainer.logger.init_args.save_dir",
        str(runs),
        "--trainer.logger.init_args.name",
        name,
        "--intervals.resamples",
        "0",
    ]


# the synthetic dataset's split sizes and image size of every tiny run here
TINY_SPLITS = ["--data.init_args.num_train", "32", "--data.init_args.num_val", "16",
               "--data.init_args.num_test", str(NUM_TEST), "--data.init_args.native_size", "32"]


def synthetic_args(
    runs: Path, kind: str = "binary", max_epochs: int = 1, backbone: str = "test_resnet"
) -> list[str]:
    return [
        "--config",
        str(QUICKSTART),
        "--data.init_args.kind",
        kind,
        *TINY_SPLITS,
        "--data.init_args.batch_size",
        "16",
        "--model.init_args.backbone",
        backbone,
        *trainer_args(runs, max_epochs),
    ]


def fitted(ws: Workspace) -> Path:
    """A finished tiny run (``runs/tiny/version_0``: last.ckpt, best checkpoint, results.json) in ``ws``."""
    source = template(
        "fitted", ws.root.parent, lambda f: expect_ok(cli(["fit", *synthetic_args(f / "runs")]))
    )
    shutil.copytree(source / "runs", ws.root / "runs")
    return ws.root / "runs" / "tiny" / "version_0"


def unfinished(ws: Workspace) -> Path:
    """The tiny run as a run stopped after its last checkpoint and before its test leaves it: no results.json
    or test predictions, so it may be continued (``--ckpt_path last``)."""
    run_dir = fitted(ws)
    for name in ("results.json", "test_predictions.csv"):
        (run_dir / name).unlink()
    return run_dir


def expect_ok(outcome: Outcome) -> None:
    if outcome.exit_code:
        raise RuntimeError(f"making a template failed: {outcome.did}")


def results_ok(run_dir: Path, num_test: int = NUM_TEST) -> bool:
    """results.json reads back with finite test metrics, and the predictions file has one row per test
    sample."""
    results = json.loads((run_dir / "results.json").read_text())
    test = results["metrics"].get("test", {})
    predicted = list(csv.DictReader((run_dir / "test_predictions.csv").open(newline="")))
    return bool(test) and all(np.isfinite(v) for v in test.values()) and len(predicted) == num_test


def image_folder(root: Path, per_class: int = 8) -> Path:
    for label in ("lesion", "normal"):
        for i in range(per_class):
            path = root / label / f"{label}_{i:02d}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            plain_png(path)
    return root


def folder_args(root: Path, runs: Path, **data) -> list[str]:
    args = [
        "--data",
        "medtransfer.datamodules.ImageFolder",
        "--data.init_args.root",
        str(root),
        "--data.init_args.image_size",
        "32",
        "--data.init_args.batch_size",
        "8",
        "--data.init_args.val_fraction",
        "0.25",
        "--data.init_args.test_fraction",
        "0.25",
        "--model",
        "medtransfer.lightning_modules.Finetune",
        "--model.init_args.backbone",
        "test_resnet",
        "--seed_everything",
        "0",
        "--trainer.accelerator",
        "cpu",
        *trainer_args(runs),
    ]
    for key, value in data.items():
        args += [f"--data.init_args.{key}", str(value)]
    return args


def linear_args(runs: Path, features: Path) -> list[str]:
    return [
        "--config",
        str(SYNTHETIC),
        "--config",
        str(LINEAR),
        *TINY_SPLITS,
        "--model.init_args.backbone",
        "test_resnet",
        "--model.init_args.features_dir",
        str(features),
        "--trainer.accelerator",
        "cpu",
        *trainer_args(runs),
    ]


def stores_of(features: Path) -> list[Path]:
    return sorted(p.parent for p in features.rglob("store.json") if not p.parent.name.startswith("."))


def stores_ok(features: Path, count: int = 3) -> bool:
    from medtransfer.features.store import FeatureStore

    stores = stores_of(features)
    return len(stores) == count and all(len(FeatureStore.open(s)) > 0 for s in stores)


def rows(labels, sep: bytes = b"\n", header: bytes = b"path,label") -> bytes:
    """A labels.csv listing ``img00.png``, ``img01.png``, ... with ``labels`` in order."""
    lines = [header] + [f"img{i:02d}.png,{label}".encode() for i, label in enumerate(labels)]
    return sep.join(lines) + sep


def newest_version(folder: Path) -> Path:
    """The ``version_<n>`` folder with the largest n."""
    return max(folder.glob("version_*"), key=lambda p: int(p.name.split("_")[1]))
