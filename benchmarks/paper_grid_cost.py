"""What the paper's grid costs: per-image constants measured here, multiplied out over the whole grid.

    python benchmarks/paper_grid_cost.py                       # measure on this machine (a few minutes)
    python benchmarks/paper_grid_cost.py --gpu_check_log LOG   # with the GPU constants gpu_check.sh measured
                                                               # (its console output, saved to LOG)
    python benchmarks/paper_grid_cost.py --save_constants c.json   # later: --constants c.json (no measuring)

The constants are measured on random-init timm backbones at 224 px (nothing is downloaded), on uint8 batches
through medtransfer's ``Backbone`` (the normalisation included), in CPU seconds of this process (on a machine
shared with other work the wall clock would measure the neighbours too):

- ``forward``: an image through the backbone, eval mode, no gradients (feature extraction, evaluation);
- ``train``: an image of a training step of backbone + linear head (forward, loss, backward, AdamW step);
- the heads on cached features, whose cost follows from the feature dimension: one objective-and-gradient
  evaluation of the exact linear probe (its two products of the ``N x D`` features with ``D x C`` weights),
  per row x dimension x output; a DVME fusion step (training, and forward) per row, on the paper's three
  embeddings;
- FLOPs per image of each (``torch.utils.flop_counter.FlopCounterMode``: 2 per multiply-add).

The grid is ``configs/benchmark/paper.yaml`` as it resolves (``medtransfer benchmark --dry_run``): 4 datasets
x (supervised ResNet-50, SimCLR, SwAV, DINO ViT-S/16, each by linear probe and finetuning; their DVME fusion
of SimCLR + SwAV + DINO, frozen and end to end) x 3 label fractions x 3 seeds = 360 runs, finetuning 10 epochs
(``configs/trainer/gpu.yaml``), DVME 30 (``configs/model/dvme.yaml``), the linear probe the exact solver on
feature stores. ``--datasets`` chooses the datasets (EyePACS by default; ``aptos2019`` is the one paper.yaml
names, and its total is printed too).

What a run costs (``grid_cost``, the arithmetic the tests check):

- extraction: each backbone's stores of every split, once per dataset (all fractions and seeds, and frozen
  DVME, read them);
- linear probe: ``PROBE_EVALUATIONS`` evaluations of the exact solver on the fraction's rows;
- finetune: per epoch the fraction's training images through a training step and the validation split
  forward; after fit, the validation split again (the best checkpoint), the test split, and for binary and
  multilabel tasks one more validation pass (the decision thresholds);
- DVME frozen: the same epochs and passes through the fusion head on cached features, each evaluation pass
  ``K + 2`` head forwards (the logits, then the ablation importance: the base and one per backbone);
- DVME end to end: the same through every fused backbone, plus the head.

Not counted: start-up, the data pipeline (on a GPU it must keep up; see docs/running-fast.md), sanity-check
batches, checkpoint writes, the probe's per-penalty validation scoring and the kNN/report stages.

GPU-hours: no GPU may be at hand, so they are estimated from the FLOPs per image at an assumed share of the
accelerator's dense bf16 peak (``--gpu_peak_tflops``, ``--gpu_utilisation``; the probe's float32 products at
``--gpu_fp32_tflops``). ``--gpu_check_log`` replaces ResNet-50's estimate by the rate ``gpu_check.sh``
measured (Finetune's training images/s through ``medtransfer fit``; its forward at the same share of the peak
as that training rate reaches), and prices the ViTs and the heads at that measured share.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from verdicts import load_average  # noqa: E402

SIZE = 224
PROBE_EVALUATIONS = 1500  # objective-and-gradient evaluations of the exact probe's 10-penalty path (see docs)
H100_BF16_DENSE_TFLOPS = 989.0  # H100 SXM, dense (no sparsity)
H100_FP32_TFLOPS = 67.0
ASSUMED_UTILISATION = 0.10  # share of that peak a bf16, channels-last PyTorch training loop reaches (assumed)


# -- the grid ------------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Dataset:
    """A dataset's split sizes as the paper grid's configs carve them, and its head's outputs."""

    name: str
    train: int
    val: int
    test: int
    outputs: int  # logits: 1 (binary), 5 (DR grades), 14 (findings)
    decision: bool  # binary and multilabel: thresholds chosen on one more validation pass after the test
    source: str

    @property
    def images(self) -> int:
        return self.train + self.val + self.test


