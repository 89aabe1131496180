"""The arrays of an ``.npz`` file, the large ones memory-mapped: unpacked once into ``.npy`` files that every
process and DataLoader worker maps, so a 224 px MedMNIST file is held once in the page cache instead of once
per process (``np.load`` of an ``.npz`` reads every array whole into each process's memory)."""

from __future__ import annotations

import hashlib
import logging
import zipfile
from pathlib import Path

import numpy as np

from ..errors import MedTransferError
from ..runtime.progress import progress
from ..runtime.settings import cache_root
from ..utils.atomic import atomic_path

log = logging.getLogger(__name__)

CACHE_ENV = "MEDTRANSFER_CACHE"  # read through runtime.settings
MAP_ABOVE_BYTES = 2**30  # arrays at least this large (uncompressed) are memory-mapped
CHUNK_BYTES = 64 * 2**20


class ArrayCacheError(MedTransferError, RuntimeError):
    """A large array could not be unpacked into the cache folder (full disk, no permission)."""


def default_cache_dir() -> Path:
    """``$MEDTRANSFER_CACHE/npz``, else ``~/.cache/medtransfer/npz``."""
    return cache_root() / "npz"


def load_npz(path: Path, cache_dir: Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` at ``path`` by name: small ones read into memory, large ones memory-mapped
    read-only from ``cache_dir`` (unpacked there first when missing). ``np.load``'s errors pass through."""
    large = set(large_arrays(path))
    with np.load(path, allow_pickle=False) as archive:
        return {
            name: np.load(unpacked(path, name, cache_dir), mmap_mode="r") if name in large else archive[name]
            for name in archive.files
        }


def unpack_large(path: Path, cache_dir: Path) -> None:
    """Unpack the large arrays of ``path`` into ``cache_dir`` now (once, before processes map them)."""
    for name in large_arrays(path):
        unpacked(path, name, cache_dir)


def large_arrays(path: Path) -> list[str]:
    """Names of the arrays of ``path`` that are memory-mapped rather than read."""
    with zipfile.ZipFile(path) as archive:
        return [
            info.filename.removesuffix(".npy")
            for info in archive.infolist()
            if info.filename.endswith(".npy") and info.file_size >= MAP_ABOVE_BYTES
        ]


def unpacked(path: Path, name: str, cache_dir: Path) -> Path:
    """The ``.npy`` copy of array ``name`` of ``path`` in ``cache_dir``, written (atomically) if missing. Its
    folder is keyed by the archive's path, size and modification time, so a replaced archive is unpacked
    again."""
    stat = path.stat()
    key = hashlib.sha256(f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
    target = cache_dir / f"{path.stem}-{key}" / f"{name}.npy"
    if target.exists():
        return target
    log.info("unpacking %s of %s into %s (once, to memory-map it)", name, path, target.parent)
    try:
        with atomic_path(target) as partial:  # unique across processes and nodes; a reader never sees half
            _copy_member(path, name, partial)
    except OSError as err:
        raise ArrayCacheError(
            f"{path}: could not unpack {name} into {target.parent} to memory-map it ({err}); make room "
            f"there, or choose a writable folder with room: ${CACHE_ENV} or data.init_args.cache_dir"
        ) from None
    return target


def _copy_member(path: Path, name: str, out_path: Path) -> None:
    """Stream one array of the archive into a ``.npy`` file chunk by chunk (never whole in memory)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{name}.npy") as member:
        version = np.lib.format.read_magic(member)
        read_header = (
            np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
        )
        shape, fortran_order, dtype = read_header(member)
        out = np.lib.format.open_memmap(
            out_path, mode="w+", dtype=dtype, shape=shape, fortran_order=fortran_order
        )
        buffer = memoryview(out.reshape(-1, order="A").view(np.uint8))
        position = 0
        with progress(desc=f"unpack {path.name}:{name}", total=len(buffer), unit="B") as bar:
            while position < len(buffer):
                count = member.readinto(buffer[position : position + CHUNK_BYTES])
                if not count:
                    raise OSError(f"{name}.npy ends after {position} of {len(buffer)} bytes")
                position += count
                bar.update(count)
        out.flush()
        del buffer, out
