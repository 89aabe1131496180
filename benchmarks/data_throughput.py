"""Images/s of medtransfer's training DataLoader: the original files (native), a prepared cache
(``medtransfer prepare --cache``) and a naive baseline measured in the same run (PIL open + full decode +
resize + torchvision ToTensor, one process), per worker process and in total, with peak resident memory; and
PatchCamelyon's 7 GB training file streamed by 4 workers. Prints each target of issue 15 as met, MISSED or
too wide to judge.

By default it generates its data under ``--workdir``: fundus-like JPEGs (a bright textured disc on a black
border, 3-5 MB, up to 4928 x 3264 px, as EyePACS photos are), CXR-like grey 1024 x 1024 PNGs, and an HDF5 file
of PCam's real shape and dtype (262,144 x 96 x 96 x 3 uint8, 7.2 GB; ``--pcam_images`` for fewer, e.g. where
the disk is smaller). Measure your own data with a data config instead::

    python benchmarks/data_throughput.py                          # generated data: about 3 minutes on 2 cores
    python benchmarks/data_throughput.py --fundus_images 64 --workers 8
    python benchmarks/data_throughput.py --config configs/data/eyepacs.yaml \\
        --data.init_args.root /data/eyepacs --data.init_args.cache_dir /scratch/cache

Rates are steady state: a loader draws training samples with replacement (one long epoch, so a small generated
set measures like a large one) through the datamodule's own training dataset, augmentation, collation and
loader settings; its first ``2 x workers`` batches are not timed. ``--seconds`` sizes each measurement.
"Per worker" is a loader with one worker process, "total" one with ``--workers``. Memory is the peak, over
the loading process and its workers, of the summed resident set (RSS, which counts the shared libraries once
per process) and of the summed proportional set (PSS, shared pages split among the processes sharing them:
what the processes occupy together); the PCam target is read on PSS.

Every measurement is taken ``--repeats`` times, the naive baseline and the loaders taking turns, and each
target is judged on the interval of the median of its repeats (``benchmarks/verdicts.py``; a speed-up on the
ratio within each repeat). The rate targets are judged in images per CPU-second (the loader's worker process
against the baseline's thread): the wall clock also counts whatever else the cores run. Preparing the cache is
timed once and has no target.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import cv2
import h5py
import numpy as np
import torch
from PIL import Image
from verdicts import Verdicts, alternating, load_average, ratios, repeats_argument, spread

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from medtransfer.datamodules import ImageFolder, MedicalDataModule, PCam  # noqa: E402
from medtransfer.datamodules.dataset import collate_skipping  # noqa: E402
from medtransfer.datamodules.file_backed import FileBackedDataModule  # noqa: E402
from medtransfer.datamodules.images import FileSource  # noqa: E402

FUNDUS_SIZES = ((4928, 3264), (4752, 3168), (3888, 2592))  # EyePACS-like camera resolutions
PCAM_SHAPE = (96, 96, 3)
GIB = 1024**3


# -- generated data ------------------------------------------------------------------------------------------
def fundus_photo(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """A retina-like photo: a reddish, vignetted, mottled disc with fine grain on a black border."""
    small = (height // 16, width // 16)
    yy, xx = np.ogrid[: small[0], : small[1]]
    radius2 = ((yy - small[0] / 2) ** 2 + (xx - small[1] / 2) ** 2) / (0.48 * small[0]) ** 2
    shade = np.clip(1 - 0.5 * radius2, 0, 1)[..., None] * np.array([175, 85, 40], np.float32)
    mottle = rng.normal(0, 14, (*small, 3)).astype(np.float32)
    low = cv2.resize((shade + mottle).astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
    tile = rng.integers(-12, 13, (256, 256, 3), dtype=np.int16)
    grain = np.tile(tile, (height // 256 + 1, width // 256 + 1, 1))
    image = np.clip(low + grain[:height, :width], 0, 255).astype(np.uint8)
    mask = np.zeros((height, width), np.uint8)
    cv2.circle(mask, (width // 2, height // 2), int(0.48 * height), 1, -1)
    image[mask == 0] = 0
    return image


def write_fundus_folder(root: Path, count: int) -> Path:
    """``root/train/{0,1}/*.jpeg``: fundus-like JPEGs of EyePACS sizes (quality 95: 3-5 MB each)."""
    rng = np.random.default_rng(0)
    for i in range(count):
        path = root / "train" / str(i % 2) / f"{i:05d}.jpeg"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            width, height = FUNDUS_SIZES[i % len(FUNDUS_SIZES)]
            Image.fromarray(fundus_photo(rng, width, height)).save(path, quality=95)
    return with_eval_splits(root)


def with_eval_splits(root: Path) -> Path:
    """``val/`` and ``test/`` holding links to two training images of each class: the benchmark reads only
    the training split, which then holds every generated image."""
    for split in ("val", "test"):
        for label in ("0", "1"):
            folder = root / split / label
            folder.mkdir(parents=True, exist_ok=True)
            for image in sorted((root / "train" / label).iterdir())[:2]:
                if not (folder / image.name).exists():
                    (folder / image.name).symlink_to(image)
    return root


def write_cxr_folder(root: Path, count: int) -> Path:
    """``root/train/{0,1}/*.png``: grey 1024 x 1024 chest-X-ray-like PNGs (ChestX-ray14's format)."""
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:1024, 0:1024]
    lungs = (np.abs(xx - 512) > 60) & (((xx - 512) / 420.0) ** 2 + ((yy - 560) / 430.0) ** 2 < 1)
    for i in range(count):
        path = root / "train" / str(i % 2) / f"{i:05d}.png"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            image = np.where(lungs, 60, 170).astype(np.int16) + rng.integers(-25, 26, (1024, 1024))
            Image.fromarray(np.clip(image, 0, 255).astype(np.uint8), mode="L").save(path)
    return with_eval_splits(root)


def write_pcam(root: Path, images: int) -> Path:
    """PCam's six HDF5 files; the training ``x`` of ``images`` x 96 x 96 x 3 uint8 (contiguous, as h5py
    writes without chunking), validation and test small."""
    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2)
    block = rng.integers(0, 256, (4096, *PCAM_SHAPE), dtype=np.uint8)
    for split, count in (("train", images), ("valid", 256), ("test", 256)):
        x_path = root / f"camelyonpatch_level_2_split_{split}_x.h5"
        if x_path.exists() and h5py.File(x_path, "r")["x"].shape[0] == count:
            continue
        with h5py.File(x_path, "w") as handle:
            data = handle.create_dataset("x", shape=(count, *PCAM_SHAPE), dtype=np.uint8)
            for start in range(0, count, len(block)):
                stop = min(count, start + len(block))
                data[start:stop] = block[: stop - start]
        with h5py.File(root / f"camelyonpatch_level_2_split_{split}_y.h5", "w") as handle:
            handle.create_dataset("y", data=(np.arange(count) % 2).astype(np.uint8).reshape(count, 1, 1, 1))
    return root


# -- measuring -----------------------------------------------------------------------------------------------
class PeakMemory:
    """Samples the resident (RSS) and proportional (PSS) memory of this process and its children in a
    thread; ``rss``/``pss`` are the peaks of their sums, in bytes (Linux /proc). ``anon`` is the peak of the
    summed anonymous resident memory (RssAnon: what the processes allocated, without the pages of files they
    map, which the kernel can drop and read again)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.rss = self.pss = self.anon = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            pids = [os.getpid(), *descendants(os.getpid())]
            self.rss = max(self.rss, sum(proc_kb(pid, "status", "VmRSS:") for pid in pids) * 1024)
            self.pss = max(self.pss, sum(proc_kb(pid, "smaps_rollup", "Pss:") for pid in pids) * 1024)
            self.anon = max(self.anon, sum(proc_kb(pid, "status", "RssAnon:") for pid in pids) * 1024)
            self._stop.wait(self.interval)


def descendants(pid: int) -> list[int]:
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            children += [int(c) for c in (task / "children").read_text().split()]
        except OSError:
            pass
    return children + [d for c in children for d in descendants(c)]


def proc_kb(pid: int, name: str, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class Rate(NamedTuple):
    """One measurement: images/s, images per CPU-second (of this thread for the naive baseline, of the worker
    processes for a loader) and the peak memory in bytes (loaders only)."""

    per_s: float
    per_cpu_s: float
    rss: int = 0
    pss: int = 0


def naive_rate(paths: list[str], size: int, seconds: float) -> Rate:
    """Images/s and images per CPU-second of PIL open + full decode + resize + torchvision ToTensor in this
    process (on one thread)."""
    from torchvision.transforms import ToTensor

    to_tensor = ToTensor()
    count, start, cpu_start = 0, time.perf_counter(), time.thread_time()
    while True:
        for path in paths:
            with Image.open(path) as image:
                to_tensor(image.convert("RGB").resize((size, size)))
            count += 1
            if time.perf_counter() - start >= seconds and count >= 4:
                return Rate(count / (time.perf_counter() - start), count / (time.thread_time() - cpu_start))


class Draws(torch.utils.data.Sampler):
    """``count`` training keys ``(index, draw)`` drawn with replacement: one long epoch over a small generated
    set, each draw augmented differently (``TransformedDataset`` seeds by key)."""

    def __init__(self, size: int, count: int) -> None:
        self.indices = np.random.default_rng(0).integers(0, size, count)

    def __iter__(self):
        return iter((int(index), draw) for draw, index in enumerate(self.indices))

    def __len__(self) -> int:
        return len(self.indices)


def loader_rate(datamodule: MedicalDataModule, workers: int, seconds: float, rate_guess: float,
                min_batches: int) -> Rate:
    """Steady-state images/s of the training DataLoader (the datamodule's training dataset, transforms,
    collation and loader settings; ``Draws`` as sampler) with ``workers`` processes, and its peak memory.
    The first ``2 x workers`` batches (start-up) are not timed; then at least ``min_batches`` per worker or
    ``seconds`` at ``rate_guess`` are. The consumer only counts, so no batches queue up ahead of it: batches
    arrive as fast as the workers make them."""
    datamodule.num_workers = workers
    dataset = datamodule.dataset("train", train_transform=True)
    warm = 2 * max(1, workers) * datamodule.batch_size
    count = warm + max(min_batches * max(1, workers) * datamodule.batch_size, int(rate_guess * seconds))
    loader = torch.utils.data.DataLoader(dataset, batch_size=datamodule.batch_size,
                                         sampler=Draws(len(dataset), count), collate_fn=collate_skipping,
                                         **datamodule.loader_settings())
    seen, start, cpu_start = 0, None, 0.0
    with PeakMemory() as memory:
        for batch in loader:
            seen += len(batch["image"])
            if start is None and seen >= warm:
                start, seen, cpu_start = time.perf_counter(), 0, workers_cpu_seconds()
        elapsed = time.perf_counter() - start
        cpu_seconds = workers_cpu_seconds() - cpu_start
    del loader
    return Rate(seen / elapsed, seen / cpu_seconds if cpu_seconds else 0.0, memory.rss, memory.pss)


def workers_cpu_seconds() -> float:
    """CPU seconds the worker processes (children of this one) have used: on a machine loaded by others,
    images per worker CPU-second is what a worker delivers on a core of its own."""
    ticks = 0
    for pid in descendants(os.getpid()):
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        except (OSError, IndexError, ValueError):
            pass
    return ticks / os.sysconf("SC_CLK_TCK")


def training_files(datamodule: MedicalDataModule) -> list[str]:
    source = datamodule.split_source("train")
    while not isinstance(source, FileSource):
        source = source.parent
    return source.paths


def image_measures(rows: dict[str, MedicalDataModule], paths: list[str], args,
                   results: dict[str, list[Rate]]) -> dict[str, Callable[[], Rate]]:
    """The naive baseline and each loader (1 worker, ``--workers`` workers), each a measurement to repeat. A
    loader's run is sized to last about ``--seconds`` from the first naive rate in ``results`` (the first
    measurement of the first repeat)."""
    size = next(iter(rows.values())).image_size
    measures = {"naive": lambda: naive_rate(paths, size, args.seconds)}
    for label, datamodule in rows.items():
        speedup, batches = (50, 8) if label == "cache" else (3, 3)
        for workers in (1, args.workers):
            measures[f"{label}, {workers} worker{'s' if workers > 1 else ''}"] = (
                lambda dm=datamodule, w=workers, x=speedup, b=batches:
                loader_rate(dm, w, args.seconds, results["naive"][0].per_s * x * w, b))
    return measures


def show_images(results: dict[str, list[Rate]]) -> None:
    """Each measurement's rates as median [min, max] over the repeats, a loader's also per repeat against the
    naive baseline's, and its peak memory over the repeats."""
    naive_s, naive_cpu_s = [r.per_s for r in results["naive"]], [r.per_cpu_s for r in results["naive"]]
    print(f"  naive baseline (PIL decode + resize + ToTensor, 1 process): images/s {spread(naive_s, '.1f')}; "
          f"per CPU-second {spread(naive_cpu_s, '.1f')}")
    for name, rates in results.items():
        if name == "naive":
            continue
        per_s, per_cpu_s = [r.per_s for r in rates], [r.per_cpu_s for r in rates]
        print(f"  {name:<17} images/s {spread(per_s, '.1f')} ({spread(ratios(per_s, naive_s), '.1f')}x "
              f"naive); per worker CPU-second {spread(per_cpu_s, '.0f')} "
              f"({spread(ratios(per_cpu_s, naive_cpu_s), '.1f')}x naive); peak RSS "
              f"{max(r.rss for r in rates) / GIB:.2f} GiB, PSS {max(r.pss for r in rates) / GIB:.2f} GiB")


def judge_fundus(name: str, results: dict[str, list[Rate]], size: int, verdicts: Verdicts) -> None:
    """Issue 15's targets, on the CPU time of the loader's worker (the rate of a core of its own) against the
    baseline's thread: the wall clock also counts the machine's other work."""
    naive = [r.per_cpu_s for r in results["naive"]]
    native = [r.per_cpu_s for r in results["native, 1 worker"]]
    on = "images per CPU-second, 1 worker against the baseline's thread"
    if "cache, 1 worker" in results:  # not for a data config without a cache
        cache = [r.per_cpu_s for r in results["cache, 1 worker"]]
        verdicts.judge(f"{name}: cache, training augmentation at {size} px, vs naive", ratios(cache, naive),
                       ">=", 20, on, ".1f")
        verdicts.judge(f"{name}: cache, images per worker process", cache, ">=", 500,
                       "images per worker CPU-second (the rate of a core of its own)", ".0f")
    verdicts.judge(f"{name}: native JPEG path vs naive", ratios(native, naive), ">=", 3, on, ".2f")


def measure_images(name: str, native: MedicalDataModule, cached: MedicalDataModule | None, args,
                   verdicts: Verdicts, fundus: bool) -> None:
    native.setup("fit")
    paths = training_files(native)
    megabytes = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e6
    print(f"\n{name}: {len(paths)} training images, {megabytes:.1f} MB each on average, loader at "
          f"{native.image_size} px with '{native.augmentation}' augmentation, batch {native.batch_size}; "
          f"{args.repeats} repeats", flush=True)
    rows = {"native": native}
    if cached is not None:
        start = time.perf_counter()
        folder = cached.prepare_cache(workers=args.workers)
        elapsed = time.perf_counter() - start
        print(f"  prepare --cache ({args.workers} processes, once, no target): {len(paths) / elapsed:8.1f} "
              f"images/s (all splits), {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.0f} MB in "
              f"{folder}", flush=True)
        cached.setup("fit")
        rows["cache"] = cached
    results: dict[str, list[Rate]] = {}
    for _, measured, rate in alternating(args.repeats, image_measures(rows, paths, args, results)):
        results.setdefault(measured, []).append(rate)
    show_images(results)
    if fundus:
        judge_fundus(name, results, native.image_size, verdicts)


def pcam_stream(datamodule: PCam, batches: int) -> Rate:
    """Patches/s of ``batches`` training batches from a fresh loader (its 4 workers started inside the clock,
    as every epoch of a run without persistent workers starts them), and the peak memory meanwhile."""
    loader = datamodule.train_dataloader()
    seen = 0
    with PeakMemory() as memory:
        start = time.perf_counter()
        for count, batch in enumerate(loader, 1):
            seen += len(batch["image"])
            if count == batches:
                break
        elapsed = time.perf_counter() - start
    del loader
    return Rate(seen / elapsed, 0.0, memory.rss, memory.pss)


def measure_pcam(root: Path, args, verdicts: Verdicts) -> None:
    x_path = root / "camelyonpatch_level_2_split_train_x.h5"
    size = x_path.stat().st_size
    dm = PCam(root=str(root), batch_size=256, num_workers=4)
    dm.setup("fit")
    streams = [pcam_stream(dm, args.pcam_batches) for _ in range(args.repeats)]
    rss, pss = [r.rss / GIB for r in streams], [r.pss / GIB for r in streams]
    print(f"\nPCam: training file {x_path.name} {size / GIB:.2f} GiB ({len(dm.sources()['train'])} patches); "
          f"{args.pcam_batches * 256} patches streamed by 4 workers, {args.repeats} repeats: patches/s "
          f"{spread([r.per_s for r in streams], '.0f')}; peak RSS {spread(rss, '.2f')} GiB, PSS "
          f"{spread(pss, '.2f')} GiB over the loading process and workers")
    verdicts.judge(f"PCam {size / GIB:.1f} GiB training file streamed by 4 workers: peak resident memory of "
                   "the 5 processes", pss, "<", 2, "GiB PSS (shared library pages counted once)", ".2f")


def data_from_config(argv: list[str]) -> MedicalDataModule:
    from jsonargparse import ActionConfigFile, ArgumentParser

    parser = ArgumentParser(prog="data_throughput.py (dataset from a data config)")
    parser.add_argument("--config", action=ActionConfigFile)
    parser.add_subclass_arguments(MedicalDataModule, "data", required=True)
    return parser.instantiate_classes(parser.parse_args(argv)).data


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=None,
                        help="where generated data and caches go (default: a temporary folder, removed "
                        "after)")
    parser.add_argument("--fundus_images", type=int, default=24)
    parser.add_argument("--cxr_images", type=int, default=48)
    parser.add_argument("--pcam_images", type=int, default=262_144, help="0: skip PCam")
    parser.add_argument("--pcam_batches", type=int, default=40, help="batches of 256 patches streamed")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--image_size", type=int, default=224)
    parser.add_argument("--batch_size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=3.0, help="minimum timed seconds per measurement")
    parser.add_argument("--repeats", type=repeats_argument, default=3,
                        help="repeats of every measurement (the baseline and the loaders taking turns)")
    args, rest = parser.parse_known_args()
    cv2.setNumThreads(1)
    warnings.filterwarnings("ignore", message=".*worker processes in total.*")  # 4 PCam workers on 2 CPUs
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="data_throughput_"))
    verdicts = Verdicts()
    print(f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), load average "
          f"{load_average()}; workdir {workdir}")
    try:
        if rest:
            native = data_from_config(rest)
            cached = None
            if isinstance(native, FileBackedDataModule):
                cached = data_from_config(rest)
                if cached.cache_dir is None:
                    cached.cache_dir = str(workdir / "cache")
                native.cache_dir = None
            fundus = native.augmentation == "fundus"
            measure_images(native.name, native, cached, args, verdicts, fundus=fundus)
        else:
            common = {"image_size": args.image_size, "batch_size": args.batch_size}
            start = time.perf_counter()
            fundus = write_fundus_folder(workdir / "fundus", args.fundus_images)
            cxr = write_cxr_folder(workdir / "cxr", args.cxr_images)
            print(f"generated {args.fundus_images} fundus JPEGs and {args.cxr_images} CXR PNGs in "
                  f"{time.perf_counter() - start:.0f} s")
            for name, root, extra in (("fundus JPEGs", fundus, {"augmentation": "fundus"}),
                                      ("CXR PNGs", cxr, {"augmentation": "chest_xray", "grey": True})):
                native = ImageFolder(root=str(root), **common, **extra)
                cached = ImageFolder(root=str(root), cache_dir=str(workdir / "cache"), **common, **extra)
                measure_images(name, native, cached, args, verdicts, fundus=name.startswith("fundus"))
        if args.pcam_images:
            needed = args.pcam_images * int(np.prod(PCAM_SHAPE)) * 1.05
            free = shutil.disk_usage(workdir).free
            if needed > free:
                print(f"\nPCam: {needed / GIB:.1f} GiB needed, {free / GIB:.1f} GiB free in {workdir}; "
                      "run with a smaller --pcam_images")
            else:
                start = time.perf_counter()
                root = write_pcam(workdir / "pcam", args.pcam_images)
                print(f"\ngenerated PCam files in {time.perf_counter() - start:.0f} s")
                measure_pcam(root, args, verdicts)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    verdicts.show("targets (issue 15)")


if __name__ == "__main__":
    main()
