"""Images/s of medtransfer's training DataLoader: the original files (native), a prepared cache
(``medtransfer prepare --cache``) and a naive baseline measured in the same run (PIL open + full decode +
resize + torchvision ToTensor, one process), per worker process and in total, with peak resident memory; and
PatchCamelyon's 7 GB training file streamed by 4 workers. Prints each target of issue 15 as met or MISSED.

By default it generates its data under ``--workdir``: fundus-like JPEGs (a bright textured disc on a black
border, 3-5 MB, up to 4928 x 3264 px, as EyePACS photos are), CXR-like grey 1024 x 1024 PNGs, and an HDF5 file
of PCam's real shape and dtype (262,144 x 96 x 96 x 3 uint8, 7.2 GB; ``--pcam_images`` for fewer, e.g. where
the disk is smaller). Measure your own data with a data config instead::

    python benchmarks/data_throughput.py                          # generated data, a few minutes on 2 cores
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
from pathlib import Path

import cv2
import h5py
import numpy as np
import torch
from PIL import Image

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
    thread; ``rss``/``pss`` are the peaks of their sums, in bytes (Linux /proc)."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.rss = self.pss = 0
        self.cpu_seconds = 0.0
        self.images = 0
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


def naive_rate(paths: list[str], size: int, seconds: float) -> tuple[float, float]:
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
                return count / (time.perf_counter() - start), count / (time.thread_time() - cpu_start)


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
                min_batches: int) -> tuple[float, PeakMemory]:
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
        memory.cpu_seconds = workers_cpu_seconds() - cpu_start
        memory.images = seen
    del loader
    return seen / elapsed, memory


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


class Report:
    def __init__(self) -> None:
        self.verdicts: list[str] = []

    def target(self, what: str, value: float, bound: float, unit: str, above: bool = True) -> None:
        met = value >= bound if above else value < bound
        relation = ">=" if above else "<"
        self.verdicts.append(f"  {'met   ' if met else 'MISSED'}  {what}: {value:.1f}{unit} "
                             f"(target {relation} {bound:g}{unit})")


def measure_images(name: str, native: MedicalDataModule, cached: MedicalDataModule | None, args,
                   report: Report, fundus: bool) -> None:
    native.setup("fit")
    paths = training_files(native)
    megabytes = sum(os.path.getsize(p) for p in paths) / len(paths) / 1e6
    print(f"\n{name}: {len(paths)} training images, {megabytes:.1f} MB each on average, loader at "
          f"{native.image_size} px with '{native.augmentation}' augmentation, batch {native.batch_size}")
    naive, naive_cpu = naive_rate(paths, native.image_size, args.seconds)
    print(f"  naive baseline (PIL decode + resize + ToTensor, 1 process): {naive:8.1f} images/s "
          f"({naive_cpu:.1f} per CPU-second)")
    rows = {"native": native}
    if cached is not None:
        start = time.perf_counter()
        folder = cached.prepare_cache(workers=args.workers)
        elapsed = time.perf_counter() - start
        print(f"  prepare --cache ({args.workers} processes): {len(paths) / elapsed:8.1f} images/s "
              f"(all splits), {sum(f.stat().st_size for f in folder.iterdir()) / 1e6:.0f} MB in {folder}")
        cached.setup("fit")
        rows["cache"] = cached
    for label, datamodule in rows.items():
        guess = naive * (50 if label == "cache" else 3)  # sizes the run to about --seconds
        batches = 8 if label == "cache" else 3
        per_worker, memory_one = loader_rate(datamodule, 1, args.seconds, guess, batches)
        total, memory = loader_rate(datamodule, args.workers, args.seconds, guess * args.workers, batches)
        per_cpu = memory_one.images / memory_one.cpu_seconds if memory_one.cpu_seconds else 0.0
        print(f"  {label:<6} 1 worker: {per_worker:8.1f} images/s ({per_worker / naive:5.1f}x naive; "
              f"{per_cpu:.0f} per worker CPU-second), "
              f"peak RSS {memory_one.rss / GIB:.2f} GiB; {args.workers} workers: {total:8.1f} images/s "
              f"({total / args.workers:.1f} per worker), peak RSS {memory.rss / GIB:.2f} GiB, "
              f"PSS {memory.pss / GIB:.2f} GiB")
        if fundus and label == "cache":
            report.target(f"{name}: cache, training augmentation at {datamodule.image_size} px, per worker "
                          "vs naive", per_worker / naive, 20, "x")
            report.target(f"{name}: the same per CPU-second", per_cpu / naive_cpu, 20, "x")
            report.target(f"{name}: cache, images/s per worker process (wall clock)", per_worker, 500, "")
            report.target(f"{name}: cache, images per worker CPU-second (the rate of a core of its own)",
                          per_cpu, 500, "")
        if fundus and label == "native":
            report.target(f"{name}: native JPEG path per worker vs naive", per_worker / naive, 3, "x")
            report.target(f"{name}: the same per CPU-second", per_cpu / naive_cpu, 3, "x")


def measure_pcam(root: Path, args, report: Report) -> None:
    x_path = root / "camelyonpatch_level_2_split_train_x.h5"
    size = x_path.stat().st_size
    dm = PCam(root=str(root), batch_size=256, num_workers=4)
    dm.setup("fit")
    batches = 0
    loader = dm.train_dataloader()
    with PeakMemory() as memory:
        start = time.perf_counter()
        for _ in loader:
            batches += 1
            if batches == args.pcam_batches:
                break
        elapsed = time.perf_counter() - start
    del loader
    print(f"\nPCam: training file {x_path.name} {size / GIB:.2f} GiB ({len(dm.sources()['train'])} patches); "
          f"{batches * 256} patches streamed by 4 workers at {batches * 256 / elapsed:.0f} patches/s, peak "
          f"RSS {memory.rss / GIB:.2f} GiB (PSS {memory.pss / GIB:.2f} GiB) over the loading process and "
          "workers")
    what = (f"PCam {size / GIB:.1f} GiB training file streamed by 4 workers: peak resident memory of the 5 "
            "processes (PSS: shared library pages counted once)")
    report.target(what, memory.pss / GIB, 2, " GiB", above=False)


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
    parser.add_argument("--seconds", type=float, default=5.0, help="minimum timed seconds per measurement")
    args, rest = parser.parse_known_args()
    cv2.setNumThreads(1)
    warnings.filterwarnings("ignore", message=".*worker processes in total.*")  # 4 PCam workers on 2 CPUs
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="data_throughput_"))
    report = Report()
    print(f"machine: {os.cpu_count()} CPUs ({len(os.sched_getaffinity(0))} usable), load average "
          f"{', '.join(f'{v:.1f}' for v in os.getloadavg())}; workdir {workdir}")
    try:
        if rest:
            native = data_from_config(rest)
            cached = None
            if isinstance(native, FileBackedDataModule):
                cached = data_from_config(rest)
                if cached.cache_dir is None:
                    cached.cache_dir = str(workdir / "cache")
                native.cache_dir = None
            measure_images(native.name, native, cached, args, report, fundus=native.augmentation == "fundus")
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
                measure_images(name, native, cached, args, report, fundus=name.startswith("fundus"))
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
                measure_pcam(root, args, report)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)
    print("\ntargets (issue 15):")
    print("\n".join(report.verdicts))


if __name__ == "__main__":
    main()
