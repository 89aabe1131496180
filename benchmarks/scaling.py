"""Cost at the paper's scale: every stage of a study timed at three or more sizes up to PCam's, with its peak
memory and the growth exponent of its time (issue 26).

The stages, each on generated data of the real formats and sizes (nothing is downloaded):

- ``prepare``: ``medtransfer prepare --cache`` (``FileBackedDataModule.prepare_cache``, what the verb calls,
  on every CPU) over 96 x 96 PNG patches like PCam's, up to 100,000 images;
- ``prepare-fundus``: the same over fundus-like JPEGs of EyePACS sizes (3-5 MB, up to 4928 x 3264), at the
  sizes that fit the run: a few distinct photos hard-linked under as many names (decoding, not the disk, is
  the cost);
- ``extract``: extraction of a PCam-format HDF5 training split into a feature store (``store_for``) by a tiny
  backbone (``test_resnet`` on 16 px: the point is the growth, not the network), loading in the process
  (``num_workers: 0``);
- ``store-read``: opening a training store (its SHA-256 checked) and reading it into memory, as a frozen
  head's ``EmbeddingsDataModule`` does, up to 262,144 x 2,048 (without numpy's huge-page advice and after
  one untimed read: the kernel's compaction for huge pages, and a fresh process's first gigabyte, cost a
  varying 0.5-2.5 CPU-s that is not the read);
- ``probe``: the exact solver's work on those features: the standardisation of the whole split and a FIXED
  number of objective-and-gradient evaluations (``PathSolver.evaluate``, the unit of L-BFGS's work; an
  iteration takes one to a few), so the per-iteration cost's growth is measured; the whole 10-penalty path
  at PCam size is ``--pcam``'s;
- ``sweep``: ``LinearSweep`` (the default 30 SGD heads) fit for one epoch, validated and tested, on stores;
- ``knn``: ``KNN`` tested on stores: a bank up to 131,072 x 2,048 against a fixed set of 1,024 queries, so
  the time is linear in bank x queries (the size reported; ``--pcam`` runs 262,144 x 32,768);
- ``dvme``: frozen ``DVME`` on the cached stores of three backbones (two ResNet-50s, a ViT-S), one epoch,
  at ``proj_dim`` 128 (the paper config's 512 costs about eight times as much per row, with the same
  growth);
- ``bootstrap``: the test-set bootstrap of one run (``medtransfer.stats``: intervals of the test metrics,
  1,000 resamples) up to 32,768 test images;
- ``report``: the benchmark report over the paper grid (``report_statistics.py``'s 360 simulated runs), with
  the four test sets scaled to an eighth, a quarter and half of the paper's (``report_statistics.py`` times
  the whole one); its size is the predictions over the grid.

Each (stage, size) runs in a fresh process (``--processes same`` runs them in this one), so one stage's peak
memory cannot hide another's; generating the data is not timed. Times are CPU seconds of the process and its
workers (the wall clock, shown too, also counts the machine's other work). For each stage it prints the time
and peak memory (RSS, and PSS: shared pages split among the processes sharing them) per size, and the growth
exponent: the log-log slope of time against size from the middle size to the largest (1 is linear). Targets
(``benchmarks/verdicts.py``: met or MISSED only when the interval of the median of the repeats is on one
side): every stage within 1.25x of linear from the middle to the largest size (time ratio <= 1.25 x size
ratio, judged on each repeat's pair of runs), and the peak memory of the streaming stages flat within 10%.
Stages that must hold a whole split (or all test predictions) in memory are marked and their peak printed
instead. By default the middle and largest sizes are timed twice (``--repeats``): the interval of 2 repeats
is their [min, max], a 50% interval; ``--repeats 3`` or more narrows the verdicts' doubt for a longer run.

    python benchmarks/scaling.py                       # every stage, about 15 minutes on 2 quiet cores
    python benchmarks/scaling.py --only probe knn      # some stages
    python benchmarks/scaling.py --quick               # toy sizes in one process: seconds, for the tests
    python benchmarks/scaling.py --pcam --only none    # the exact probe and kNN at PCam size, once (~30 min)

``--pcam`` runs the exact probe (``LinearProbe``, default 10-penalty path) and kNN (bank 262,144 x 2,048,
32,768 queries) once each through ``medtransfer.run`` (``fit`` and ``test``, as a user's run: run folder,
results.json with bootstrap intervals) on generated PCam-size stores on disk, with their time and peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from verdicts import Verdicts, load_average, repeats_argument, spread

BENCHMARKS = Path(__file__).resolve().parent
REPO = BENCHMARKS.parent
sys.path.insert(0, str(REPO))

GIB = 1024**3
SEED = 0
RESULT = "SCALING-RESULT "  # the line a stage's process ends with
LINEAR_SLACK = 1.25  # time ratio largest/middle at most this times the size ratio
FLAT_MEMORY = 1.10  # streaming stages: peak memory largest/middle at most this
PCAM_SPLITS = (262_144, 32_768, 32_768)


@dataclass(frozen=True)
class Stage:
    """One stage: its sizes (default and ``--quick``), what the size counts, and what it holds in memory
    (None: it streams, and its peak memory is judged flat)."""

    name: str
    title: str
    unit: str
    sizes: tuple[int, ...]
    quick: tuple[int, ...]
    holds: str | None
    repeats: int = 2


STAGES = {stage.name: stage for stage in (
    Stage("prepare", "prepare --cache, 96 px PNG patches", "images", (25_000, 50_000, 100_000), (48, 96, 192),
          None),
    Stage("prepare-fundus", "prepare --cache, fundus JPEGs 3-5 MB", "images", (16, 32, 64), (4, 8, 16), None),
    Stage("extract", "extraction into a store (PCam HDF5)", "images", (25_000, 50_000, 100_000),
          (64, 128, 256), "the split's embeddings (N x D float16) until the store is written"),
    Stage("store-read", "store read into memory (x 2,048)", "rows", (65_536, 131_072, 262_144),
          (256, 512, 1024), "the split's stored features (N x D float16)"),
    Stage("probe", "exact probe: standardise + 10 evaluations", "rows", (65_536, 131_072, 262_144),
          (256, 512, 1024), "the split's features: float16 as stored and float32 standardised"),
    Stage("sweep", "SGD sweep (30 heads), 1 epoch", "rows", (32_768, 65_536, 131_072), (256, 512, 1024),
          "the split's stored features (float16)"),
    Stage("knn", "kNN, bank x 1,024 queries", "bank x queries", (32_768, 65_536, 131_072), (256, 512, 1024),
          "the bank: float16 as stored and float32 standardised unit rows"),
    Stage("dvme", "cached DVME, 3 backbones (proj 128), 1 epoch", "rows", (25_000, 50_000, 100_000),
          (256, 512, 1024), "three stores of the split (float16)"),
    Stage("bootstrap", "test bootstrap, 1,000 resamples", "test images", (8_192, 16_384, 32_768),
          (256, 512, 1024), "the resample weights (N x 1,000) and the predictions"),
    Stage("report", "report over the paper grid (360 runs)", "predictions", (4_096, 8_192, 16_384),
          (256, 512, 1024), "each test set's predictions of every run, and their resamples"),
)}


@dataclass
class Setting:
    """What the stages' processes share: the folder of generated data and the sizes' details."""

    workdir: Path
    quick: bool
    queries: int = 1024  # kNN's queries, and the validation and test splits of the feature stages
    dim: int = 2048
    fundus_photos: int = 8
    resamples: int = 1000
    evaluations: int = 10

    def __post_init__(self) -> None:
        if self.quick:  # toy sizes: a check of the script, not a measurement
            self.queries, self.fundus_photos, self.resamples, self.evaluations = 64, 1, 100, 3

    @property
    def head_backbone(self) -> str:
        return "test_resnet" if self.quick else "resnet50"  # resnet50: 2,048 dims, as the paper's

    @property
    def dvme_backbones(self) -> list[str]:
        return (["test_resnet", "test_resnet", "test_vit"] if self.quick
                else ["resnet50", "resnet50", "vit_small_patch16_224"])


# -- sizes ---------------------------------------------------------------------------------------------------
def measured_size(stage: str, size: int, setting: Setting) -> int:
    """The size a stage's time is expected to grow with: bank x queries for kNN, the grid's predictions for
    the report, the size itself otherwise."""
    if stage == "knn":
        return size * min(setting.queries, size)
    if stage == "report":
        return report_predictions(size, setting)
    return size


def report_predictions(pcam_test: int, setting: Setting) -> int:
    """Predictions over the paper grid (90 runs per dataset) with PCam's test set at ``pcam_test`` and the
    others scaled alike."""
    from report_statistics import DATASETS, FRACTIONS, ROWS

    scale = pcam_test / DATASETS["PCam"][1]
    runs = len(ROWS) * len(FRACTIONS) * len(grid_seeds(setting))
    return runs * sum(max(8, round(n * scale)) for _, n, _ in DATASETS.values())


def growth_exponent(sizes, times) -> float:
    """The least-squares slope of log(time) against log(size): 1 for time proportional to size, 2 for its
    square (``numpy.polyfit(log sizes, log times, 1)[0]``)."""
    x, y = np.log(np.asarray(sizes, float)), np.log(np.asarray(times, float))
    x0 = x - x.mean()
    return float((x0 * (y - y.mean())).sum() / (x0 * x0).sum())


def fitted(values: list) -> list:
    """The values from the middle size to the largest, which the exponent and the targets are judged on."""
    return values[(len(values) - 1) // 2 :]


# -- generated data ------------------------------------------------------------------------------------------
def write_png_patches(root: Path, count: int, sizes: tuple[int, ...]) -> Path:
    """``count`` 96 x 96 RGB PNG patches (histology-like colours and texture, ~22 kB each, as PCam's) under
    ``root/img``, and ``labels-<n>.csv`` for each size: 256 validation and 256 test rows (fewer for toy
    sizes), the rest training."""
    import cv2

    rng = np.random.default_rng(SEED)
    encoded = []
    for _ in range(64):
        low = cv2.resize(rng.normal(0, 1, (12, 12, 3)).astype(np.float32), (96, 96),
                         interpolation=cv2.INTER_CUBIC)
        image = np.array([200, 120, 180]) + 30 * low + rng.normal(0, 12, (96, 96, 3))
        encoded.append(cv2.imencode(".png", np.clip(image, 0, 255).astype(np.uint8))[1].tobytes())
    names = [f"img/{i // 1000:03d}/{i:06d}.png" for i in range(count)]
    for i, name in enumerate(names):
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(encoded[i % len(encoded)])
    for size in sizes:
        write_csv(root / f"labels-{size}.csv", names[:size], min(256, size // 8))
    return root


def write_fundus_links(root: Path, sizes: tuple[int, ...], photos: int, quick: bool) -> Path:
    """``photos`` distinct fundus-like JPEGs of EyePACS sizes (``data_throughput.fundus_photo``), hard-linked
    under as many names as the largest size needs, and ``labels-<n>.csv`` per size."""
    from data_throughput import FUNDUS_SIZES, fundus_photo
    from PIL import Image

    rng = np.random.default_rng(SEED)
    originals = []
    for i in range(photos):
        path = root / "photos" / f"photo{i}.jpeg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            width, height = (640, 424) if quick else FUNDUS_SIZES[i % len(FUNDUS_SIZES)]
            Image.fromarray(fundus_photo(rng, width, height)).save(path, quality=95)
        originals.append(path)
    names = [f"img/{i:05d}.jpeg" for i in range(max(sizes))]
    for i, name in enumerate(names):
        path = root / name
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            os.link(originals[i % photos], path)
    for size in sizes:
        write_csv(root / f"labels-{size}.csv", names[:size], 2 if size >= 32 else 1)
    return root


def write_csv(path: Path, names: list[str], held_out: int) -> None:
    """A ``CSVDataset`` table: ``held_out`` validation rows, as many test rows, the rest training."""
    splits = ["val"] * held_out + ["test"] * held_out + ["train"] * (len(names) - 2 * held_out)
    labels = [i % 2 for i in range(len(names))]
    rows = zip(names, labels, splits, strict=True)
    path.write_text("path,label,split\n" + "".join(f"{n},{lab},{s}\n" for n, lab, s in rows))


def write_pcam_labels(root: Path, train: int, val: int, test: int) -> Path:
    """PCam's six HDF5 files for splits of these sizes, the images never written (HDF5 allocates them
    lazily, so a 262,144-patch file takes no disk): for the stages that read stores, not pixels."""
    import h5py

    from medtransfer.datamodules.pcam import PATCH_SHAPE, pcam_file

    rng = np.random.default_rng(SEED)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", train), ("val", val), ("test", test)):
        x_path = root / pcam_file(split, "x")
        if x_path.exists() and h5py.File(x_path, "r")["x"].shape[0] == count:
            continue
        with h5py.File(x_path, "w") as handle:
            handle.create_dataset("x", shape=(count, *PATCH_SHAPE), dtype=np.uint8)
        with h5py.File(root / pcam_file(split, "y"), "w") as handle:
            labels = (rng.random(count) < 0.5).astype(np.uint8)
            labels[:2] = (0, 1)  # both classes in every split, however small
            handle.create_dataset("y", data=labels.reshape(count, 1, 1, 1))
    return root


def generated_features(labels: np.ndarray, dim: int, backbone: int, split: int) -> np.ndarray:
    """``N x dim`` float16 features with the structure of ``linear_probe.scale_features``: a low-rank part,
    noise and class centres (the same for every split of a backbone), 0.015 apart per dimension so that a
    linear probe on 2,048 dimensions reaches about 0.9 AUROC, as on PCam; generated in torch a block at a
    time (PCam's 262,144 x 2,048 in seconds)."""
    import torch

    generator = torch.Generator().manual_seed(backbone)
    basis = torch.randn(64, dim, generator=generator) / 8
    centres = 0.015 * torch.randn(2, dim, generator=generator)
    generator.manual_seed(1000 * backbone + 1 + split)  # each split its own samples
    rows = torch.from_numpy(np.asarray(labels) % 2)
    out = np.empty((len(labels), dim), np.float16)
    for start in range(0, len(labels), 65_536):
        stop = min(len(labels), start + 65_536)
        block = torch.randn(stop - start, 64, generator=generator) @ basis
        block += 0.5 * torch.randn(stop - start, dim, generator=generator) + centres[rows[start:stop]]
        out[start:stop] = block.half().numpy()
    return out


def write_stores(model, data, features_dir: Path) -> None:
    """Generated stores where ``model``'s frozen backbones would extract ``data``'s splits (the paths
    ``store_for`` computes from their fingerprints), so a head finds and reads them as a user's run would."""
    from medtransfer.features import FeatureStore, store_fingerprint, store_path
    from medtransfer.features.store import is_store

    for index, backbone in enumerate(model.feature_backbones()):
        for split_index, split in enumerate(("train", "val", "test")):
            fingerprint = store_fingerprint(backbone, data, split)
            path = store_path(features_dir, fingerprint)
            if is_store(path):
                continue
            source = data.sources()[split]
            features = generated_features(source.labels, backbone.embed_dim, index, split_index)
            FeatureStore.write(path, features, source.ids, np.asarray(source.labels), fingerprint)
            del features


def feature_data(setting: Setting, train: int, val: int | None = None, test: int | None = None):
    """The PCam datamodule of the feature stages at ``train`` training rows (validation and test: the kNN
    query count, or the given sizes)."""
    from medtransfer.datamodules import PCam

    val = setting.queries if val is None else val
    test = setting.queries if test is None else test
    root = write_pcam_labels(setting.workdir / "pcam-labels" / f"{train}-{val}-{test}", train,
                             min(val, train), min(test, train))
    return PCam(root=str(root), batch_size=128, augmentation="none")


def head(stage: str, setting: Setting, data):
    """The head a feature stage runs, built after seeding so that its random-init backbones (and their
    fingerprints, hence their stores) are the same in every process."""
    import pytorch_lightning as pl

    from medtransfer.lightning_modules import DVME, KNN, LinearProbe, LinearSweep

    pl.seed_everything(SEED, verbose=False)
    features_dir = str(setting.workdir / "features")
    if stage == "dvme":  # proj_dim 128: an eighth of the paper config's work per row, the same growth
        return DVME(backbones=setting.dvme_backbones, proj_dim=128, features_dir=features_dir, task=data.task)
    kinds = {"knn": KNN, "sweep": LinearSweep}
    return kinds.get(stage, LinearProbe)(backbone=setting.head_backbone, features_dir=features_dir,
                                         task=data.task)


def generate(stages: list[str], setting: Setting, sizes: dict[str, tuple[int, ...]]) -> None:
    """Every input the chosen stages read, written once into the work folder (not timed)."""
    workdir = setting.workdir
    if "prepare" in stages:
        with said("96 px PNG patches"):
            write_png_patches(workdir / "png", max(sizes["prepare"]), sizes["prepare"])
    if "prepare-fundus" in stages:
        with said("fundus JPEGs"):
            write_fundus_links(workdir / "fundus", sizes["prepare-fundus"], setting.fundus_photos,
                               setting.quick)
    if "extract" in stages:
        from data_throughput import write_pcam

        with said("PCam HDF5 images"):
            for size in sizes["extract"]:
                write_pcam(workdir / "pcam-images" / str(size), size)
    for stage in ("store-read", "probe", "sweep", "knn", "dvme"):
        if stage in stages:
            with said(f"{stage} feature stores"):
                for size in sizes[stage]:
                    data = feature_data(setting, size)
                    write_stores(head(stage, setting, data), data, workdir / "features")
    if "report" in stages:
        with said("the paper grid's simulated runs"):
            for size in sizes["report"]:
                simulated_grid(workdir / "grid" / str(size), size, grid_seeds(setting))


@contextmanager
def said(what: str) -> Iterator[None]:
    """Generating ``what`` (not timed), said with its duration."""
    started = time.perf_counter()
    yield
    print(f"generated {what} in {time.perf_counter() - started:.0f} s (not timed)", flush=True)


def simulated_grid(root: Path, pcam_test: int, seeds: tuple[int, ...]) -> Path:
    """The paper grid's 360 runs (``report_statistics.simulate``) with PCam's test set at ``pcam_test``
    images and the other test sets scaled alike."""
    import report_statistics

    if not (root / ".complete").is_file():
        scale = pcam_test / report_statistics.DATASETS["PCam"][1]
        report_statistics.simulate(root, scale, seeds)
        (root / ".complete").write_text("")
    return root


def grid_seeds(setting: Setting) -> tuple[int, ...]:
    """The grid's three seeds (one for ``--quick``'s toy grid of 120 runs)."""
    from report_statistics import SEEDS

    return SEEDS[:1] if setting.quick else SEEDS


# -- one stage at one size -----------------------------------------------------------------------------------
class Work:
    """One stage at one size, set up (not timed) and then run ``repeats`` times: ``run()`` does what is
    timed; ``reset()`` undoes it between repeats (outside the clock)."""

    def __init__(self, run: Callable[[], None], reset: Callable[[], None] = lambda: None) -> None:
        self.run, self.reset = run, reset


def prepare_work(setting: Setting, size: int, fundus: bool) -> Work:
    from medtransfer.datamodules import CSVDataset

    root = setting.workdir / ("fundus" if fundus else "png")
    cache = setting.workdir / "caches" / f"{'fundus' if fundus else 'png'}-{size}"
    data = CSVDataset(root=str(root), csv_path=f"labels-{size}.csv", split_column="split",
                      cache_dir=str(cache), image_size=224 if fundus else 96,
                      augmentation="fundus" if fundus else "none")
    return Work(lambda: data.prepare_cache(), lambda: shutil.rmtree(cache, ignore_errors=True))


def extract_work(setting: Setting, size: int) -> Work:
    from medtransfer.backbones import create_backbone
    from medtransfer.datamodules import PCam
    from medtransfer.features import store_for
    from medtransfer.runtime.threads import torch_threads

    data = PCam(root=str(setting.workdir / "pcam-images" / str(size)), batch_size=256, augmentation="none",
                num_workers=0)  # loading in this process: no workers' start-up or transfers in the growth
    data.setup("fit")
    backbone = create_backbone("test_resnet", resize_to=16).freeze()
    features = setting.workdir / f"extracted-{size}"

    def extract() -> None:
        # one thread: the tiny network gains nothing from a second, whose spinning between a batch's small
        # products, on a core another process holds, multiplied the CPU time by up to 5 on a loaded machine
        with torch_threads(1):
            store_for(backbone, data, "train", features)

    return Work(extract, lambda: shutil.rmtree(features, ignore_errors=True))


def store_read_work(setting: Setting, size: int) -> Work:
    from medtransfer.features import EmbeddingsDataModule

    data = feature_data(setting, size)
    model = head("store-read", setting, data)

    held = []  # the features read, held until the next repeat so that the memory sampler sees them

    def read() -> None:
        held[:] = [EmbeddingsDataModule(data, model.feature_backbones(), model.features_dir)
                   .split_batches("train")]

    # numpy asks the kernel for huge pages for large arrays; compacting memory for them cost 0.45 to 2.5
    # system CPU-s per gigabyte from one read to the next (0.50-0.59 without), which is the kernel's state,
    # not the read: without the advice, and after one untimed read (a fresh process's first gigabyte costs
    # the kernel more again), the repeats time the read
    numpy_huge_pages(False)
    read()
    held.clear()
    return Work(read, held.clear)


def numpy_huge_pages(enabled: bool) -> None:
    """Whether numpy advises the kernel to back large arrays with huge pages (its default: yes)."""
    core = getattr(np, "_core", None) or np.core  # numpy 2 / numpy 1
    core.multiarray._set_madvise_hugepage(enabled)


def probe_work(setting: Setting, size: int) -> Work:
    """The exact solver's work, as ``LinearProbe.solve`` does it: the training split's statistics, its
    standardised float32 features, and ``setting.evaluations`` objective-and-gradient evaluations at moving
    weights (the penalty of the path's middle)."""
    import torch

    from medtransfer.lightning_modules.logistic_path import DEFAULT_TOL, PathSolver
    from medtransfer.runtime.threads import solver_threads, torch_threads

    data = feature_data(setting, size)
    model = head("probe", setting, data)
    model.attach_data(data)
    train = model.cached_split("train")  # read before the clock: that is store-read's

    def solve() -> None:
        model.fit_standardization()
        features = model.embeddings({"features": train.features})[0]
        solver = PathSolver(features, train.labels, "binary", 1, DEFAULT_TOL, 20)
        step = torch.full_like(solver.weight, 1e-3)
        with torch_threads(solver_threads(1, features.device)):  # as logistic_path runs its evaluations
            for _ in range(setting.evaluations):
                solver.evaluate(1e-3)
                solver.weight.sub_(step * solver.weight.grad.sign())

    def reset() -> None:
        for standardizer in model.standardizers:
            standardizer.fitted.fill_(False)

    return Work(solve, reset)


def lightning_work(stage: str, setting: Setting, size: int) -> Work:
    """A head through Lightning as ``medtransfer fit``/``test`` runs it (``linear_probe.fit_and_test``'s
    trainer and thread setting): the sweep and DVME fit one epoch and test, kNN tests. Each repeat builds
    its model before the clock, and reads its stores inside it."""
    from linear_probe import fit_and_test, trainer

    from medtransfer.run.session import steps_on_one_thread
    from medtransfer.runtime.threads import step_threads

    built = []

    def build() -> None:
        # a fresh datamodule too: a trainer leaves itself on the datamodule it ran (its ``trainer``), and
        # with it the last repeat's model and stores
        data = feature_data(setting, size)
        built[:] = [head(stage, setting, data), data]

    def run() -> None:
        model, data = built
        if stage == "knn":
            runner = trainer(1)
            with step_threads(steps_on_one_thread(model, runner)):
                runner.test(model, datamodule=model.attach_data(data), verbose=False)
        else:
            fit_and_test(model, data, 1)

    build()
    return Work(run, build)


def bootstrap_work(setting: Setting, size: int) -> Work:
    """The test intervals a run writes into results.json (``run.record.test_statistics``): AUROC (and
    DeLong's), accuracy, F1 and loss of a binary test set."""
    from report_statistics import DATASETS, predicted, test_labels

    from medtransfer.outputs.predictions import Predictions
    from medtransfer.stats.intervals import test_intervals

    task = DATASETS["PCam"][0]
    rng = np.random.default_rng(SEED)
    labels = test_labels(task, size, rng)
    predictions = Predictions(task, [f"p{i}" for i in range(size)], predicted(task, labels, 1.0,
                              rng.normal(size=size)), labels)
    metrics = predictions.metrics()
    names = [n for n in ("auroc", "acc", "f1", "loss") if n in metrics.names()]
    return Work(lambda: test_intervals(metrics, names, resamples=setting.resamples))


def report_work(setting: Setting, size: int) -> Work:
    from report_statistics import timed_report

    root = setting.workdir / "grid" / str(size)
    return Work(lambda: timed_report(root, root / "report", setting.resamples))


def stage_work(stage: str, setting: Setting, size: int) -> Work:
    if stage in ("prepare", "prepare-fundus"):
        return prepare_work(setting, size, fundus=stage == "prepare-fundus")
    builders = {"extract": extract_work, "store-read": store_read_work, "probe": probe_work,
                "bootstrap": bootstrap_work, "report": report_work}
    if stage in builders:
        return builders[stage](setting, size)
    return lightning_work(stage, setting, size)


def cpu_seconds() -> float:
    """CPU seconds of this process and of its finished worker processes (cache preparation, DataLoader
    workers, the report's pool)."""
    own, workers = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + workers.ru_utime + workers.ru_stime


def measure(stage: str, setting: Setting, size: int, repeats: int) -> dict:
    """Set the stage up at ``size``, then time ``repeats`` runs of it: wall and CPU seconds of each, and the
    peak memory over them (RSS and PSS summed over this process and its workers, sampled; RSS also the
    kernel's high-water mark of this process)."""
    from data_throughput import PeakMemory

    work = stage_work(stage, setting, size)
    gc.collect()
    walls, cpus = [], []
    with PeakMemory(interval=0.1) as memory:
        baseline = memory_now()
        for repeat in range(repeats):
            if repeat:
                work.reset()
                gc.collect()
            cpu, wall = cpu_seconds(), time.perf_counter()
            work.run()
            gc.collect()  # DataLoader workers joined: their CPU time counted
            walls.append(time.perf_counter() - wall)
            cpus.append(cpu_seconds() - cpu)
    work.reset()
    return {"wall": walls, "cpu": cpus, "rss": max(memory.rss, high_water()), "pss": memory.pss,
            "anon": memory.anon, "baseline_rss": baseline}


def memory_now() -> int:
    from data_throughput import proc_kb

    return proc_kb(os.getpid(), "status", "VmRSS:") * 1024


def high_water() -> int:
    """This process's peak RSS as the kernel kept it (VmHWM: since its exec; ``getrusage``'s maxrss also
    counts the parent's memory at the fork), which sampling can miss."""
    from data_throughput import proc_kb

    return proc_kb(os.getpid(), "status", "VmHWM:") * 1024


def run_stage(stage: str, size: int, setting: Setting, repeats: int, fresh: bool) -> dict:
    """``measure`` in a fresh process (or in this one), its result as a dict."""
    if not fresh:
        return measure(stage, setting, size, repeats)
    command = [sys.executable, str(Path(__file__).resolve()), "--child", stage, "--size", str(size),
               "--child_repeats", str(repeats), "--workdir", str(setting.workdir)]
    if setting.quick:
        command.append("--quick")
    done = subprocess.run(command, capture_output=True, text=True, cwd=REPO)
    lines = [line for line in done.stdout.splitlines() if line.startswith(RESULT)]
    if done.returncode != 0 or not lines:
        tail = "\n".join((done.stdout + done.stderr).splitlines()[-30:])
        raise RuntimeError(f"stage {stage} at size {size} failed (exit {done.returncode}):\n{tail}")
    return json.loads(lines[-1][len(RESULT):])


# -- the report ----------------------------------------------------------------------------------------------
@dataclass
class StageResult:
    stage: Stage
    sizes: list[int]
    measured: list[int]  # the size the time should grow with (bank x queries for kNN)
    runs: list[dict] = field(default_factory=list)

    def medians(self, key: str) -> list[float]:
        return [statistics.median(run[key]) for run in self.runs]

    def exponent(self, key: str = "cpu") -> float:
        return growth_exponent(fitted(self.measured), fitted(self.medians(key)))

    def time_ratios(self) -> list[float]:
        """Per repeat: (CPU time at the largest size / at the middle) / (largest size / middle size)."""
        middle, largest = fitted(self.runs)[0], self.runs[-1]
        size_ratio = self.measured[-1] / fitted(self.measured)[0]
        return [large / mid / size_ratio for mid, large in zip(middle["cpu"], largest["cpu"], strict=True)]

    def memory_ratio(self, key: str = "pss") -> float:
        return self.runs[-1][key] / fitted(self.runs)[0][key]


def show_table(results: list[StageResult]) -> None:
    print("\npeak memory in GiB: RSS and PSS summed over the stage's processes; anon: the memory they "
          "allocated (without the pages of files they map)")
    print(f"{'stage':<44} {'size':>13} {'CPU s':>28} {'wall s':>8} {'RSS':>7} {'PSS':>7} {'anon':>7}  "
          "exponent (wall)")
    for result in results:
        for index, (size, run) in enumerate(zip(result.sizes, result.runs, strict=True)):
            name = result.stage.title if index == 0 else ""
            last = index == len(result.sizes) - 1
            exponent = f"{result.exponent():.2f} (wall {result.exponent('wall'):.2f})" if last else ""
            anon = run.get("anon", 0) / GIB
            queries = result.measured[index] // size  # kNN: the size is the bank's
            size_text = f"{size:,}" if result.stage.name != "knn" else f"{size:,} x {queries:,}"
            print(f"{name:<44} {size_text:>13} {spread(run['cpu'], '.2f'):>28} "
                  f"{statistics.median(run['wall']):>8.1f} {run['rss'] / GIB:>7.2f} {run['pss'] / GIB:>7.2f} "
                  f"{anon:>7.2f}  {exponent}")


def judge(results: list[StageResult], verdicts: Verdicts) -> None:
    for result in results:
        stage, measured = result.stage, fitted(result.measured)
        verdicts.judge(f"{stage.name}: time ratio / size ratio, {measured[0]:,} to {measured[-1]:,} "
                       f"{stage.unit} (growth exponent {result.exponent():.2f})", result.time_ratios(), "<=",
                       LINEAR_SLACK, "CPU seconds of the stage and its workers", ".2f")
        if stage.holds is None:
            verdicts.judge(f"{stage.name}: peak memory largest / middle size (streams)",
                           [result.memory_ratio()], "<=", FLAT_MEMORY,
                           "PSS of the process and its workers", ".3f")


def show_held(results: list[StageResult]) -> None:
    print("\nmemory of the stages that must hold everything (peak at the largest size; not judged):")
    for result in results:
        if result.stage.holds is not None:
            run = result.runs[-1]
            print(f"  {result.stage.name:<11} {result.sizes[-1]:>9,} {result.stage.unit}: peak RSS "
                  f"{run['rss'] / GIB:.2f} GiB, PSS {run['pss'] / GIB:.2f} GiB, allocated (anon) "
                  f"{run.get('anon', 0) / GIB:.2f} GiB ({run['baseline_rss'] / GIB:.2f} GiB RSS before the "
                  f"stage); holds {result.stage.holds}")


# -- PCam size -----------------------------------------------------------------------------------------------
def pcam_heads(setting: Setting, fresh: bool) -> None:
    """The exact probe (default path) and kNN (262,144-row bank, 32,768 queries) at PCam size, once each,
    through ``medtransfer.run`` on generated stores on disk."""
    started = time.perf_counter()
    data = feature_data(setting, *PCAM_SPLITS)
    for stage in ("probe", "knn"):
        write_stores(head(stage, setting, data), data, setting.workdir / "features")
    del data
    gc.collect()
    print(f"\nPCam size: generated stores {PCAM_SPLITS[0]:,} / {PCAM_SPLITS[1]:,} / {PCAM_SPLITS[2]:,} x "
          f"{setting.dim:,} float16 in {time.perf_counter() - started:.0f} s (not timed); their classes "
          "differ along one direction (a linear probe reaches about 0.9 AUROC), not by neighbourhoods, so "
          "kNN scores near chance on them: these runs measure cost, not quality", flush=True)
    for stage in ("pcam-probe", "pcam-knn"):
        result = run_stage(stage, PCAM_SPLITS[0], setting, 1, fresh)
        print(f"  {stage}: {result['wall'][0]:.0f} s wall, {result['cpu'][0]:.0f} CPU-s; peak RSS "
              f"{result['rss'] / GIB:.2f} GiB, PSS {result['pss'] / GIB:.2f} GiB, allocated (anon) "
              f"{result['anon'] / GIB:.2f} GiB ({result['baseline_rss'] / GIB:.2f} GiB RSS before)",
              flush=True)
        for line in result.get("notes", []):
            print(f"    {line}")


def pcam_run(stage: str, setting: Setting) -> dict:
    """One PCam-size head through ``medtransfer.run``, with its time, peak memory and what it reports."""
    from data_throughput import PeakMemory

    from medtransfer import run
    from medtransfer.run.api import default_trainer

    data = feature_data(setting, *PCAM_SPLITS)
    model = head("probe" if stage == "pcam-probe" else "knn", setting, data)
    runner = default_trainer(stage, save_dir=str(setting.workdir / "runs"), max_epochs=1,
                             accelerator="cpu", devices=1)
    gc.collect()
    with PeakMemory(interval=0.25) as memory:
        baseline = memory_now()
        cpu, wall = cpu_seconds(), time.perf_counter()
        if stage == "pcam-probe":
            result = run.fit(model=model, data=data, trainer=runner)
        else:
            result = run.test(model=model, data=data, trainer=runner)
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    notes = [f"test metrics {json.dumps(result.metrics.get('test', {}), sort_keys=True)}"]
    solver = model.extra_results().get("solver")
    if solver:
        iterations = [p["iterations"] for p in solver["path"]]
        converged = sum(p["converged"] for p in solver["path"])
        notes.append(f"path: {sum(iterations)} L-BFGS iterations over {len(iterations)} penalties "
                     f"({iterations}), {solver['path_seconds']:.0f} s; selected l2 "
                     f"{solver['selected']['l2']:g}; converged {converged}/{len(iterations)}")
    return {"wall": [wall], "cpu": [cpu], "rss": max(memory.rss, high_water()), "pss": memory.pss,
            "anon": memory.anon, "baseline_rss": baseline, "notes": notes}


# -- main ----------------------------------------------------------------------------------------------------
def child(args) -> None:
    setting = Setting(args.workdir, args.quick)
    if args.child.startswith("pcam-"):
        result = pcam_run(args.child, setting)
    else:
        result = measure(args.child, setting, args.size, args.child_repeats)
    print(RESULT + json.dumps(result), flush=True)


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", default=list(STAGES), choices=[*STAGES, "none"],
                        help="run these stages (none: only --pcam)")
    parser.add_argument("--quick", action="store_true",
                        help="toy sizes in this one process: seconds; checks the script, measures nothing")
    parser.add_argument("--repeats", type=repeats_argument, default=None,
                        help="timed runs of each stage at its middle and largest sizes (default 2, which "
                        "keeps the run near 15 minutes; the smaller sizes are timed once)")
    parser.add_argument("--sizes", nargs="+", default=[], metavar="STAGE=N,N,N",
                        help="other sizes for a stage, e.g. probe=8192,16384,32768")
    parser.add_argument("--processes", choices=("fresh", "same"), default=None,
                        help="fresh: each (stage, size) in a process of its own (default; --quick: same)")
    parser.add_argument("--pcam", action="store_true",
                        help="also run the exact probe and kNN at PCam size once (~30 min on 2 cores, 8 GB "
                        "of disk)")
    parser.add_argument("--workdir", type=Path, default=None,
                        help="generated data (and --pcam's run folders) go here (default: a temporary "
                        "folder, removed after); reused when given")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child_repeats", type=int, default=1, help=argparse.SUPPRESS)  # 1: a small size
    return parser.parse_args(argv)


