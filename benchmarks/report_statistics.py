"""Cost of the benchmark report's statistics over the paper grid: 360 runs with simulated test predictions of
the real test-set sizes, reported with 1,000 bootstrap resamples.

The grid: PCam (32,768 patches, binary AUROC), APTOS 2019 (733 carved test images, 5 grades, kappa),
pneumonia (624 images, binary AUROC, patients), ChestX-ray14 (25,596 images x 14 findings, mean AUROC,
patients) x 10 method/backbone rows x 3 label fractions x 3 seeds. Predictions of different methods on one
test set are correlated (a shared per-image difficulty), as real ones are.

Baseline, measured in the same run: the textbook bootstrap (resample indices, recompute the metric with
scikit-learn on the resampled arrays) of one PCam run, scaled to the grid. Target: the whole report in under
2 minutes on 2 CPU cores. The report is written ``--repeats`` times (into a fresh folder each time, the
baseline between them) and the target is judged on every repeat (``benchmarks/verdicts.py``), in the time the
report takes on 2 idle cores as its CPU time gives it: its own work, plus its worker processes' work spread
over 2 cores. The wall clock, which also counts other work on the machine, is shown beside it.

    python benchmarks/report_statistics.py                  # about 2 minutes, in a temporary folder
    python benchmarks/report_statistics.py --keep runs/sim   # keeps (and reuses) the simulated runs
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numpy as np
from sklearn.metrics import roc_auc_score
from verdicts import Verdicts, alternating, load_average, repeats_argument, spread

from medtransfer.grid.report import write_report
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import build_results, write_json_atomic
from medtransfer.stats.resampling import full_sample
from medtransfer.task import Task

TARGET_S = 120.0
CHEST_FINDINGS = ("Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
                  "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening",
                  "Hernia")
CHEST_PREVALENCE = (0.12, 0.04, 0.15, 0.24, 0.07, 0.06, 0.02, 0.10, 0.07, 0.04, 0.04, 0.02, 0.04, 0.003)
DATASETS = {  # name: (task, test images, patients or None)
    "PCam": (Task("binary", ("normal", "metastasis")), 32768, None),
    "APTOS2019": (Task("multiclass", tuple("01234"), ordinal=True, primary_metric="kappa"), 733, None),
    "ChestXrayPneumonia": (Task("binary", ("NORMAL", "PNEUMONIA")), 624, 420),
    "ChestXray14": (Task("multilabel", CHEST_FINDINGS), 25596, 2797),
}
BACKBONES = ("resnet50.tv_in1k", "resnet50.simclr_in1k", "resnet50.swav_in1k", "vit_small_patch16_224.dino",
             "resnet50.simclr_in1k+resnet50.swav_in1k+vit_small_patch16_224.dino")  # the last: DVME
ROWS = [(protocol, backbone) for protocol in ("LinearProbe", "Finetune") for backbone in BACKBONES]
FRACTIONS = (0.01, 0.1, 1.0)
SEEDS = (0, 1, 2)


def simulate(root: Path, scale: float = 1.0, seeds: tuple[int, ...] = SEEDS) -> int:
    """Write the grid's 360 results.json + test_predictions.csv under ``root``; returns the run count.

    ``scale`` multiplies every test set's size and patient count (at least 8 images and 2 patients), and
    ``seeds`` replaces the grid's three: ``benchmarks/scaling.py`` times the report as the test sets grow (and
    checks itself on a toy grid)."""
    count = 0
    for d, (dataset, (task, n, patients)) in enumerate(DATASETS.items()):
        n = max(8, round(n * scale))
        patients = None if patients is None else max(2, min(n, round(patients * scale)))
        rng = np.random.default_rng(d)
        labels = test_labels(task, n, rng)
        shape = (n, task.num_classes) if task.kind == "multiclass" else labels.shape
        difficulty = rng.normal(size=shape)
        groups = None if patients is None else np.sort(rng.integers(0, patients, n)).astype(str)
        ids = [f"{dataset}-{i:06d}" for i in range(n)]
        for r, (protocol, backbone) in enumerate(ROWS):
            for fraction in FRACTIONS:
                for seed in seeds:
                    strength = 1.0 + 0.1 * r + 0.5 * np.log10(fraction * 100) + 0.05 * seed
                    noise = np.random.default_rng([d, r, seed, int(fraction * 100)]).normal(size=shape)
                    probs = predicted(task, labels, strength, difficulty + noise)
                    predictions = Predictions(task, ids, probs, labels, groups=groups)
                    folder = root / f"{dataset}-{protocol}-{r}-f{fraction}-s{seed}"
                    predictions.write_csv(folder / "test_predictions.csv")
                    write_json_atomic(folder / "results.json",
                                      results(dataset, task, protocol, backbone, fraction, seed, predictions))
                    count += 1
    return count


def test_labels(task: Task, n: int, rng: np.random.Generator) -> np.ndarray:
    if task.kind == "binary":
        return (rng.random(n) < 0.5).astype(np.int64)
    if task.kind == "multiclass":
        return rng.choice(5, n, p=[0.49, 0.10, 0.27, 0.05, 0.09])
    return (rng.random((n, len(CHEST_PREVALENCE))) < CHEST_PREVALENCE).astype(np.int64)


def predicted(task: Task, labels: np.ndarray, strength: float, noise: np.ndarray) -> np.ndarray:
    if task.kind == "multiclass":
        logits = strength * np.eye(5)[labels] + noise
        return (np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)).astype(np.float32)
    return (1 / (1 + np.exp(-(strength * (labels - 0.5) * 2 + noise - 1)))).astype(np.float32)


def results(dataset, task, protocol, backbone, fraction, seed, predictions: Predictions) -> dict:
    """results.json of a run; its labels (dataset, protocol = model name, backbone) place it as the paper
    grid's tables do: per protocol, the four backbones and their DVME fusion."""
    metric = task.primary_metric
    value = float(predictions.metrics().evaluate(full_sample(len(predictions)), [metric])[metric][0])
    config = {"seed_everything": seed,
              "model": {"class_path": f"medtransfer.lightning_modules.{protocol}",
                        "init_args": {"backbone": backbone}},
              "data": {"class_path": f"medtransfer.datamodules.{dataset}",
                       "init_args": {"train_fraction": fraction, "fraction_seed": seed}}}
    return build_results(
        verb="fit", metrics={"test": {metric: value}}, task=task.to_dict(),
        data={"name": dataset, "train_fraction": fraction, "fraction_seed": seed},
        model={"name": protocol,
               "backbones": [{"name": b, "fingerprint": "0" * 16} for b in backbone.split("+")]},
        seed=seed, config=config, wall_time_s=1.0, predictions={"test": "test_predictions.csv"},
    )


