"""Image files: finding them (every format Pillow decodes: PNG, JPEG, TIFF, BMP, GIF, WEBP, ...), decoding
them to ``H x W x 3`` uint8, and the Source over a list of files."""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import EpsImagePlugin, Image, ImageFile, ImageOps
from pytorch_lightning.utilities import rank_zero_warn

from ..utils.hashing import file_digest
from .errors import CorruptImageError, SkippedSample
from .sources import DIGEST_BYTES, Source, as_rgb_uint8

log = logging.getLogger(__name__)

IGNORED_NAMES = ("__MACOSX",)
EXIF_ORIENTATION = 0x0112
IDENTIFY_ONLY_FORMATS = ("MPEG",)  # Pillow recognises these files but decodes no pixels from them
NAMES_SHOWN = 5  # left-out files a warning names before "... and N more"
READABLE = "PNG, JPEG, TIFF, BMP, GIF, WEBP, ..."  # for messages; image_suffixes() has every one


def read_image(path: str | Path, grey: bool = False, draft_size: int | None = None) -> np.ndarray:
    """Decode ``path`` to ``H x W x 3`` uint8 (docs/architecture.md: grey repeated to 3 channels); see
    ``read_pixels``."""
    return as_rgb_uint8(read_pixels(path, grey, draft_size))


def read_pixels(path: str | Path, grey: bool = False, draft_size: int | None = None) -> np.ndarray:
    """Decode ``path`` to uint8, ``H x W`` for grey images and ``H x W x 3`` for colour ones; ``grey`` first
    converts to one channel (RGBA X-rays); ``draft_size`` lets JPEG decode at a reduced scale no smaller than
    that side (a 5000 px fundus photo does not need full decoding to become 224 px)."""
    try:
        with Image.open(path) as image:
            if draft_size and image.format == "JPEG":
                image.draft("L" if grey else "RGB", (draft_size, draft_size))
            image.load()
            return _to_uint8(upright(image), grey)
    except FileNotFoundError:
        raise CorruptImageError(f"{path}: image file is missing") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise CorruptImageError(f"{path}: unreadable or truncated image ({err})") from None


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (phone and camera photos are stored sideways with a
    tag saying so); untouched without the tag."""
    if image.getexif().get(EXIF_ORIENTATION, 1) == 1:
        return image
    return ImageOps.exif_transpose(image)


def _to_uint8(image: Image.Image, grey: bool) -> np.ndarray:
    """8-bit pixels. 16-bit grey (``I;16*``: 16-bit PNG and TIFF) maps its full range: ``round(v * 255 /
    65535)``, so a pixel's 8-bit value never depends on the rest of the image; 32-bit integer or float grey
    (``I``, ``F``) is scaled by the image's maximum. Palette, CMYK, RGBA and every other mode go through PIL's
    ``convert`` (alpha is dropped, not composited)."""
    if image.mode.startswith("I") or image.mode == "F":
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(array.max()), 1.0)
        return np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if grey:
        return np.asarray(image.convert("L"))
    return np.asarray(image if image.mode == "RGB" else image.convert("RGB"))


def sample_id(relative_path: str | Path) -> str:
    """The id of the image at ``relative_path``: the path itself, except that bytes of a file name that
    are not UTF-8 (a Latin-1 name from an old scanner) are written as ``\\xe9``, so the id can go into CSV,
    JSON and feature stores; the file is still opened by its real name."""
    return os.fsencode(str(relative_path)).decode("utf-8", "backslashreplace")


@functools.cache
def image_suffixes() -> frozenset[str]:
    """The extensions (lower case, with the dot) of every format this Pillow decodes by itself: PNG, JPEG,
    TIFF, BMP, GIF, WEBP, JPEG 2000, PPM, ... Not the formats Pillow only identifies (its HDF5, GRIB, BUFR and
    WMF stubs, MPEG), nor EPS without Ghostscript."""
    Image.init()
    formats = {name for name, (factory, _accept) in Image.OPEN.items() if _decodes(name, factory)}
    return frozenset(ext for ext, name in Image.registered_extensions().items() if name in formats)


def _decodes(name: str, factory: object) -> bool:
    stub = isinstance(factory, type) and issubclass(factory, ImageFile.StubImageFile)
    if stub or name in IDENTIFY_ONLY_FORMATS:
        return False
    return name != "EPS" or bool(EpsImagePlugin.has_ghostscript())


def is_image_file(path: Path) -> bool:
    """A file of a format Pillow decodes (by its extension), not a dot file."""
    return path.suffix.lower() in image_suffixes() and not path.name.startswith(".")


@dataclass
class FolderFiles:
    """A folder's files, sorted: the images, and every other file (left out, but never in silence)."""

    images: list[Path]
    others: list[Path]


