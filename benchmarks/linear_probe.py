"""Linear evaluation, measured in one process on one machine: feature stores against the online probe, the LR
sweep against one probe, and the exact solver against scikit-learn.

Prints, each with the time of one forward pass (the extraction) as the yardstick:

(a)/(b) the online probe (backbone on every batch) against extraction + a cached probe, both trained by AdamW
        for the same epochs and seed (``solver: sgd``), their test metrics and the time ratio;
(c)     the time of a sweep of ``--sweep_lrs`` AdamW learning rates against one AdamW probe, same stores;
(d)     the exact solver (``LinearProbe``'s default on stores: standardised features, L-BFGS along the L2
        path, selection on validation) against scikit-learn's ``LogisticRegression(C=1 / (l2 * n))`` on the
        same standardised stores, penalties and selection: test metric and time of both; and the default
        standardised SGD sweep's (learning rates x L2 weight decays) test metric against scikit-learn's;
(e)     the solver's whole path against scikit-learn's on ``--scale_rows`` x ``--scale_dim`` float features
        (Gaussian classes), time of both.

    python benchmarks/linear_probe.py   # PneumoniaMNIST (../shared/data, else synthetic), ResNet-50, 64 px:
                                        # about 7 minutes on 2 cores
    python benchmarks/linear_probe.py --dataset retinamnist --backbone resnet18 --image_size 28 --only solver
    python benchmarks/linear_probe.py --backbone resnet18 --checkpoint ssl.pt   # non-trivial features
    python benchmarks/linear_probe.py --backbone resnet50.tv_in1k   # pretrained (downloads once)

No train-time augmentation (``augmentation: none``), so every probe sees the same inputs. Every timing is
taken ``--repeats`` times, the two sides of each comparison taking turns (a repeat of (a)/(b) extracts into a
folder of its own), and its target is judged in CPU seconds of this process on the interval of the median of
the per-repeat ratios (``benchmarks/verdicts.py``): met, MISSED or too wide to judge. The metric differences
are seeded (the same every run) and taken once, as is (d). scikit-learn is a dev dependency
(``pip install -e ".[dev]"``).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from verdicts import Verdicts, alternating, load_average, ratios, repeats_argument, spread

from medtransfer.datamodules import SyntheticMedical
from medtransfer.features import store_for
from medtransfer.lightning_modules import LinearProbe, LinearSweep
from medtransfer.lightning_modules.linear_probe import DEFAULT_L2
from medtransfer.lightning_modules.logistic_path import logistic_path
from medtransfer.run.session import steps_on_one_thread
from medtransfer.runtime.threads import step_threads

REPO = Path(__file__).resolve().parents[1]
SHARED_MEDMNIST = REPO.parent / "shared" / "data" / "medmnist"
sys.path.insert(0, str(REPO))  # the scikit-learn reference lives with the tests that hold the solver to it
from tests.lightning_modules.sklearn_reference import sklearn_probe, store_arrays  # noqa: E402

SECTIONS = ("stores", "sweep", "solver", "scale")
CPU = "CPU seconds of this process"
SEEDED = "seeded, the same every run"


def build_data(args):
    options = {"image_size": args.image_size, "batch_size": args.batch_size, "augmentation": "none"}
    if args.dataset in ("pneumoniamnist", "retinamnist"):
        from medtransfer.datamodules import MedMNIST

        return MedMNIST(root=str(SHARED_MEDMNIST), flag=args.dataset, size=28, **options)
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
    datamodule = model.attach_data(data)
    with step_threads(steps_on_one_thread(model, run)):  # as the medtransfer command runs it
        run.fit(model, datamodule=datamodule)
        (test,) = run.test(model, datamodule=datamodule, verbose=False)
    return test


def probe(args, data, features_dir: str, feature_cache: bool = True, solver: str = "sgd") -> LinearProbe:
    pl.seed_everything(args.seed)
    return LinearProbe(backbone=args.backbone, checkpoint=args.checkpoint, feature_cache=feature_cache,
                       features_dir=features_dir, solver=solver, task=data.task, lr=args.lr)


def extraction(args, data, features_dir: str) -> Clock:
    """One forward pass over every split: the extraction, writing the stores into ``features_dir``."""
    model = probe(args, data, features_dir)
    forward = Clock()
    with forward:  # the forward pass IS the extraction: stores are written as the embeddings arrive
        for split in ("train", "val", "test"):
            store_for(model.backbone, data, split, features_dir)
    return forward


def timed_fit(model, data, epochs: int) -> tuple[Clock, dict]:
    clock = Clock()
    with clock:
        test = fit_and_test(model, data, epochs)
    return clock, test


def stores_folder(tmp: str, repeat: int) -> str:
    """Where a repeat of (a)/(b) extracts to; the first one's stores serve the sections after it."""
    return str(Path(tmp) / f"stores{repeat}")