def naive_bootstrap_seconds(resamples: int) -> float:
    """The textbook bootstrap of one PCam run: resampled indices, scikit-learn's AUROC per resample."""
    task, n, _ = DATASETS["PCam"]
    rng = np.random.default_rng(0)
    labels = test_labels(task, n, rng)
    probs = predicted(task, labels, 1.0, rng.normal(size=n))
    started = time.perf_counter()
    for _ in range(resamples):
        rows = rng.integers(0, n, n)
        roc_auc_score(labels[rows], probs[rows])
    return time.perf_counter() - started


def cpu_seconds() -> tuple[float, float]:
    """User + system time of this process, and of its finished worker processes."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, workers.ru_utime + workers.ru_stime


class Timed(NamedTuple):
    """One report: wall seconds, CPU seconds here and in the worker processes, and the runs it joined."""

    wall: float
    own: float
    workers: float
    joined: int
    without_interval: int

    @property
    def on_idle_cores(self) -> float:
        """Seconds on 2 otherwise idle cores: its own work, plus its workers' work spread over the cores."""
        return self.own + self.workers / min(2, os.cpu_count() or 1)


def timed_report(root: Path, out: Path, resamples: int) -> Timed:
    """One report written from scratch into ``out``, timed (write_report skips files it would not change)."""
    shutil.rmtree(out, ignore_errors=True)
    cpu_before = cpu_seconds()
    started = time.perf_counter()
    report = write_report(root, out=out, resamples=resamples)
    elapsed = time.perf_counter() - started
    own, workers = (after - before for after, before in zip(cpu_seconds(), cpu_before, strict=True))
    without_interval = report.summary.read_text().count("(no CI")
    return Timed(elapsed, own, workers, len(report.collection.records), without_interval)


def simulated(root: Path) -> int:
    """The simulated grid's run count (simulated into ``root`` unless an earlier ``--keep`` run left it)."""
    if not (root / ".complete").is_file():
        started = time.perf_counter()
        runs = simulate(root)
        (root / ".complete").write_text(str(runs))
        print(f"simulated {runs} runs in {time.perf_counter() - started:.0f} s (not timed below)", flush=True)
    return int((root / ".complete").read_text())


def measure(root: Path, repeats: int, resamples: int) -> tuple[list[Timed], list[float]]:
    """The report's repeats and the baseline's (one PCam run's textbook bootstrap, scaled from at most 100
    resamples), taking turns."""
    probe = min(resamples, 100)
    measures = {"report": lambda: timed_report(root, root / "report", resamples),
                "naive": lambda: naive_bootstrap_seconds(probe) * resamples / probe}
    reports, naive = [], []
    for repeat, name, result in alternating(repeats, measures):
        (reports if name == "report" else naive).append(result)
        if name == "report":
            print(f"  repeat {repeat + 1}: report {result.wall:.1f} s wall; CPU {result.own:.1f} s here + "
                  f"{result.workers:.1f} s in worker processes: {result.on_idle_cores:.1f} s on 2 idle cores",
                  flush=True)
    return reports, naive


def show(reports: list[Timed], naive: list[float], runs: int) -> None:
    joined, without = reports[0].joined, reports[0].without_interval
    print(f"report over {joined} of {runs} runs ({without} cells without interval): wall "
          f"{spread([r.wall for r in reports], '.1f')} s; CPU here {spread([r.own for r in reports], '.1f')} "
          f"s, in worker processes {spread([r.workers for r in reports], '.1f')} s")
    costs = [report.wall / one for report, one in zip(reports, naive, strict=True)]
    print(f"baseline: the textbook bootstrap of ONE PCam run takes {spread(naive, '.1f')} s; the report of "
          f"all {joined} runs costs {spread(costs, '.2f')} of those")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="simulate into (or reuse) this folder, not a temporary one")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--repeats", type=repeats_argument, default=3, help="reports written, each timed")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="medtransfer-report-"))
    try:
        runs = simulated(root)
        print(f"report statistics: {runs} runs, {args.resamples} resamples, {args.repeats} repeats; load "
              f"average {load_average()} on {os.cpu_count()} cores", flush=True)
        reports, naive = measure(root, args.repeats, args.resamples)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    show(reports, naive, runs)
    verdicts = Verdicts()
    verdicts.judge("the whole report on 2 CPU cores", [r.on_idle_cores for r in reports], "<", TARGET_S,
                   "seconds on 2 idle cores from its CPU time", ".1f")
    verdicts.show()
    return 0


if __name__ == "__main__":
    sys.exit(main())
