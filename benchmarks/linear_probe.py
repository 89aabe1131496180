"""Linear probe on feature stores vs the online probe, in one process on the same machine.

Prints: the time of one forward pass over all splits; (a) the online probe (backbone on every batch) and (b)
extraction + cached probe, for the same epochs and seed, both test metrics and the time ratio; and a sweep of
``--sweep-lrs`` learning rates vs a single probe on the same (already extracted) stores.

    python benchmarks/linear_probe.py                        # PneumoniaMNIST from ../shared/data, or
    synthetic python benchmarks/linear_probe.py --dataset synthetic --backbone resnet50 --image-size 64
    --epochs 100

No train-time augmentation (``augmentation: none``), so both probes see the same inputs and should agree.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl

from medtransfer.backbones import create_backbone
from medtransfer.datamodules import SyntheticMedical
from medtransfer.features import embed_split
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


def timed_probe(model, data, epochs: int) -> tuple[float, dict]:
    started = time.perf_counter()
    run = trainer(epochs)
    run.fit(model, datamodule=data)
    (test,) = run.test(model, datamodule=data, verbose=False)
    return time.perf_counter() - started, test


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
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--num-train", type=int, default=1024, help="synthetic only; val 1/4, test 1/2 of it")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument(
        "--online-epochs",
        type=int,
        default=None,
        help="epochs of the online probe (default: --epochs); fewer ones are timed and scaled "
        "linearly to --epochs, and the metric comparison then runs the cached probe at them too",
    )
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--sweep-lrs", type=int, default=10)
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
        pl.seed_everything(args.seed)
        backbone = create_backbone(args.backbone).freeze()
        started = time.perf_counter()
        for split in sizes:
            embed_split(backbone, data, split)
        forward = time.perf_counter() - started
        print(f"one forward pass over all splits: {forward:.1f}s")

        cached_time, cached_test = timed_probe(probe(args, data, True, tmp), data, args.epochs)
        print(
            f"(b) extraction + cached probe, {args.epochs} epochs: {cached_time:.1f}s "
            f"= {cached_time / forward:.2f}x one forward pass"
        )
        online_time, online_test = timed_probe(probe(args, data, False, tmp), data, online_epochs)
        scaled = online_time * args.epochs / online_epochs
        note = (
            ""
            if online_epochs == args.epochs
            else f" (measured {online_time:.1f}s at {online_epochs} epochs)"
        )
        print(f"(a) online probe, {args.epochs} epochs: {scaled:.1f}s{note}")
        print(f"online / cached time: {scaled / cached_time:.1f}x")
        if online_epochs != args.epochs:
            _, cached_test = timed_probe(probe(args, data, True, tmp), data, online_epochs)
        print(f"test metrics at {online_epochs} epochs:")
        for name in sorted(online_test):
            print(
                f"  {name:<12} online {online_test[name]:.4f}  cached {cached_test[name]:.4f}  "
                f"|diff| {abs(online_test[name] - cached_test[name]):.4f}"
            )

        single_time, _ = timed_probe(probe(args, data, True, tmp), data, args.epochs)
        pl.seed_everything(args.seed)
        lrs = [args.lr * 10 ** (k / 3 - 1.5) for k in range(args.sweep_lrs)]
        sweep = LinearSweep(backbone=args.backbone, lrs=lrs, features_dir=tmp, task=data.task)
        sweep_time, sweep_test = timed_probe(sweep, data, args.epochs)
        chosen = sweep.extra_results()["sweep"]["selected"]
        print(
            f"stores reused: single probe {single_time:.1f}s, sweep of {len(lrs)} lrs {sweep_time:.1f}s "
            f"= {sweep_time / single_time:.2f}x (selected lr {chosen['lr']:.2g} on val; "
            f"test auroc {sweep_test['test/auroc']:.4f})"
        )


if __name__ == "__main__":
    main()