def list_folder_files(folder: Path) -> FolderFiles:
    """The files under ``folder`` (recursively, sorted), split into images and other files; dot files and
    folders and macOS archive debris (``__MACOSX``) are not looked at."""
    images, others = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d not in IGNORED_NAMES)
        for name in sorted(n for n in filenames if not n.startswith(".")):
            path = Path(dirpath) / name
            (images if is_image_file(path) else others).append(path)
    return FolderFiles(images, others)


def iter_image_files(folder: Path) -> list[Path]:
    """Image files under ``folder``, sorted (``list_folder_files``); the other files are warned about
    (``warn_left_out``)."""
    found = list_folder_files(folder)
    warn_left_out(found.others, folder)
    return found.images


def warn_left_out(others: Sequence[Path], where: Path | str) -> None:
    """A warning with the number of files under ``where`` that are not images (by extension) and the first
    few names; each one is logged."""
    if not others:
        return
    for path in others:
        log.info("left out (not an image Pillow reads): %s", path)
    rank_zero_warn(left_out_message(others, where))


def left_out_message(others: Sequence[Path], where: Path | str) -> str:
    """``3 files under scans/ are not images Pillow reads (2 .dcm, 1 .txt) and are left out: a.dcm, ...``"""
    kinds = Counter(path.suffix.lower() or "no extension" for path in others)
    by_count = sorted(kinds.items(), key=lambda kind: (-kind[1], kind[0]))
    described = ", ".join(f"{count} {kind}" for kind, count in by_count)
    return (f"{len(others)} file(s) under {where} are not images Pillow reads ({described}) and are left "
            f"out: {file_names(others, where)} (the log names each; convert images of other formats, e.g. "
            "DICOM, to PNG)")


def file_names(paths: Sequence[Path], where: Path | str) -> str:
    """The first few of ``paths`` (relative to ``where`` where inside it), and how many more there are."""
    names = ", ".join(_shown_name(path, where) for path in paths[:NAMES_SHOWN])
    return names + (f" and {len(paths) - NAMES_SHOWN} more" if len(paths) > NAMES_SHOWN else "")


def _shown_name(path: Path, where: Path | str) -> str:
    """``path`` relative to the folder it was found in, where it is inside it."""
    try:
        return str(path.relative_to(where))
    except ValueError:
        return str(path)