def stores_repeat_measures(args, data, tmp: str) -> dict:
    """(a)/(b) as two measurements of one repeat: extraction into a folder of its own (nothing reused) then
    the cached AdamW probe; and the online AdamW probe, timed at ``--online_epochs`` and scaled."""
    online_epochs = args.online_epochs or args.epochs
    repeats = itertools.count()

    def cached() -> tuple[Clock, Clock]:
        folder = stores_folder(tmp, next(repeats))
        forward = extraction(args, data, folder)
        training, _ = timed_fit(probe(args, data, folder), data, args.epochs)
        return forward, forward + training

    def online() -> tuple[Clock, dict]:
        clock, test = timed_fit(probe(args, data, tmp, feature_cache=False), data, online_epochs)
        return clock.scaled(args.epochs / online_epochs), test

    return {"cached": cached, "online": online}


def compare_online_and_cached(args, data, tmp: str, verdicts: Verdicts) -> None:
    """(a)/(b): the same AdamW probe on images every batch and on stores."""
    results: dict[str, list] = {"cached": [], "online": []}
    for repeat, name, result in alternating(args.repeats, stores_repeat_measures(args, data, tmp)):
        results[name].append(result)
        shown = f"extraction {result[0]}, with the probe {result[1]}" if name == "cached" else result[0]
        print(f"  repeat {repeat + 1} {name}: {shown}", flush=True)
    forward = [f for f, _ in results["cached"]]
    cached = [c for _, c in results["cached"]]
    online = [o for o, _ in results["online"]]
    print(f"one forward pass over all splits (extraction into stores): {clocks(forward)}")
    print(f"(b) extraction + cached AdamW probe, {args.epochs} epochs: {clocks(cached)} = "
          f"{clock_ratios(cached, forward)} one forward pass")
    online_epochs = args.online_epochs or args.epochs
    plural = "s" if online_epochs > 1 else ""
    measured = "" if online_epochs == args.epochs else f" (measured at {online_epochs} epoch{plural}, scaled)"
    print(f"(a) online probe, {args.epochs} epochs: {clocks(online)}{measured}")
    print(f"online / cached: {clock_ratios(online, cached)}")
    verdicts.judge(f"{args.epochs} cached epochs (extraction included) / one forward pass",
                   ratios([c.cpu for c in cached], [f.cpu for f in forward]), "<=", 1.3, CPU, ".2f")
    verdicts.judge(f"online / cached probe, {args.epochs} epochs",
                   ratios([o.cpu for o in online], [c.cpu for c in cached]), ">=", 30, CPU, ".1f")
    compare_online_and_cached_metrics(args, data, stores_folder(tmp, 0), results["online"][0][1], verdicts)


def compare_online_and_cached_metrics(args, data, stores: str, online_test: dict, verdicts: Verdicts) -> None:
    """The online probe's test metrics against the cached probe's at the same epochs and seed."""
    online_epochs = args.online_epochs or args.epochs
    cached_test = fit_and_test(probe(args, data, stores), data, online_epochs)
    print(f"test metrics at {online_epochs} epochs, same seed, no train-time augmentation:")
    for name in sorted(set(online_test) & set(cached_test)):
        print(f"  {name:<12} online {online_test[name]:.4f}  cached {cached_test[name]:.4f}  "
              f"|diff| {abs(online_test[name] - cached_test[name]):.4f}")
    primary = f"test/{data.task.primary_metric}"
    verdicts.judge(f"|online - cached| {primary}", [abs(online_test[primary] - cached_test[primary])], "<=",
                   0.01, SEEDED, ".4f")


def compare_sweep_and_single(args, data, stores: str, verdicts: Verdicts) -> None:
    """(c): ten AdamW heads in one pass against one, on the same stores."""

    def single() -> Clock:
        return timed_fit(probe(args, data, stores), data, args.sweep_epochs)[0]

    def sweep() -> Clock:
        pl.seed_everything(args.seed)
        model = LinearSweep(backbone=args.backbone, checkpoint=args.checkpoint, lrs=sweep_lrs(args),
                            weight_decays=[0.0], optimizer="adamw", features_dir=stores, task=data.task)
        return timed_fit(model, data, args.sweep_epochs)[0]

    results: dict[str, list[Clock]] = {"single": [], "sweep": []}
    for _, name, clock in alternating(args.sweep_repeats, {"single": single, "sweep": sweep}):
        results[name].append(clock)
    print(f"(c) stores reused, {args.sweep_epochs} epochs: single AdamW probe {clocks(results['single'])}, "
          f"sweep of {args.sweep_lrs} lrs {clocks(results['sweep'])} = "
          f"{clock_ratios(results['sweep'], results['single'])}")
    verdicts.judge(f"sweep of {args.sweep_lrs} lrs / one probe",
                   ratios([c.cpu for c in results["sweep"]], [c.cpu for c in results["single"]]), "<", 1.5,
                   CPU, ".2f")