DATASETS = {
    "pcam": Dataset("PCam", 262_144, 32_768, 32_768, 1, True,
                    "official splits; 96 px patches resized to 224 px"),
    "eyepacs": Dataset("EyePACS", 31_613, 3_513, 53_576, 5, False,
                       "35,126 training photos, 10% carved for validation; the labelled 53,576-photo "
                       "test set"),
    "aptos2019": Dataset("APTOS 2019", 2_564, 366, 732, 5, False,
                         "3,662 photos; 10% validation and 20% test carved (paper.yaml's retinopathy "
                         "dataset)"),
    "pneumonia": Dataset("Pneumonia", 4_709, 523, 624, 1, True,
                         "5,216 train + 16 val pooled, 10% carved for validation; the official 624 test"),
    "chestxray14": Dataset("ChestX-ray14", 77_872, 8_652, 25_596, 14, True,
                           "86,524 train_val, 10% carved by patient for validation; the official 25,596 "
                           "test"),
}
DEFAULT_DATASETS = ("pcam", "eyepacs", "pneumonia", "chestxray14")


@dataclass(frozen=True)
class GridBackbone:
    label: str
    weights: str
    arch: str  # what it costs like: the timm architecture
    dim: int  # the embedding the heads read


PAPER_BACKBONES = (
    GridBackbone("supervised", "resnet50.tv_in1k", "resnet50", 2048),
    GridBackbone("simclr", "resnet50.simclr_in1k", "resnet50", 2048),
    GridBackbone("swav", "resnet50.swav_in1k", "resnet50", 2048),
    GridBackbone("dino", "vit_small_patch16_224.dino", "vit_small_patch16_224", 1536),  # CLS + mean token
)
DVME_FUSED = ("simclr", "swav", "dino")


@dataclass(frozen=True)
class Protocol:
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: int = 3
    finetune_epochs: int = 10
    dvme_epochs: int = 30
    probe_evaluations: int = PROBE_EVALUATIONS


# -- what an image costs -------------------------------------------------------------------------------------
@dataclass
class Costs:
    """Seconds per image (row) on one device; CPU seconds on a CPU."""

    forward: dict[str, float]  # per architecture: an image forward, no gradients
    train: dict[str, float]  # per architecture: an image of a training step
    probe_value: float  # one evaluation of the exact probe, per row x dimension x output
    head_train: float  # DVME's fusion and head, a training step, per row
    head_forward: float  # the same forward, per row


@dataclass
class Line:
    dataset: str
    stage: str
    runs: int
    passes: float  # images through a backbone (each backbone counted), forward and training alike
    seconds: float


def fraction_rows(train: int, fraction: float) -> int:
    """The training rows a label fraction selects (stratified selection rounds per class; close enough)."""
    return max(1, round(train * fraction))


def grid_cost(costs: Costs, datasets: Sequence[Dataset], backbones: Sequence[GridBackbone] = PAPER_BACKBONES,
              fused: Sequence[str] = DVME_FUSED, protocol: Protocol = Protocol()) -> list[Line]:
    """The cost of every stage of the grid on each dataset: one line per (dataset, stage)."""
    by_label = {b.label: b for b in backbones}
    fusion = [by_label[label] for label in fused]
    seeds = protocol.seeds
    lines = []
    for data in datasets:
        after_fit = data.val * (2 if data.decision else 1) + data.test  # best checkpoint, decision, test
        lines.append(Line(data.name, "extraction", 0, len(backbones) * data.images,
                          sum(data.images * costs.forward[b.arch] for b in backbones)))
        probe = finetune = finetune_passes = 0.0
        frozen = end_to_end = end_to_end_passes = 0.0
        for fraction in protocol.fractions:
            rows = fraction_rows(data.train, fraction)
            for b in backbones:
                probe += seeds * protocol.probe_evaluations * rows * b.dim * data.outputs * costs.probe_value
                epochs = protocol.finetune_epochs
                finetune += seeds * (epochs * (rows * costs.train[b.arch] + data.val * costs.forward[b.arch])
                                     + after_fit * costs.forward[b.arch])
                finetune_passes += seeds * (epochs * (rows + data.val) + after_fit)
            epochs = protocol.dvme_epochs
            evaluations = len(fusion) + 2  # logits, then the ablation: the base and one per backbone
            head = epochs * (rows * costs.head_train + data.val * evaluations * costs.head_forward) \
                + after_fit * evaluations * costs.head_forward
            frozen += seeds * head
            trained = sum(costs.train[b.arch] for b in fusion)
            forward = sum(costs.forward[b.arch] for b in fusion)
            end_to_end += seeds * (epochs * (rows * trained + data.val * forward) + after_fit * forward
                                   + head)
            end_to_end_passes += seeds * len(fusion) * (epochs * (rows + data.val) + after_fit)
        runs = len(protocol.fractions) * seeds
        lines += [Line(data.name, "linear probe (exact solver)", runs * len(backbones), 0, probe),
                  Line(data.name, "finetune", runs * len(backbones), finetune_passes, finetune),
                  Line(data.name, "DVME frozen", runs, 0, frozen),
                  Line(data.name, "DVME end to end", runs, end_to_end_passes, end_to_end)]
    return lines


