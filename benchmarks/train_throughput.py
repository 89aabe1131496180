"""Training images/s of the Finetune module, fitted by a Lightning Trainer as users run it, against a plain
PyTorch training loop over the same model, data and settings, in the same process.

    python benchmarks/train_throughput.py                       # resnet18, 64 px, fp32, CPU: about 7 minutes
    python benchmarks/train_throughput.py --backbone resnet50 --image_size 224 --batch_size 128 \\
        --precision bf16-mixed --channels_last                  # on a GPU when there is one
    python benchmarks/train_throughput.py --compile --warmup 10 # torch.compile'd backbone in both
    python benchmarks/train_throughput.py --threads 1 --batch_size 16   # a CPU busy with other work

Both sides train a randomly initialised backbone (nothing is downloaded) from the same seed, on the same
uint8 batches already on the device (a few distinct batches, cycled), with AdamW at the module's learning
rates, the cosine schedule stepped every batch, the same precision (autocast, or weights in bf16 for
``bf16-true``), memory layout and compilation. The Lightning side runs ``Trainer.fit`` with a logger, the
progress bar the CLI gives it (tqdm's: ``runtime.training_bar.training_bar``) and the module's own
per-step work (step seeding, loss logging, metric bookkeeping); the plain loop does forward, loss,
backward, optimizer and scheduler steps only. The first ``--warmup`` batches of each run are not timed, nor
is a first run of each side. Each of the ``--repeats`` repeats runs both sides back to back (in reverse order
every other repeat) and gives one ratio; the target is judged on the 95% interval of the median of those
ratios (``benchmarks/verdicts.py``): on a CPU in images per CPU-second of the process
(what the steps cost, whatever else the cores run), on a GPU in images/s of the wall clock, which waits for
the GPU. On a quiet 2-core VM one run of either side varies by 5-10% from one to the next whatever its
length (the host, not the code), so the default takes 60 short pairs rather than a few long ones: with 30,
the 95% interval of the median ratio was still 0.06 wide and straddled the target in one of three runs. On
CUDA each side's peak memory is shown.

Target (issue 15): Finetune >= 0.95x the plain loop's images/s; printed as met, MISSED or too wide to judge.
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path
from typing import NamedTuple

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from pytorch_lightning.callbacks import TQDMProgressBar
from pytorch_lightning.loggers import CSVLogger
from torch.utils.data import DataLoader

from medtransfer.lightning_modules import Finetune
from medtransfer.lightning_modules.base import lr_factor
from medtransfer.task import Task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from training_speed import TrainingSpeed  # noqa: E402
from verdicts import Verdicts, alternating, load_average, ratios, repeats_argument, spread  # noqa: E402

TARGET = 0.95
PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")


class Measured(NamedTuple):
    images_per_s: float  # wall clock
    images_per_cpu_s: float  # process CPU time: what the steps cost on a CPU shared with other work
    peak_gpu_bytes: int | None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--backbone", default="resnet18", help="a timm architecture (random init)")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--classes", type=int, default=5, help="multiclass task with this many classes")
    parser.add_argument("--precision", default="32-true", choices=PRECISIONS)
    parser.add_argument("--channels_last", action="store_true", help="model.memory_format: channels_last")
    parser.add_argument("--compile", action="store_true", help="model.compile: true (both sides)")
    parser.add_argument("--steps", type=int, default=10, help="timed batches per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed batches at the start of each run")
    parser.add_argument("--repeats", type=repeats_argument, default=60,
                        help="runs of each side, alternating (and one more of each first, not counted)")
    parser.add_argument("--distinct_batches", type=int, default=4, help="different batches, cycled")
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: its own choice); 1 on a machine shared with others")
    parser.add_argument("--no_progress_bar", dest="progress_bar", action="store_false",
                        help="Trainer.fit without its progress bar (on by default, as users run it)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.precision == "16-mixed" and args.device == "cpu":
        parser.error("--precision 16-mixed needs a GPU (Lightning runs bf16-mixed instead on a CPU)")
    return args


def build_model(args) -> Finetune:
    torch.manual_seed(args.seed)
    task = Task("multiclass", tuple(f"grade{i}" for i in range(args.classes)))
    return Finetune(backbone=args.backbone, task=task, lr=args.lr, weight_decay=1e-4,
                    backbone_lr_multiplier=0.1, compile=args.compile,
                    memory_format="channels_last" if args.channels_last else "contiguous")


def device_batches(args, device: torch.device) -> list[dict]:
    """``--warmup + --steps`` batches on the device, cycling through ``--distinct_batches`` different ones."""
    generator = torch.Generator().manual_seed(args.seed)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    distinct = [{"image": torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator).to(device),
                 "label": torch.randint(0, args.classes, (args.batch_size,), generator=generator).to(device),
                 "id": [f"{b}-{i}" for i in range(args.batch_size)]}
                for b in range(args.distinct_batches)]
    return [distinct[i % len(distinct)] for i in range(args.warmup + args.steps)]


def clocks(device: torch.device) -> tuple[float, float]:
    """Wall-clock and process CPU seconds, once the GPU has caught up."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter(), time.process_time()


