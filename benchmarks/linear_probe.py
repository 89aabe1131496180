"""Linear probe on feature stores vs the online probe, in one process on the same machine.

Prints: the time of one forward pass over all splits; (a) the online probe (backbone on every batch) and (b)
extraction + cached probe, for the same epochs and seed, both test metrics and the time ratio; and a sweep of
``--sweep-lrs`` learning rates vs a single probe on the same (already extracted) stores.

    python benchmarks/linear_probe.py            # PneumoniaMNIST from ../shared/data (else synthetic)
    python benchmarks/linear_probe.py --backbone resnet50 --image-size 64 --online-epochs 1

No train-time augmentation (``augmentation: none``), so both probes see the same inputs and should agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from medtransfer.datamodules import SyntheticMedical
from medtransfer.features import store_for
from medtransfer.lightning_modules import LinearProbe, LinearSweep

SHARED_MEDMNIST = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "medmnist"


def build_data(args):
    options = {"image_size": args.image_size, "batch_size": args.batch_size, "augmentation": "none"}
    if args.dataset == "pneumoniamnist":
        from medtransfer.datamodules import MedMNIST

        return MedMNIST(root=str(SHARED_MEDMNIST), flag="pneumoniamnist", size=28, **options)
    return SyntheticMedical(
        num_train=args.num_train, num_val=args.num_train // 4, num_test=args.num_train // 2, **options
    )


def trainer(epochs: int) -> pl.Trainer:
    return pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
    )


def fit_and_test(model, data, epochs: int) -> dict:
    run = trainer(epochs)
    run.fit(model, datamodule=data)
    (test,) = run.test(model, datamodule=data, verbose=False)
    return test


def probe(args, data, feature_cache: bool, features_dir: str):
    pl.seed_everything(args.seed)
    return LinearProbe(
        backbone=args.backbone,
        feature_cache=feature_cache,
        features_dir=features_dir,
        task=data.task,
        lr=args.lr,
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--dataset",
        choices=("pneumoniamnist", "synthetic"),
        default="pneumoniamnist" if (SHARED_MEDMNIST / "pneumoniamnist.npz").is_file() else "synthetic",
    )
    parser.add_argument(
        "--backbone", default="resnet18", help="any timm architecture (random init: no download)"
    )
    parser.add_argument("--image-size", type=int, default=28)
    parser.add_argument("--num-train", type=int, default=1024, help="synthetic only; val 1/4, test 1/2 of it")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--online-epochs",
        type=int,
        default=2,
        help="epochs of the online probe (0: --epochs); fewer ones are timed and scaled "
        "linearly to --epochs, and the metric comparison then runs the cached probe at them too",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sweep-lrs", type=int, default=10)
    parser.add_argument(
        "--sweep-epochs", type=int, default=20, help="epochs of the sweep vs single-probe timing"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    online_epochs = args.online_epochs or args.epochs
    data = build_data(args)
    data.setup("fit")
    sizes = {split: len(data.sources()[split]) for split in ("train", "val", "test")}
    print(
        f"data: {data.name} {sizes} at {args.image_size} px; backbone {args.backbone}; "
        f"batch {args.batch_size}; seed {args.seed}"
    )

    with tempfile.TemporaryDirectory(prefix="medtransfer-bench-") as tmp:
        model = probe(args, data, True, tmp)
        forward = Clock()
        with forward:  # the forward pass IS the extraction: stores are written as the embeddings arrive
            for split in sizes:
                store_for(model.backbone, data, split, tmp)
        print(f"one forward pass over all splits (extraction into stores): {forward}")

        training = Clock()
        with training:
            cached_test = fit_and_test(model, data, args.epochs)
        cached = forward + training
        print(
            f"(b) extraction + cached probe, {args.epochs} epochs: {cached} = {cached.ratio(forward)} "
            "one forward pass"
        )

        online = Clock()
        with online:
            online_test = fit_and_test(probe(args, data, False, tmp), data, online_epochs)
        online = online.scaled(args.epochs / online_epochs)
        measured = "" if online_epochs == args.epochs else f" (measured at {online_epochs} epochs, scaled)"
        print(f"(a) online probe, {args.epochs} epochs: {online}{measured}")
        print(f"online / cached: {online.ratio(cached)}")
        if online_epochs != args.epochs:
            cached_test = fit_and_test(probe(args, data, True, tmp), data, online_epochs)
        print(f"test metrics at {online_epochs} epochs, same seed, no train-time augmentation:")
        for name in sorted(online_test):
            print(
                f"  {name:<12} online {online_test[name]:.4f}  cached {cached_test[name]:.4f}  "
                f"|diff| {abs(online_test[name] - cached_test[name]):.4f}"
            )

        single = Clock()
        with single:
            fit_and_test(probe(args, data, True, tmp), data, args.sweep_epochs)
        pl.seed_everything(args.seed)
        lrs = [args.lr * 10 ** (k / 3 - 1.5) for k in range(args.sweep_lrs)]
        sweep_model = LinearSweep(backbone=args.backbone, lrs=lrs, features_dir=tmp, task=data.task)
        sweep = Clock()
        with sweep:
            sweep_test = fit_and_test(sweep_model, data, args.sweep_epochs)
        chosen = sweep_model.extra_results()["sweep"]["selected"]
        print(
            f"stores reused, {args.sweep_epochs} epochs: single probe {single}, "
            f"sweep of {len(lrs)} lrs {sweep} = {sweep.ratio(single)} "
            f"(lr {chosen['lr']:.2g} selected on val; "
            f"test auroc {sweep_test['test/auroc']:.4f})"
        )


class Clock:
    """Wall and CPU seconds of a block (the CPU time of this process shows the cost on a busy machine)."""

    def __init__(self, wall: float = 0.0, cpu: float = 0.0) -> None:
        self.wall, self.cpu = wall, cpu

    def __enter__(self) -> Clock:
        self._start = (time.perf_counter(), time.process_time())
        return self

    def __exit__(self, *exc) -> None:
        self.wall += time.perf_counter() - self._start[0]
        self.cpu += time.process_time() - self._start[1]

    def __add__(self, other: Clock) -> Clock:
        return Clock(self.wall + other.wall, self.cpu + other.cpu)

    def scaled(self, factor: float) -> Clock:
        return Clock(self.wall * factor, self.cpu * factor)

    def ratio(self, other: Clock) -> str:
        return f"{self.wall / other.wall:.2f}x wall ({self.cpu / other.cpu:.2f}x CPU)"

    def __str__(self) -> str:
        return f"{self.wall:.1f}s wall ({self.cpu:.1f}s CPU)"


if __name__ == "__main__":
    main()
