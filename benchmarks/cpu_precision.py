"""Training-step cost of each precision and memory layout on this CPU, against float32 in the contiguous
layout measured in the same process: whether ``bf16-mixed`` pays off here (a CPU with AVX512-BF16 or AMX) or
runs bfloat16 in software (AVX2 CPUs; ``medtransfer.runtime.cpu_precision`` then warns at a run's start and
in a grid's ``--dry_run``).

    python benchmarks/cpu_precision.py            # MedMNIST v2's ResNet-18 (28 px, small stem, batch 128):
                                                  # about 10 minutes on a 2-core AVX2 CPU
    python benchmarks/cpu_precision.py --backbone resnet50 --stem imagenet --image_size 64 --batch_size 32

Every setting trains the same randomly initialised ``Finetune`` network (backbone with its normalisation,
head; AdamW) on the same uint8 batches in a plain loop, under ``torch.autocast`` for ``bf16-mixed``; the first
``--warmup`` steps are not timed. The settings run one after another in each of ``--repeats`` rounds (in
reverse order every other round), and each round's seconds per step (process CPU time, the cost whatever else
the cores run) are divided by that round's float32 contiguous baseline. Nothing is downloaded.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import nullcontext
from pathlib import Path

import torch
import torch.nn.functional as F

from medtransfer.lightning_modules import Finetune
from medtransfer.runtime.cpu_precision import native_bf16
from medtransfer.task import Task

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verdicts import alternating, load_average, spread  # noqa: E402

SETTINGS = (("32-true", "contiguous"), ("32-true", "channels_last"),
            ("bf16-mixed", "contiguous"), ("bf16-mixed", "channels_last"))
BASELINE = SETTINGS[0]


def at_least(minimum: int):
    """An argparse type: an integer of ``minimum`` or more, else argparse's one-line usage error."""

    def parse(text: str) -> int:
        value = int(text)
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {minimum} or more, got {value}")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    formatter = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=formatter)
    parser.add_argument("--backbone", default="resnet18", help="a timm architecture (random init)")
    parser.add_argument("--stem", default="small", choices=("small", "imagenet"))
    parser.add_argument("--image_size", type=int, default=28)
    parser.add_argument("--batch_size", type=int, default=128)
    parser.add_argument("--classes", type=int, default=2)
    parser.add_argument("--steps", type=at_least(1), default=3, help="timed steps per setting and round")
    parser.add_argument("--warmup", type=at_least(0), default=1, help="untimed steps before them")
    parser.add_argument("--repeats", type=at_least(1), default=1, help="rounds over every setting")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: all)")
    return parser.parse_args(argv)


def train_steps(args, precision: str, layout: str, images: torch.Tensor, labels: torch.Tensor) -> float:
    """Process CPU seconds per timed training step of one setting."""
    torch.manual_seed(0)
    task = Task("multiclass", tuple(f"class{i}" for i in range(args.classes)))
    model = Finetune(backbone=args.backbone, stem=args.stem, task=task, memory_format=layout)
    network = torch.nn.Sequential(model.backbone, model.head).train()
    optimizer = torch.optim.AdamW(network.parameters(), lr=1e-3, weight_decay=0.0)
    if layout == "channels_last":
        images = images.contiguous(memory_format=torch.channels_last)
    for step in range(args.warmup + args.steps):
        if step == args.warmup:
            started = time.process_time()
        autocast = torch.autocast("cpu", dtype=torch.bfloat16) if precision == "bf16-mixed" else nullcontext()
        with autocast:
            logits = network(images)
        loss = F.cross_entropy(logits.float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    if not torch.isfinite(loss):
        raise RuntimeError(f"{precision} {layout}: the loss is {loss.item()}")
    return (time.process_time() - started) / args.steps


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    generator = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    images = torch.randint(0, 256, shape, dtype=torch.uint8, generator=generator)
    labels = torch.randint(0, args.classes, (args.batch_size,), generator=generator)
    print(f"CPU: {torch.backends.cpu.get_cpu_capability()}, native bfloat16 (AVX512-BF16 or AMX): "
          f"{native_bf16()}; {torch.get_num_threads()} threads; torch {torch.__version__}; load average "
          f"{load_average()}")
    print(f"{args.backbone} ({args.stem} stem), {args.image_size} px, batch {args.batch_size}: "
          f"{args.steps} timed steps after {args.warmup} per setting, {args.repeats} round(s)")
    measures = {s: (lambda s=s: train_steps(args, *s, images, labels)) for s in SETTINGS}
    rounds: list[dict[tuple[str, str], float]] = [{} for _ in range(args.repeats)]
    for round_index, setting, value in alternating(args.repeats, measures):
        rounds[round_index][setting] = value
    seconds = {s: [r[s] for r in rounds] for s in SETTINGS}
    ratios = {s: [r[s] / r[BASELINE] for r in rounds] for s in SETTINGS}
    print(f"{'precision':<11} {'layout':<14} {'CPU s/step':>11}  time / 32-true contiguous")
    for setting in SETTINGS:
        print(f"{setting[0]:<11} {setting[1]:<14} {statistics.median(seconds[setting]):>11.2f}  "
              f"{spread(ratios[setting], '.2f')}")
    best = {precision: min(statistics.median(ratios[s]) for s in SETTINGS if s[0] == precision)
            for precision in ("32-true", "bf16-mixed")}
    factor = best["bf16-mixed"] / best["32-true"]
    verdict = "bf16-mixed pays off here" if factor < 1 else "keep 32-true on this CPU"
    print(f"bf16-mixed (its faster layout) takes {factor:.2f}x the time of 32-true (its faster layout): "
          f"{verdict}")


if __name__ == "__main__":
    main()
