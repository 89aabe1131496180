"""Prepared image caches (``medtransfer prepare --cache``): every image file of a dataset decoded once, a
fundus photo's black border cropped, resized so that its short side is the training size (never enlarged),
and stored as raw uint8 pixels, so a training epoch reads ~150 kB per image instead of decoding a 4 MB JPEG.

A cache is a folder ``<cache_dir>/<dataset>-<digest of root and settings>/``:

- ``pixels.u8``: the pixels of every image back to back (``H x W`` grey or ``H x W x 3``, row-major);
- ``files.txt``: the absolute path of each source file, one per line;
- ``index.npz``: per file its size and modification time (the fingerprint of the source) and where its
  pixels are (offset, height, width, channels; height 0 marks a file left out as unreadable under
  ``skip_corrupt``);
- ``manifest.json``: the dataset, root, settings and a digest of the source fingerprint.

It is written in a hidden folder beside its place and renamed onto it when complete, so an interrupted
prepare leaves nothing that looks like a cache. A datamodule reads a cache only when every file it lists is
in it with the size and modification time recorded; otherwise it refuses, naming what changed and the command
that rebuilds it. Sample ids, labels and patients always come from the dataset's own tables, so they are
exactly those of the original files.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import cv2
import numpy as np

from ..errors import MedTransferError
from ..runtime.progress import progress
from ..runtime.threads import usable_cpus
from ..utils.atomic import flush_to_disk, write_failure
from ..utils.hashing import json_digest
from .errors import CorruptImageError, SkippedSample
from .fundus import retina_bounding_box
from .images import FileSource, read_pixels, stat_stamp
from .sources import Source, SubsetSource, as_rgb_uint8

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
PREPARE_HINT = "medtransfer prepare --cache --config <the same data config>"


class CacheError(MedTransferError, ValueError):
    """A prepared cache that is missing, stale (source files or settings changed) or cannot be built."""


@dataclass(frozen=True)
class CacheSettings:
    """What decides a cached image's pixels besides its source file.

    Args:
        size: the short side the images are resized to (larger ones only; INTER_AREA).
        crop_border: crop the black border around a fundus photo's retina first.
        grey: decode to one channel (X-rays).
    """

    size: int
    crop_border: bool
    grey: bool
    version: int = FORMAT_VERSION

    def describe(self) -> str:
        crop = ", retina border cropped" if self.crop_border else ""
        return f"short side {self.size} px, {'grey' if self.grey else 'colour'}{crop}"


def cache_folder(cache_dir: str | Path, dataset: str, root: str | Path, settings: CacheSettings) -> Path:
    """Where the cache of ``dataset`` under ``root`` with ``settings`` lives."""
    root_key = str(Path(root).expanduser().resolve())
    return Path(cache_dir).expanduser() / f"{dataset}-{json_digest({'root': root_key, **asdict(settings)})}"


def file_sources(sources: dict[str, Source]) -> list[FileSource]:
    """The distinct FileSources under the splits (carved splits and label fractions are subsets of them)."""
    found: dict[int, FileSource] = {}
    for split, source in sources.items():
        base = source
        while isinstance(base, SubsetSource):
            base = base.parent
        if not isinstance(base, FileSource):
            raise CacheError(
                f"the {split} split reads {type(base).__name__}, not image files: only datasets of image "
                "files (EyePACS, APTOS2019, ChestXray14, ChestXrayPneumonia, ImageFolder, CSVDataset) have "
                "a prepared cache; arrays (PCam, MedMNIST) are read fast as they are"
            )
        found[id(base)] = base
    return list(found.values())


def file_stats(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Size and modification time (ns) of each file: the source fingerprint (contents are not hashed: reading
    a 90 GB dataset to check a cache would cost as much as rebuilding it)."""
    sizes = np.empty(len(paths), dtype=np.int64)
    mtimes = np.empty(len(paths), dtype=np.int64)
    for i, path in enumerate(paths):
        try:
            stat = os.stat(path)
        except OSError as err:
            raise CacheError(f"{path}: cannot read the source image ({err.strerror})") from None
        sizes[i], mtimes[i] = stat.st_size, stat.st_mtime_ns
    return sizes, mtimes