def compare_solver_with_sklearn(args, data, stores: str, verdicts: Verdicts) -> None:
    """(d): the exact solver, and the standardised AdamW sweep, against scikit-learn on the same stores. The
    metrics are seeded (the same every run), so this section runs once; its times are shown, not judged."""
    model = probe(args, data, stores, solver="lbfgs")
    solve, ours = timed_fit(model, data, 1)
    summary = model.extra_results()["solver"]
    arrays = store_arrays(model.backbone, data, stores)
    reference_clock = Clock()
    with reference_clock:
        reference = sklearn_probe(data.task.kind, *arrays.values(), summary_l2(summary))
    metric = data.task.primary_metric
    primary = f"test/{metric}"
    print(f"(d) exact solver, {len(summary['path'])} penalties, stores reused (one run, times not judged): "
          f"the path {summary['path_seconds']:.1f}s wall; with loading, standardisation, validation and test "
          f"{solve}; scikit-learn lbfgs on the same path (with its predictions) {reference_clock}")
    unconverged = [p["l2"] for p in summary["path"] if not p["converged"]]
    print(f"    selected l2: ours {summary['selected']['l2']:.3g}, scikit-learn {reference['l2']:.3g}; "
          f"{primary}: ours {ours[primary]:.4f}, scikit-learn {reference['test']:.4f}; "
          f"not converged at l2 {unconverged or 'none'}")
    verdicts.judge(f"|solver - scikit-learn| {primary}", [abs(ours[primary] - reference["test"])], "<=",
                   0.005, SEEDED, ".4f")
    pl.seed_everything(args.seed)
    sweep_model = LinearSweep(backbone=args.backbone, checkpoint=args.checkpoint, features_dir=stores,
                              task=data.task)  # the default: SGD over learning rates x L2 weight decays
    sweep_test = fit_and_test(sweep_model, data, args.epochs)
    chosen = sweep_model.extra_results()["sweep"]["selected"]
    print(f"    standardised SGD sweep ({len(sweep_model.grid)} heads, {args.epochs} epochs, lr "
          f"{chosen['lr']:.2g} and weight decay {chosen['weight_decay']:.2g} selected): {primary} "
          f"{sweep_test[primary]:.4f}")
    verdicts.judge(f"|standardised SGD sweep - scikit-learn| {primary}",
                   [abs(sweep_test[primary] - reference["test"])], "<=", 0.01, SEEDED, ".4f")


def scale_features(args) -> tuple[np.ndarray, np.ndarray]:
    """``rows x dim`` float32 features with the low-rank structure of real embeddings and overlapping classes,
    so the weakly regularised points need hundreds of iterations, as on real stores."""
    rng = np.random.default_rng(args.seed)
    labels = rng.integers(0, 2, args.scale_rows)
    factors = rng.normal(size=(args.scale_rows, 64)) @ rng.normal(size=(64, args.scale_dim)) / 8
    centres = 0.01 * rng.normal(size=(2, args.scale_dim))
    features = factors + 0.5 * rng.normal(size=(args.scale_rows, args.scale_dim)) + centres[labels]
    return ((features - features.mean(0)) / features.std(0)).astype(np.float32), labels


def our_path(features: np.ndarray, labels: np.ndarray) -> tuple[Clock, int]:
    clock = Clock()
    with clock:
        path = logistic_path(torch.from_numpy(features), torch.from_numpy(labels), "binary", 1, DEFAULT_L2)
    return clock, sum(p.iterations for p in path)


def sklearn_path(features: np.ndarray, labels: np.ndarray) -> tuple[Clock, int]:
    clock, iterations = Clock(), 0
    with clock, warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model = LogisticRegression(C=1.0, tol=1e-4, max_iter=1000, warm_start=True)
        for l2 in sorted(DEFAULT_L2, reverse=True):
            model.set_params(C=1.0 / (l2 * len(features)))
            model.fit(features, labels)
            iterations += int(model.n_iter_.max())
    return clock, iterations


def time_solver_at_scale(args, verdicts: Verdicts) -> None:
    """(e): the whole path on ``rows x dim`` float32 features, ours against scikit-learn's on the same array
    and penalties, taking turns."""
    features, labels = scale_features(args)
    measures = {"ours": lambda: our_path(features, labels), "sklearn": lambda: sklearn_path(features, labels)}
    results: dict[str, list[tuple[Clock, int]]] = {"ours": [], "sklearn": []}
    for _, name, result in alternating(args.repeats, measures):
        results[name].append(result)
    ours, theirs = [c for c, _ in results["ours"]], [c for c, _ in results["sklearn"]]
    print(f"(e) the {len(DEFAULT_L2)}-penalty path on {args.scale_rows} x {args.scale_dim} float32 features: "
          f"solver {clocks(ours)} ({results['ours'][0][1]} L-BFGS iterations), scikit-learn lbfgs "
          f"{clocks(theirs)} ({results['sklearn'][0][1]} iterations) = {clock_ratios(ours, theirs)}")
    verdicts.judge(f"solver / scikit-learn, whole path on {args.scale_rows} x {args.scale_dim}",
                   ratios([c.cpu for c in ours], [c.cpu for c in theirs]), "<", 1.0, CPU, ".2f")