def stage_sizes(args) -> dict[str, tuple[int, ...]]:
    sizes = {name: stage.quick if args.quick else stage.sizes for name, stage in STAGES.items()}
    for entry in args.sizes:
        name, _, values = entry.partition("=")
        if name not in STAGES or not values:
            raise SystemExit(f"--sizes {entry}: expected STAGE=N,N,N with a stage of {list(STAGES)}")
        try:
            sizes[name] = tuple(int(v) for v in values.split(","))
        except ValueError:
            raise SystemExit(f"--sizes {entry}: the sizes must be whole numbers, e.g. {name}=8192,16384,32768"
                             ) from None
        if len(sizes[name]) < 2 or sizes[name][0] < 1 or list(sizes[name]) != sorted(set(sizes[name])):
            raise SystemExit(f"--sizes {entry}: give at least two positive sizes, increasing")
    return sizes


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.child:
        child(args)
        return 0
    started = time.perf_counter()
    stages = [] if args.only == ["none"] else [s for s in STAGES if s in args.only]
    fresh = (args.processes or ("same" if args.quick else "fresh")) == "fresh"
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="medtransfer-scaling-"))
    workdir.mkdir(parents=True, exist_ok=True)
    setting = Setting(workdir, args.quick)
    sizes = stage_sizes(args)
    print(f"scaling: {len(stages)} stages on {os.cpu_count()} CPUs, load average {load_average()}; "
          f"{'a fresh process per stage and size' if fresh else 'one process (memory figures not apart)'}; "
          f"workdir {workdir}", flush=True)
    results: list[StageResult] = []
    try:
        generate(stages, setting, sizes)
        for name in stages:
            stage = STAGES[name]
            repeats = args.repeats or (1 if args.quick else stage.repeats)
            measured = [measured_size(name, n, setting) for n in sizes[name]]
            result = StageResult(stage, list(sizes[name]), measured)
            for index, size in enumerate(sizes[name]):
                # the sizes below the middle are shown, not judged: timed once
                times = repeats if index >= (len(sizes[name]) - 1) // 2 else 1
                result.runs.append(run_stage(name, size, setting, times, fresh))
                run = result.runs[-1]
                print(f"  {name} at {size:,}: CPU {spread(run['cpu'], '.2f')} s, wall "
                      f"{statistics.median(run['wall']):.2f} s, peak PSS {run['pss'] / GIB:.2f} GiB; load "
                      f"average {load_average()}", flush=True)
            results.append(result)
        if results:
            show_table(results)
            show_held(results)
        if args.pcam:
            pcam_heads(setting, fresh)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    verdicts = Verdicts()
    judge(results, verdicts)
    if results:
        verdicts.show("targets (issue 26): time within 1.25x of linear, streaming memory flat within 10%")
    print(f"\ntotal {time.perf_counter() - started:.0f} s; load average at the end {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