def reset_peak(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def peak(device: torch.device) -> int | None:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None


def run_lightning(args, batches: list[dict], device: torch.device) -> Measured:
    """Images/s of ``Trainer.fit`` on the batches, and the peak GPU memory."""
    model = build_model(args)
    speed = TrainingSpeed(warmup_batches=args.warmup)
    reset_peak(device)
    with tempfile.TemporaryDirectory() as logs:
        trainer = pl.Trainer(
            accelerator="gpu" if device.type == "cuda" else "cpu", devices=1, precision=args.precision,
            max_epochs=1, limit_val_batches=0, logger=CSVLogger(logs), log_every_n_steps=20,
            enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=args.progress_bar,
            callbacks=[speed, TQDMProgressBar()] if args.progress_bar else [speed])  # the CLI's bar
        trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    return Measured(speed.images_per_s, speed.images_per_cpu_s, peak(device))


def run_plain(args, batches: list[dict], device: torch.device) -> Measured:
    """Images/s of a hand-written loop over the same network, optimizer, schedule and precision."""
    model = build_model(args).to(device)
    network = torch.nn.Sequential(model.backbone, model.head).train()
    if args.precision == "bf16-true":
        network.to(torch.bfloat16)
    optimizer = torch.optim.AdamW([{"params": model.backbone.parameters(), "lr": args.lr * 0.1},
                                   {"params": model.head.parameters(), "lr": args.lr}],
                                  lr=args.lr, weight_decay=1e-4)
    total = len(batches)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, total, 0, True))
    mixed = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(args.precision)
    scaler = torch.amp.GradScaler(device.type) if args.precision == "16-mixed" else None
    reset_peak(device)
    started = None
    for index, batch in enumerate(batches):
        if index == args.warmup:
            started = clocks(device)
        autocast = torch.autocast(device.type, dtype=mixed) if mixed else nullcontext()
        with autocast:
            logits = network(batch["image"])
        loss = F.cross_entropy(logits.float(), batch["label"])
        optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            optimizer.step()
        scheduler.step()
    wall, cpu = (end - start for end, start in zip(clocks(device), started, strict=True))
    if not math.isfinite(loss.item()):
        raise RuntimeError(f"the plain loop's loss is {loss.item()}")
    images = args.steps * args.batch_size
    return Measured(images / wall, images / cpu, peak(device))


def measure(args, device: torch.device) -> dict[str, list[Measured]]:
    """Each side's runs, ``--repeats`` of them, the two sides back to back in every repeat."""
    batches = device_batches(args, device)
    sides = {"plain": lambda: run_plain(args, batches, device),
             "lightning": lambda: run_lightning(args, batches, device)}
    for run in sides.values():  # not counted: a process's first runs pay for allocator growth, kernel choice
        run()
    results: dict[str, list[Measured]] = {side: [] for side in sides}
    for repeat, side, measured in alternating(args.repeats, sides):
        results[side].append(measured)
        print(f"  repeat {repeat + 1} {side:>9}: {measured.images_per_s:8.1f} images/s, "
              f"{measured.images_per_cpu_s:8.1f} images per CPU second", flush=True)
    return results


def show_sides(results: dict[str, list[Measured]]) -> None:
    for side, label in (("plain", "plain PyTorch loop"), ("lightning", "Finetune + Trainer.fit")):
        runs = results[side]
        memory = [r.peak_gpu_bytes for r in runs if r.peak_gpu_bytes is not None]
        shown = f"; peak GPU memory {max(memory) / 2**30:.2f} GiB" if memory else ""
        print(f"{label:>24}: images/s {spread([r.images_per_s for r in runs], '.1f')}; per CPU second "
              f"{spread([r.images_per_cpu_s for r in runs], '.1f')}{shown}")


def judge_ratio(results: dict[str, list[Measured]], device: torch.device) -> Verdicts:
    """Finetune / plain loop per repeat, judged in images per CPU-second on a CPU and per second on a GPU."""
    wall = ratios([r.images_per_s for r in results["lightning"]], [r.images_per_s for r in results["plain"]])
    cpu = ratios([r.images_per_cpu_s for r in results["lightning"]],
                 [r.images_per_cpu_s for r in results["plain"]])
    verdicts = Verdicts()
    if device.type == "cpu":  # CPU time counts the work only, not other processes' share of the cores
        print(f"ratio Finetune / plain loop, wall clock (not judged: it measures the neighbours too): "
              f"{spread(wall)}")
        verdicts.judge("Finetune / plain loop", cpu, ">=", TARGET, "images per CPU-second")
    else:
        verdicts.judge("Finetune / plain loop", wall, ">=", TARGET, "images/s (wall clock, GPU synchronised)")
    return verdicts


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True  # both sides (the Trainer keeps the session's setting)
    pl.seed_everything(args.seed, verbose=False)
    warnings.filterwarnings("ignore")  # Lightning's hints about loader workers: the batches are on the device
    where = (torch.cuda.get_device_name(device) if device.type == "cuda"
             else f"CPU, {torch.get_num_threads()} threads")
    options = "".join([", channels_last" if args.channels_last else "", ", compiled" if args.compile else ""])
    print(f"train throughput: {args.backbone} at {args.image_size} px, batch {args.batch_size}, "
          f"{args.precision}{options}; {where}; {args.steps} timed batches after {args.warmup} warm-up "
          f"batches, {args.repeats} repeats of both sides; load average {load_average()}")
    results = measure(args, device)
    show_sides(results)
    judge_ratio(results, device).show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