def total(lines: Sequence[Line]) -> Line:
    return Line("all", "total", sum(x.runs for x in lines), sum(x.passes for x in lines),
                sum(x.seconds for x in lines))


# -- measured constants --------------------------------------------------------------------------------------
@dataclass
class Measured:
    """One device's measured constants, as saved by --save_constants."""

    device: str
    precision: str
    forward_per_s: dict[str, float]  # images per (CPU) second
    train_per_s: dict[str, float]
    forward_flops: dict[str, float]  # per image
    train_flops: dict[str, float]
    probe_value_s: float
    head_train_per_s: float
    head_forward_per_s: float
    head_train_flops: float  # per row
    head_forward_flops: float
    notes: list[str] = field(default_factory=list)

    def costs(self) -> Costs:
        return Costs({a: 1 / r for a, r in self.forward_per_s.items()},
                     {a: 1 / r for a, r in self.train_per_s.items()},
                     self.probe_value_s, 1 / self.head_train_per_s, 1 / self.head_forward_per_s)


def gpu_costs(measured: Measured, peak_tflops: float, fp32_tflops: float, utilisation: float,
              rates: dict[str, dict[str, float]] | None = None) -> Costs:
    """Seconds per image on the GPU: FLOPs at ``utilisation`` of the peak, or the ``rates`` measured there
    (``{arch: {"train": images/s, "forward": images/s}}``)."""
    speed, speed32 = peak_tflops * 1e12 * utilisation, fp32_tflops * 1e12 * utilisation
    forward = {a: f / speed for a, f in measured.forward_flops.items()}
    train = {a: f / speed for a, f in measured.train_flops.items()}
    for arch, measured_rates in (rates or {}).items():
        forward[arch] = 1 / measured_rates["forward"]
        train[arch] = 1 / measured_rates["train"]
    return Costs(forward, train, 4 / speed32, measured.head_train_flops / speed,
                 measured.head_forward_flops / speed)


def read_gpu_check(text: str) -> dict:
    """ResNet-50's rates from gpu_check.sh's output: step 2's training images/s (Finetune through
    ``medtransfer fit``, bf16-mixed, channels-last, the data pipeline included), the GPU's name, and step 3's
    end-to-end probe rate (start-up included: a lower bound on extraction, shown only)."""
    train = re.search(r"training images/s: (?:median )?([0-9.]+)", text)
    if train is None:
        raise SystemExit("the gpu_check log has no 'training images/s' line (step 2): give the whole output "
                         "of bash benchmarks/gpu_check.sh")
    gpu = re.search(r"^GPU: ([^,\n]+)", text, re.M)
    probe = re.search(r"embedded and probed per run: (?:median )?([0-9.]+)", text)
    return {"gpu": gpu.group(1).strip() if gpu else "GPU (name not in the log)",
            "train": float(train.group(1)), "probe_end_to_end": float(probe.group(1)) if probe else None}