def summary_l2(summary: dict) -> list[float]:
    return [point["l2"] for point in summary["path"]]


def sweep_lrs(args) -> list[float]:
    return np.geomspace(1e-4, 0.1, args.sweep_lrs).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    has_shared = (SHARED_MEDMNIST / "pneumoniamnist.npz").is_file()
    parser.add_argument("--dataset", choices=("pneumoniamnist", "retinamnist", "synthetic"),
                        default="pneumoniamnist" if has_shared else "synthetic")
    parser.add_argument("--backbone", default="resnet50",
                        help="a timm architecture (random init, no download) or registry weights")
    parser.add_argument("--checkpoint", default=None, help="a local weights file for --backbone")
    parser.add_argument("--image_size", type=int, default=64)
    parser.add_argument("--num_train", type=int, default=1024, help="synthetic only; val 1/4, test 1/2 of it")
    parser.add_argument("--epochs", type=int, default=100)
    parser.add_argument("--online_epochs", type=int, default=1,
                        help="epochs of the online probe (0: --epochs); fewer ones are timed and scaled "
                             "linearly to --epochs, and the metric comparison then runs the cached probe at "
                             "them too")
    parser.add_argument("--batch_size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3, help="the AdamW probes' learning rate")
    parser.add_argument("--sweep_lrs", type=int, default=10, help="sweep this many rates, 1e-4 to 0.1")
    parser.add_argument("--sweep_repeats", type=repeats_argument, default=9,
                        help="repeats of the sweep vs single-probe timing")
    parser.add_argument("--sweep_epochs", type=int, default=100,
                        help="epochs of the sweep vs single-probe timing (the probes' own 100: at 20, a fit "
                             "took a second or two and its setup's noise decided the verdict)")
    parser.add_argument("--scale_rows", type=int, default=5000)
    parser.add_argument("--scale_dim", type=int, default=2048)
    parser.add_argument("--only", nargs="+", choices=SECTIONS, default=list(SECTIONS),
                        help="run only these sections: stores (a, b), sweep (c), solver (d), scale (e)")
    parser.add_argument("--repeats", type=repeats_argument, default=3,
                        help="repeats of every timing but the sweep's (baseline and candidate taking turns)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = build_data(args)
    data.setup("fit")
    sizes = {split: len(data.sources()[split]) for split in ("train", "val", "test")}
    source = f" from {args.checkpoint}" if args.checkpoint else ""
    print(f"data: {data.name} {sizes} at {args.image_size} px; backbone {args.backbone}{source}; "
          f"batch {args.batch_size}; seed {args.seed}; {torch.get_num_threads()} CPU threads; {args.repeats} "
          f"repeats of every timing ({args.sweep_repeats} of the sweep's); load average {load_average()}",
          flush=True)
    verdicts = Verdicts()
    with tempfile.TemporaryDirectory(prefix="medtransfer-bench-") as tmp:
        stores = stores_folder(tmp, 0)
        if "stores" in args.only:
            compare_online_and_cached(args, data, tmp, verdicts)
        elif set(args.only) - {"scale"}:
            forward = extraction(args, data, stores)
            print(f"one forward pass over all splits (extraction into stores): {forward}")
        if "sweep" in args.only:
            compare_sweep_and_single(args, data, stores, verdicts)
        if "solver" in args.only:
            compare_solver_with_sklearn(args, data, stores, verdicts)
    if "scale" in args.only:
        time_solver_at_scale(args, verdicts)
    verdicts.show()


def clocks(values: list[Clock]) -> str:
    wall, cpu = [c.wall for c in values], [c.cpu for c in values]
    return f"{spread(wall, '.1f')} s wall ({spread(cpu, '.1f')} s CPU)"


def clock_ratios(values: list[Clock], baselines: list[Clock]) -> str:
    """Each repeat's ratio, in wall and in CPU time."""
    wall = ratios([c.wall for c in values], [b.wall for b in baselines])
    cpu = ratios([c.cpu for c in values], [b.cpu for b in baselines])
    return f"{spread(wall, '.2f')}x wall ({spread(cpu, '.2f')}x CPU)"


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

    def __str__(self) -> str:
        return f"{self.wall:.1f}s wall ({self.cpu:.1f}s CPU)"


if __name__ == "__main__":
    main()
