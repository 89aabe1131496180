"""Linear probe on feature stores vs the online probe, in one process on the same machine.

Prints: the time of one forward pass over all splits; (a) the online probe (backbone on every batch) and (b)
extraction + cached probe, for the same epochs and seed, both test metrics and the time ratio; and a sweep of
``--sweep-lrs`` learning rates vs a single probe on the same (already extracted) stores.

    python benchmarks/linear_probe.py   # PneumoniaMNIST (../shared/data, else synthetic), ResNet-50, 64 px
    python benchmarks/linear_probe.py --backbone resnet18 --image-size 28   # the cheapest forward pass
    python benchmarks/linear_probe.py --backbone resnet50.tv_in1k           # pretrained (downloads once)

No train-time augmentation (``augmentation: none``), so both probes see the same inputs and should agree. The
run ends with the issue's targets, each marked met or missed. Cached training costs a fixed few milliseconds
per step, so its ratio to one forward pass shrinks as the backbone and the images grow.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
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
        "--backbone",
        default="resnet50",
        help="a timm architecture (random init, no download) or registry weights (e.g. resnet50.tv_in1k)",
    )
    parser.add_argument("--image-size", type=int, default=64)
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
    parser.add_argument(
        "--lr",
        type=float,
        default=0.1,
        help="the probes' learning rate (random-init features are small: at 1e-3 two epochs learn nothing)",
    )
    parser.add_argument("--sweep-lrs", type=int, default=10, help="sweep this many rates, 1e-4 to 0.1")
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
        targets = [Target(f"{args.epochs} cached epochs (extraction included) / one forward pass",
                          cached.wall / forward.wall, 1.3, "at most")]

        online = Clock()
        with online:
            online_test = fit_and_test(probe(args, data, False, tmp), data, online_epochs)
        online = online.scaled(args.epochs / online_epochs)
        measured = "" if online_epochs == args.epochs else f" (measured at {online_epochs} epochs, scaled)"
        print(f"(a) online probe, {args.epochs} epochs: {online}{measured}")
        print(f"online / cached: {online.ratio(cached)}")
        targets.append(Target(f"online / cached probe, {args.epochs} epochs", online.wall / cached.wall, 30,
                              "at least"))
        if online_epochs != args.epochs:
            cached_test = fit_and_test(probe(args, data, True, tmp), data, online_epochs)
        print(f"test metrics at {online_epochs} epochs, same seed, no train-time augmentation:")
        for name in sorted(online_test):
            print(
                f"  {name:<12} online {online_test[name]:.4f}  cached {cached_test[name]:.4f}  "
                f"|diff| {abs(online_test[name] - cached_test[name]):.4f}"
            )
        primary = f"test/{data.task.primary_metric}"
        gap = abs(online_test[primary] - cached_test[primary])
        targets.append(Target(f"|online - cached| {primary}", gap, 0.01, "at most"))

        single = Clock()
        with single:
            fit_and_test(probe(args, data, True, tmp), data, args.sweep_epochs)
        pl.seed_everything(args.seed)
        lrs = np.geomspace(1e-4, 0.1, args.sweep_lrs).tolist()
        sweep_model = LinearSweep(backbone=args.backbone, lrs=lrs, features_dir=tmp, task=data.task)
        sweep = Clock()
        with sweep:
            sweep_test = fit_and_test(sweep_model, data, args.sweep_epochs)
        chosen = sweep_model.extra_results()["sweep"]["selected"]
        print(
            f"stores reused, {args.sweep_epochs} epochs: single probe {single}, "
            f"sweep of {len(lrs)} lrs {sweep} = {sweep.ratio(single)} "
            f"(lr {chosen['lr']:.2g} selected on val; "
            f"{primary} {sweep_test[primary]:.4f})"
        )
        targets.append(Target(f"sweep of {len(lrs)} lrs / one probe", sweep.wall / single.wall, 1.5, "below"))
    print("targets (wall time):")
    for target in targets:
        print(f"  {target}")


class Target:
    """One of the issue's targets: a measured value against its bound."""

    def __init__(self, name: str, value: float, bound: float, kind: str) -> None:
        self.name, self.value, self.bound, self.kind = name, value, bound, kind

    @property
    def met(self) -> bool:
        if self.kind == "at most":
            return self.value <= self.bound
        if self.kind == "below":
            return self.value < self.bound
        return self.value >= self.bound

    def __str__(self) -> str:
        return f"{self.name}: {self.value:.4g} ({self.kind} {self.bound:g}) {'met' if self.met else 'MISSED'}"


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