def timed(step: Callable[[], None], warmup: int, steps: int) -> float:
    """CPU seconds of this process (wall seconds on a GPU) over ``steps`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        step()
    cuda = torch.cuda.is_available() and torch.cuda.is_initialized()
    if cuda:
        torch.cuda.synchronize()
    clock = time.perf_counter if cuda else time.process_time
    start = clock()
    for _ in range(steps):
        step()
    if cuda:
        torch.cuda.synchronize()
    return clock() - start


def counted_flops(step: Callable[[], None]) -> float:
    from torch.utils.flop_counter import FlopCounterMode

    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return float(counter.get_total_flops())


def measure_backbone(arch: str, args, autocast) -> dict:
    from medtransfer.backbones import create_backbone

    torch.manual_seed(0)
    backbone = create_backbone(arch)  # a timm architecture name: random init, nothing downloaded
    if args.channels_last and backbone.convolutional:
        backbone.use_channels_last()
    head = torch.nn.Linear(backbone.embed_dim, 2)
    batch = args.batch if "base" not in arch else max(2, args.batch // 2)
    images = torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8)
    labels = torch.randint(0, 2, (batch,))
    optimizer = torch.optim.AdamW([*backbone.parameters(), *head.parameters()], lr=1e-4)

    @torch.no_grad()
    def forward(images=images):
        with autocast():
            backbone(images)

    def train(images=images, labels=labels):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = head(backbone(images))
        torch.nn.functional.cross_entropy(logits.float(), labels[: len(images)]).backward()
        optimizer.step()

    backbone.eval()
    forward_s = timed(forward, 1, args.steps)
    forward_flops = counted_flops(lambda: forward(images[:2])) / 2
    backbone.train()
    train_s = timed(train, 1, args.steps)
    train_flops = counted_flops(lambda: train(images[:2], labels[:2])) / 2
    result = {"forward_per_s": batch * args.steps / forward_s, "train_per_s": batch * args.steps / train_s,
              "forward_flops": forward_flops, "train_flops": train_flops, "batch": batch}
    print(f"  {arch:<24} batch {batch:>2}: forward {result['forward_per_s']:7.2f} images/CPU-s, "
          f"{forward_flops / 1e9:6.2f} GFLOP/image; training step {result['train_per_s']:6.2f} images/CPU-s, "
          f"{train_flops / 1e9:6.2f} GFLOP/image", flush=True)
    return result


def measure_heads(args, autocast) -> dict:
    """The exact probe's two products per evaluation, and DVME's fusion + head, on random features."""
    from medtransfer.lightning_modules.fusion import build_fusion

    torch.manual_seed(0)
    rows, dim, outputs = 8192, 2048, 5
    features = torch.randn(rows, dim)
    change = torch.randn(dim, outputs)
    dlogits = torch.randn(rows, outputs, dtype=torch.float64)

    def evaluation():  # PathSolver.evaluate: the products update, then the gradient
        (features @ change).to(torch.float64)
        (dlogits.T.to(features.dtype) @ features).to(torch.float64)

    probe_s = timed(evaluation, 1, 5) / (5 * rows * dim * outputs)
    dims = [b.dim for b in PAPER_BACKBONES if b.label in DVME_FUSED]
    fusion = build_fusion("dvme", dims, 512, 1, 8, 0.1)
    head = torch.nn.Linear(fusion.out_dim, outputs)
    batch = 64
    embeddings = [torch.randn(batch, d) for d in dims]
    labels = torch.randint(0, outputs, (batch,))
    optimizer = torch.optim.AdamW([*fusion.parameters(), *head.parameters()], lr=1e-3)

    def train(embeddings=embeddings, labels=labels):
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            logits = head(fusion(embeddings).embedding)
        torch.nn.functional.cross_entropy(logits.float(), labels[: len(logits)]).backward()
        optimizer.step()

    @torch.no_grad()
    def forward(embeddings=embeddings):
        with autocast():
            head(fusion(embeddings).embedding)

    fusion.train()
    train_s = timed(train, 2, 20)
    train_flops = counted_flops(lambda: train([e[:8] for e in embeddings], labels[:8])) / 8
    fusion.eval()
    forward_s = timed(forward, 2, 20)
    forward_flops = counted_flops(lambda: forward([e[:8] for e in embeddings])) / 8
    result = {"probe_value_s": probe_s, "head_train_per_s": batch * 20 / train_s,
              "head_forward_per_s": batch * 20 / forward_s, "head_train_flops": train_flops,
              "head_forward_flops": forward_flops}
    print(f"  exact probe: {probe_s * 1e12:.1f} ps per row x dimension x output of one evaluation; DVME head "
          f"{result['head_train_per_s']:,.0f} rows/CPU-s training, {result['head_forward_per_s']:,.0f} "
          "forward "
          f"({train_flops / 1e6:.1f} / {forward_flops / 1e6:.1f} MFLOP per row)", flush=True)
    return result


def measure(args, precision: str) -> Measured:
    bf16 = precision == "bf16-mixed"

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext()

    print(f"== {precision}{', channels-last' if args.channels_last else ''} on the CPU, "
          f"{torch.get_num_threads()} threads; load average {load_average()}", flush=True)
    arches = sorted({b.arch for b in PAPER_BACKBONES} | set(args.also))
    per_arch = {arch: measure_backbone(arch, args, autocast) for arch in arches}
    heads = measure_heads(args, autocast)
    return Measured(
        "CPU", precision,
        *({a: r[key] for a, r in per_arch.items()}
          for key in ("forward_per_s", "train_per_s", "forward_flops", "train_flops")),
        notes=[f"threads {torch.get_num_threads()}", f"load average at the end {load_average()}",
               f"steps {args.steps}, batch {args.batch}"], **heads)


# -- tables --------------------------------------------------------------------------------------------------
def show_table(cpu: list[Line], gpu: list[Line], gpu_name: str, cores: int) -> None:
    print(f"\n| dataset | stage | runs | backbone image passes | CPU-hours (here) | {gpu_name} GPU-hours |")
    print("|---|---|---|---|---|---|")
    for c, g in zip([*cpu, total(cpu)], [*gpu, total(gpu)], strict=True):
        bold = "**" if c.stage == "total" else ""
        passes = f"{c.passes / 1e6:,.2f} M" if c.passes else "-"
        print(f"| {bold}{c.dataset}{bold} | {bold}{c.stage}{bold} | {c.runs} | {passes} | "
              f"{bold}{c.seconds / 3600:,.1f}{bold} | {bold}{g.seconds / 3600:,.2f}{bold} |")
    hours = total(cpu).seconds / 3600
    print(f"\n{hours:,.0f} CPU-hours: {hours / cores / 24:,.0f} days on this machine's {cores} cores; "
          f"{total(gpu).seconds / 3600:,.1f} {gpu_name} GPU-hours")


def show_constants(measured: list[Measured]) -> None:
    print("\n== constants (per CPU-second of this process)")
    for m in measured:
        for arch in m.forward_per_s:
            print(f"  {m.precision:<10} {arch:<22} forward {m.forward_per_s[arch]:6.2f} images/CPU-s "
                  f"({m.forward_flops[arch] / 1e9:.2f} GFLOP/image), training step "
                  f"{m.train_per_s[arch]:5.2f} ({m.train_flops[arch] / 1e9:.2f} GFLOP)")
        print(f"  {m.precision:<10} exact probe {m.probe_value_s * 1e12:.1f} ps per row x dimension x output "
              f"of an evaluation; DVME head {m.head_train_per_s:,.0f} rows/CPU-s training, "
              f"{m.head_forward_per_s:,.0f} forward")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--datasets", nargs="+", default=list(DEFAULT_DATASETS), choices=sorted(DATASETS))
    parser.add_argument("--precisions", nargs="+", default=["32-true", "bf16-mixed"],
                        choices=["32-true", "bf16-mixed"],
                        help="CPU precisions to measure; the table is in the first, others' totals follow")
    parser.add_argument("--also", nargs="*", default=["vit_base_patch16_224"],
                        help="architectures measured besides the grid's (for reference)")
    parser.add_argument("--batch", type=int, default=8, help="images per measured batch (ViT-B: half)")
    parser.add_argument("--steps", type=int, default=3, help="timed batches after one warm-up batch")
    parser.add_argument("--channels_last", action="store_true",
                        help="measure convolutional nets channels-last")
    parser.add_argument("--gpu_check_log", type=Path, help="the saved output of bash benchmarks/gpu_check.sh")
    parser.add_argument("--gpu_peak_tflops", type=float, default=H100_BF16_DENSE_TFLOPS)
    parser.add_argument("--gpu_fp32_tflops", type=float, default=H100_FP32_TFLOPS)
    parser.add_argument("--gpu_utilisation", type=float, default=None,
                        help=f"share of the peak assumed (default {ASSUMED_UTILISATION}, or what gpu_check "
                             "measured for ResNet-50)")
    parser.add_argument("--save_constants", type=Path, help="write the measured constants (JSON)")
    parser.add_argument("--constants", type=Path,
                        help="read constants saved by --save_constants; measure none")
    return parser.parse_args(argv)


def gpu_side(args, constants: Measured) -> tuple[str, float, dict | None]:
    """The GPU's name in the table, the share of its peak, and the rates gpu_check measured (if given)."""
    if not args.gpu_check_log:
        utilisation = args.gpu_utilisation or ASSUMED_UTILISATION
        print(f"\nGPU estimate: {args.gpu_peak_tflops:.0f} TFLOPS bf16 dense peak x {utilisation:.0%} "
              f"(assumed); the probe's products at {args.gpu_fp32_tflops:.0f} TFLOPS float32 x "
              f"{utilisation:.0%}")
        return "H100 (estimated)", utilisation, None
    check = read_gpu_check(args.gpu_check_log.read_text())
    peak = args.gpu_peak_tflops * 1e12
    implied = check["train"] * constants.train_flops["resnet50"] / peak
    forward = implied * peak / constants.forward_flops["resnet50"]
    print(f"\ngpu_check: {check['gpu']}, ResNet-50 training {check['train']:.1f} images/s = {implied:.1%} of "
          f"{args.gpu_peak_tflops:.0f} TFLOPS; its forward taken at the same share: {forward:.0f} images/s "
          f"(the end-to-end probe measured {check['probe_end_to_end']} images/s, start-up included); the "
          f"ViTs and heads at {args.gpu_utilisation or implied:.1%}")
    return (f"{check['gpu']} (ResNet-50 measured)", args.gpu_utilisation or implied,
            {"resnet50": {"train": check["train"], "forward": forward}})


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # random-init backbones only
    started = time.perf_counter()
    print(f"paper grid cost: load average {load_average()}, {os.cpu_count()} CPUs, torch {torch.__version__}")
    if args.constants:
        measured = [Measured(**m) for m in json.loads(args.constants.read_text())]
    else:
        measured = [measure(args, precision) for precision in args.precisions]
    if args.save_constants:
        args.save_constants.write_text(json.dumps([asdict(m) for m in measured], indent=2))
    show_constants(measured)
    constants = measured[0]
    gpu_name, utilisation, rates = gpu_side(args, constants)

    def costs(datasets: list[Dataset], m: Measured = constants) -> tuple[list[Line], list[Line]]:
        gpu = gpu_costs(m, args.gpu_peak_tflops, args.gpu_fp32_tflops, utilisation, rates)
        return grid_cost(m.costs(), datasets), grid_cost(gpu, datasets)

    datasets = [DATASETS[name] for name in args.datasets]
    protocol = Protocol()
    print(f"\n== the paper grid, {constants.precision} on the CPU: {len(datasets)} datasets x "
          f"({len(PAPER_BACKBONES)} backbones x linear probe and finetune + DVME frozen and end to end) x "
          f"{len(protocol.fractions)} fractions x {protocol.seeds} seeds; finetune "
          f"{protocol.finetune_epochs} epochs, DVME {protocol.dvme_epochs}, probe "
          f"{protocol.probe_evaluations} evaluations")
    for data in datasets:
        print(f"  {data.name}: {data.train:,} train, {data.val:,} val, {data.test:,} test ({data.source})")
    cpu, gpu = costs(datasets)
    show_table(cpu, gpu, gpu_name, os.cpu_count() or 1)
    for m in measured[1:]:
        print(f"  constants of {m.precision} on the CPU: {total(costs(datasets, m)[0]).seconds / 3600:,.0f} "
              "CPU-hours")
    if "eyepacs" in args.datasets and "aptos2019" not in args.datasets:
        cpu, gpu = costs([DATASETS["aptos2019"] if d == "eyepacs" else DATASETS[d] for d in args.datasets])
        print(f"  APTOS 2019 in place of EyePACS (configs/benchmark/paper.yaml): "
              f"{total(cpu).seconds / 3600:,.0f} CPU-hours, {total(gpu).seconds / 3600:,.1f} GPU-hours")
    print(f"\nmeasured and computed in {time.perf_counter() - started:.0f} s; load average {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