class FileSource(Source):
    """Images read lazily from files, one per sample.

    Args:
        paths: one image file per sample.
        labels, ids, groups: as for every ``Source``.
        origins: where each sample was listed (e.g. ``trainLabels.csv row 12``), for error messages.
        grey: decode to one channel first (X-rays; RGBA PNGs become grey).
        skip_corrupt: an unreadable image is logged, counted and dropped from its batch instead of stopping
        the run. draft_size: see ``read_image``.
    """

    def __init__(
        self,
        paths: Sequence[str | Path],
        labels: np.ndarray,
        ids: Sequence[str],
        groups: np.ndarray | None = None,
        origins: Sequence[str] | None = None,
        grey: bool = False,
        skip_corrupt: bool = False,
        draft_size: int | None = None,
    ) -> None:
        if not len(paths) == len(labels) == len(ids):
            raise ValueError(f"{len(paths)} paths, {len(labels)} labels and {len(ids)} ids differ in number")
        self.paths = [str(p) for p in paths]
        self.labels = np.asarray(labels)
        self.ids = list(ids)
        self.groups = None if groups is None else np.asarray(groups)
        self.origins = list(origins) if origins is not None else None
        self.grey = grey
        self.skip_corrupt = skip_corrupt
        self.draft_size = draft_size
        self.skipped: dict[str, str] = {}
        self._stats: list[tuple[int, int] | None] | None = None
        self._content_keys: dict[tuple[int, bool], str | bytes | None] = {}

    def load_image(self, index: int) -> np.ndarray:
        return as_rgb_uint8(self.load_pixels(index))

    def size_keys(self) -> list[int | None]:
        """Each file's size in bytes (None for a file that cannot be read: it is never a copy)."""
        return [None if stat is None else stat[0] for stat in self._file_stats()]

    def pixel_stamps(self) -> list[str | None]:
        """Each file's size and modification time: a file rewritten under its name changes them."""
        return [stat_stamp(stat) for stat in self._file_stats()]

    def _file_stats(self) -> list[tuple[int, int] | None]:
        """Each file's ``file_stat``, taken once (the copy check and the feature stores both ask)."""
        if self._stats is None:
            self._stats = [file_stat(path) for path in self.paths]
        return self._stats

    def content_key(self, index: int, whole: bool) -> str | bytes | None:
        """The file's digest, whole or of its ends; kept, since carving and the split check both ask."""
        key = (index, whole)
        if key not in self._content_keys:
            self._content_keys[key] = content_digest(self.paths[index], whole)
        return self._content_keys[key]

    def load_pixels(self, index: int) -> np.ndarray:
        try:
            return read_pixels(self.paths[index], self.grey, self.draft_size)
        except CorruptImageError as err:
            where = f" (listed in {self.origins[index]})" if self.origins else ""
            if self.skip_corrupt:
                self.skipped[self.ids[index]] = str(err)
                log.warning(
                    "skip_corrupt: skipping sample %s: %s%s [%d skipped so far in this process]",
                    self.ids[index],
                    err,
                    where,
                    len(self.skipped),
                )
                raise SkippedSample(self.ids[index]) from err
            raise CorruptImageError(
                f"{err}{where}. Replace or remove the file, or set data.init_args.skip_corrupt: true to skip "
                "unreadable images (each is logged and counted)"
            ) from None


def file_stat(path: str) -> tuple[int, int] | None:
    """The file's size in bytes and modification time in ns; None when it cannot be read."""
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def stat_stamp(stat: tuple[int, int] | None) -> str | None:
    """``size:mtime_ns``, a file's ``Source.pixel_stamps`` entry."""
    return None if stat is None else f"{int(stat[0])}:{int(stat[1])}"


ENDS_BYTES = 4096  # read from each end of a file by ``file_digest(whole=False)``


def content_digest(path: str, whole: bool) -> str | bytes | None:
    """A digest of the file's bytes: all of them (``utils.hashing.file_digest``), or its first and last 4 KiB
    (``whole`` False); None when the file cannot be read."""
    try:
        if whole:
            return file_digest(path)
        digest = hashlib.blake2b(digest_size=DIGEST_BYTES)
        with open(path, "rb") as handle:
            digest.update(handle.read(ENDS_BYTES))
            handle.seek(max(0, os.fstat(handle.fileno()).st_size - ENDS_BYTES))
            digest.update(handle.read(ENDS_BYTES))
        return digest.digest()
    except OSError:
        return None


def missing_files(paths: Sequence[str | Path], origins: Sequence[str] | None = None, limit: int = 5) -> str:
    """'' when every file exists, else a one-line message naming the first few missing files (and where they
    were listed); one directory listing per folder, so this is cheap for 100k files."""
    listings: dict[str, set[str]] = {}
    missing = []
    for i, path in enumerate(paths):
        folder, name = os.path.split(str(path))
        if folder not in listings:
            listings[folder] = set(os.listdir(folder)) if os.path.isdir(folder) else set()
        if name not in listings[folder]:
            missing.append(f"{path}" + (f" ({origins[i]})" if origins else ""))
    if not missing:
        return ""
    shown = ", ".join(missing[:limit])
    more = f" and {len(missing) - limit} more" if len(missing) > limit else ""
    return f"{len(missing)} of {len(paths)} listed images are missing: {shown}{more}"