def sources_digest(paths: list[str], sizes: np.ndarray, mtimes: np.ndarray) -> str:
    order = sorted(range(len(paths)), key=paths.__getitem__)
    return json_digest([[paths[i], int(sizes[i]), int(mtimes[i])] for i in order])


class ImageCache:
    """A complete cache folder, opened for reading; ``check(paths)`` says whether it serves these files."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.manifest = json.loads((folder / MANIFEST).read_text())
        self.paths = (folder / "files.txt").read_text().split("\n")
        with np.load(folder / "index.npz", allow_pickle=False) as index:
            self.sizes, self.mtimes = index["sizes"], index["mtimes"]
            self.offsets, self.shapes = index["offsets"], index["shapes"]
        self.row_of = {path: row for row, path in enumerate(self.paths)}

    @classmethod
    def open(cls, folder: Path, settings: CacheSettings) -> ImageCache:
        """The cache in ``folder``, or a CacheError saying what is there instead and how to build it."""
        if not (folder / MANIFEST).exists():
            dataset = folder.name.rsplit("-", 1)[0]
            others = sorted(p for p in folder.parent.glob(f"{dataset}-*") if (p / MANIFEST).exists())
            elsewhere = ""
            if others:
                described = "; ".join(_describe_other(p) for p in others[:3])
                elsewhere = f" ({folder.parent} holds {dataset} caches of other settings or roots: " \
                            f"{described})"
            raise CacheError(
                f"no prepared cache at {folder} for {settings.describe()}{elsewhere}. Build it with "
                f"`{PREPARE_HINT}`, or remove data.init_args.cache_dir to read the original images"
            )
        return cls(folder)

    def check(self, paths: list[str]) -> np.ndarray:
        """The cache rows of ``paths``, or a CacheError naming the files that are new or changed since the
        cache was prepared."""
        rows = np.asarray([self.row_of.get(path, -1) for path in paths], dtype=np.int64)
        sizes, mtimes = file_stats(paths)
        new = np.flatnonzero(rows < 0)
        known = np.flatnonzero(rows >= 0)
        recorded = rows[known]
        changed = known[(self.sizes[recorded] != sizes[known]) | (self.mtimes[recorded] != mtimes[known])]
        if new.size or changed.size:
            examples = [f"{paths[i]} (not in the cache)" for i in new[:3]]
            examples += [f"{paths[i]} (modified since the cache was prepared)" for i in changed[:3]]
            raise CacheError(
                f"the prepared cache {self.folder} is stale: {new.size} listed image(s) are not in it and "
                f"{changed.size} changed since it was prepared ({self.manifest.get('created', '?')}), e.g. "
                f"{'; '.join(examples)}. Rebuild it with `{PREPARE_HINT}` (it replaces the stale one), or "
                "remove data.init_args.cache_dir to read the original images"
            )
        return rows


def _describe_other(folder: Path) -> str:
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
        settings = CacheSettings(**manifest["settings"])
        return f"{folder.name}: {settings.describe()}, root {manifest['root']}"
    except (OSError, ValueError, KeyError, TypeError):
        return folder.name


class CachedSource(Source):
    """A FileSource's samples (same ids, labels, patients, paths) with pixels read from a prepared cache.
    The pixel file is opened lazily once per process, so DataLoader workers never share a handle; each
    image is one seek and one read into a fresh array (no memory map, so a worker's resident memory stays
    flat however large the cache)."""

    def __init__(self, source: FileSource, cache: ImageCache, rows: np.ndarray) -> None:
        self.ids, self.labels, self.groups = source.ids, source.labels, source.groups
        self.paths, self.origins, self.skip_corrupt = source.paths, source.origins, source.skip_corrupt
        self.pixels_path = str(cache.folder / "pixels.u8")
        self.offsets = cache.offsets[rows]
        self.shapes = cache.shapes[rows]
        self.file_stats = (cache.sizes[rows], cache.mtimes[rows])  # the files', checked by ``cache.check``
        self.skipped: dict[str, str] = {}
        self._file = None
        self._pid: int | None = None

    def load_image(self, index: int) -> np.ndarray:
        return as_rgb_uint8(self.load_pixels(index))

    def load_pixels(self, index: int) -> np.ndarray:
        height, width, channels = (int(v) for v in self.shapes[index])
        if height == 0:
            return self._unreadable(index)
        if self._file is None or self._pid != os.getpid():
            self._file = open(self.pixels_path, "rb", buffering=0)  # noqa: SIM115 - held for the process
            self._pid = os.getpid()
        pixels = np.empty((height, width, channels) if channels > 1 else (height, width), dtype=np.uint8)
        self._file.seek(int(self.offsets[index]))
        if self._file.readinto(memoryview(pixels).cast("B")) != pixels.nbytes:
            raise CacheError(f"{self.pixels_path} is truncated; rebuild the cache with `{PREPARE_HINT}`")
        return pixels

    def pixel_stamps(self) -> list[str | None]:
        """The stamps of the image files the cache was prepared from (``FileSource.pixel_stamps``)."""
        return [stat_stamp(stat) for stat in zip(*self.file_stats, strict=True)]

    def _unreadable(self, index: int) -> np.ndarray:
        where = f" (listed in {self.origins[index]})" if self.origins else ""
        message = f"{self.paths[index]}: unreadable when the cache was prepared{where}"
        if self.skip_corrupt:
            self.skipped[self.ids[index]] = message
            log.warning("skip_corrupt: skipping sample %s: %s", self.ids[index], message)
            raise SkippedSample(self.ids[index])
        raise CorruptImageError(
            f"{message}. Replace or remove the file and prepare the cache again, or set "
            "data.init_args.skip_corrupt: true to skip unreadable images"
        )

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state["_file"] = None  # each worker opens its own handle
        return state


def read_from_cache(sources: dict[str, Source], folder: Path, settings: CacheSettings) -> dict[str, Source]:
    """``sources`` with every FileSource's pixels read from the cache in ``folder`` (refused when missing or
    stale); subsets (carved splits, label fractions) keep their rows."""
    cache = ImageCache.open(folder, settings)
    cached = {
        id(source): CachedSource(source, cache, cache.check([os.path.abspath(p) for p in source.paths]))
        for source in file_sources(sources)
    }

    def swap(source: Source) -> Source:
        if isinstance(source, SubsetSource):
            return SubsetSource(swap(source.parent), source.indices)
        return cached[id(source)]

    log.info("reading pixels from the prepared cache %s (%s)", folder, settings.describe())
    return {split: swap(source) for split, source in sources.items()}


# -- building --------------------------------------------------------------------------------------------
def prepared_pixels(path: str, settings: CacheSettings) -> np.ndarray:
    """One image as the cache stores it: decoded (a JPEG at a reduced scale no smaller than twice the size),
    the retina's border cropped when asked, the short side resized down to ``settings.size``."""
    image = read_pixels(path, settings.grey, draft_size=2 * settings.size)
    if settings.crop_border:
        top, bottom, left, right = retina_bounding_box(image)
        image = image[top:bottom, left:right]
    height, width = image.shape[:2]
    scale = settings.size / min(height, width)
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = cv2.resize(image, size, interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(image)


def _prepare_one(job: tuple[int, str, CacheSettings]) -> tuple[int, bytes | None, tuple[int, int, int], str]:
    index, path, settings = job
    try:
        image = prepared_pixels(path, settings)
    except CorruptImageError as err:
        return index, None, (0, 0, 0), str(err)
    channels = image.shape[2] if image.ndim == 3 else 1
    return index, image.tobytes(), (image.shape[0], image.shape[1], channels), ""



def build_cache(
    sources: dict[str, Source],
    folder: Path,
    settings: CacheSettings,
    dataset: str,
    root: str | Path,
    skip_corrupt: bool = False,
    workers: int | None = None,
) -> Path:
    """Decode every image file under ``sources`` into a new cache at ``folder`` (replacing a stale one),
    over ``workers`` processes (default: every CPU). An unreadable image is a CorruptImageError naming it, or
    with ``skip_corrupt`` is counted and recorded as left out."""
    listed: dict[str, str] = {}  # each file once, with where it was first listed
    for source in file_sources(sources):
        for i, path in enumerate(source.paths):
            listed.setdefault(os.path.abspath(path), source.origins[i] if source.origins else "")
    paths, origins = list(listed), list(listed.values())
    sizes, mtimes = file_stats(paths)

    tmp = folder.with_name(f".{folder.name}.tmp-{socket.gethostname()}-{os.getpid()}")
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        _remove_abandoned(folder)
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
    except OSError as error:  # a read-only or full disk, no permission: said, with what to do
        raise write_failure(folder, error) from error
    try:
        offsets, shapes, unreadable = _write_pixels(tmp / "pixels.u8", paths, origins, settings, skip_corrupt,
                                                    workers or usable_cpus(), dataset)
        (tmp / "files.txt").write_text("\n".join(paths))
        with open(tmp / "index.npz", "wb") as handle:
            np.savez(handle, sizes=sizes, mtimes=mtimes, offsets=offsets, shapes=shapes)
            flush_to_disk(handle)
        manifest = {
            "format": FORMAT_VERSION, "dataset": dataset, "root": str(Path(root).expanduser().resolve()),
            "settings": asdict(settings), "images": len(paths), "unreadable": unreadable,
            "pixel_bytes": int(sum(int(np.prod(s)) for s in shapes)),
            "sources_digest": sources_digest(paths, sizes, mtimes),
            "created": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        }
        with open(tmp / MANIFEST, "w") as handle:
            json.dump(manifest, handle, indent=1)
            flush_to_disk(handle)
        _move_into_place(tmp, folder)
    except BaseException as error:
        shutil.rmtree(tmp, ignore_errors=True)
        if isinstance(error, OSError) and not isinstance(error, MedTransferError):
            raise write_failure(folder, error) from error
        raise
    log.info("%s: prepared cache %s: %d images (%s), %d unreadable left out", dataset, folder, len(paths),
             settings.describe(), unreadable)
    return folder


def _write_pixels(path: Path, paths: list[str], origins: list[str], settings: CacheSettings,
                  skip_corrupt: bool, workers: int, dataset: str) -> tuple[np.ndarray, np.ndarray, int]:
    offsets = np.zeros(len(paths), dtype=np.int64)
    shapes = np.zeros((len(paths), 3), dtype=np.int32)
    unreadable = 0
    jobs = [(i, p, settings) for i, p in enumerate(paths)]
    with open(path, "wb") as handle, _pool(workers) as pool:
        chunk = max(1, min(64, len(jobs) // (8 * workers)))
        results = pool.imap(_prepare_one, jobs, chunksize=chunk) if pool else map(_prepare_one, jobs)
        position = 0
        for index, pixels, shape, error in progress(results, desc=f"prepare {dataset}", total=len(jobs),
                                                    unit="img"):
            if pixels is None:
                where = f" (listed in {origins[index]})" if origins[index] else ""
                if not skip_corrupt:
                    raise CorruptImageError(
                        f"{error}{where}; no cache was written. Replace or remove the file, or set "
                        "data.init_args.skip_corrupt: true to leave unreadable images out (counted)"
                    )
                unreadable += 1
                log.warning("skip_corrupt: leaving out %s%s: %s", paths[index], where, error)
                offsets[index] = position
                continue
            handle.write(pixels)
            offsets[index], shapes[index] = position, shape
            position += len(pixels)
        flush_to_disk(handle)
    return offsets, shapes, unreadable


class _InProcess:
    """Stands for a pool of one: images are decoded in this process."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc) -> None:
        return None


def _pool(workers: int):
    """A process pool of ``workers`` (forked where possible: no re-import per worker; OpenCV's thread count
    is not touched in the children, which deadlocks after a fork); ``_InProcess`` for one worker."""
    if workers <= 1:
        return _InProcess()
    forking = "fork" in multiprocessing.get_all_start_methods()
    context = multiprocessing.get_context("fork" if forking else None)
    return context.Pool(workers)



def _move_into_place(tmp: Path, folder: Path) -> None:
    """Rename the finished ``tmp`` onto ``folder``; a stale cache already there is moved aside first and
    deleted after."""
    old = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{socket.gethostname()}-{os.getpid()}")
        shutil.rmtree(old, ignore_errors=True)
        os.rename(folder, old)
    os.rename(tmp, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _remove_abandoned(folder: Path) -> None:
    """Delete what interrupted prepares of this cache on this host left (their process is gone)."""
    host = socket.gethostname()
    for leftover in folder.parent.glob(f".{folder.name}.*-{host}-*"):
        pid = leftover.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(leftover, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
