"""Cost of the benchmark report's statistics over the paper grid: 360 runs with simulated test predictions of
the real test-set sizes, reported with 1,000 bootstrap resamples.

The grid: PCam (32,768 patches, binary AUROC), APTOS 2019 (733 carved test images, 5 grades, kappa),
pneumonia (624 images, binary AUROC, patients), ChestX-ray14 (25,596 images x 14 findings, mean AUROC,
patients) x 10 method/backbone rows x 3 label fractions x 3 seeds. Predictions of different methods on one
test set are correlated (a shared per-image difficulty), as real ones are.

Baseline, measured in the same run: the textbook bootstrap (resample indices, recompute the metric with
scikit-learn on the resampled arrays) of one PCam run, scaled to the grid. Target: the whole report in under
2 minutes on 2 CPU cores.

    python benchmarks/report_statistics.py                  # simulates into a temporary folder
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

import numpy as np
from sklearn.metrics import roc_auc_score

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


def simulate(root: Path) -> int:
    """Write the grid's 360 results.json + test_predictions.csv under ``root``; returns the run count."""
    count = 0
    for d, (dataset, (task, n, patients)) in enumerate(DATASETS.items()):
        rng = np.random.default_rng(d)
        labels = test_labels(task, n, rng)
        shape = (n, task.num_classes) if task.kind == "multiclass" else labels.shape
        difficulty = rng.normal(size=shape)
        groups = None if patients is None else np.sort(rng.integers(0, patients, n)).astype(str)
        ids = [f"{dataset}-{i:06d}" for i in range(n)]
        for r, (protocol, backbone) in enumerate(ROWS):
            for fraction in FRACTIONS:
                for seed in SEEDS:
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="simulate into (or reuse) this folder, not a temporary one")
    parser.add_argument("--resamples", type=int, default=1000)
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="medtransfer-report-"))
    try:
        if not (root / ".complete").is_file():
            started = time.perf_counter()
            runs = simulate(root)
            (root / ".complete").write_text(str(runs))
            print(f"simulated {runs} runs in {time.perf_counter() - started:.0f} s (not timed below)")
        runs = int((root / ".complete").read_text())
        load = os.getloadavg()[0]
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        report = write_report(root, out=root / "report", resamples=args.resamples)
        elapsed = time.perf_counter() - started
        own, workers = (after - before for after, before in zip(cpu_seconds(), cpu_before, strict=True))
        # the report's own work runs in this process, the scoring split evenly over the workers: on otherwise
        # idle cores it takes about this long
        idle = own + workers / min(2, os.cpu_count() or 1)
        joined = len(report.collection.records)
        without = report.summary.read_text().count("(no CI")
        probe = min(args.resamples, 100)
        naive = naive_bootstrap_seconds(probe) * args.resamples / probe
        print(f"report over {joined} of {runs} runs ({without} cells without interval), {args.resamples} "
              f"resamples: {elapsed:.1f} s wall; CPU {own:.1f} s here + {workers:.1f} s in worker processes "
              f"(load average before: {load:.1f} on {os.cpu_count()} cores)")
        print(f"baseline: the textbook bootstrap of ONE PCam run takes {naive:.1f} s (scaled from {probe} "
              f"resamples); the report of all {joined} runs costs {elapsed / naive:.2f} of those")
        verdict = "met" if elapsed < TARGET_S else "MISSED"
        print(f"target: under {TARGET_S:.0f} s on 2 CPU cores -> {verdict} ({elapsed:.0f} s wall on this "
              f"machine as loaded; from CPU time, about {idle:.0f} s on 2 idle cores)")
        return 0
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
