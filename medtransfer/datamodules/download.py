"""Downloads of datasets with stable public URLs (PCam, MedMNIST): progress bar, MD5 check, atomic files."""

from __future__ import annotations

import gzip
import logging
import os
import urllib.request
from pathlib import Path

from ..errors import MedTransferError
from ..runtime.progress import progress
from ..utils.atomic import atomic_path
from ..utils.hashing import file_digest

log = logging.getLogger(__name__)

CHUNK = 1 << 20


class DownloadError(MedTransferError, RuntimeError):
    """A download that failed or produced a file with the wrong checksum."""


def download_file(url: str, destination: str | Path, md5: str | None = None, get_from: str = "") -> Path:
    """Fetch ``url`` to ``destination`` through a temporary file (an interrupted download never looks
    complete), with a progress bar, and check its MD5 when known. An existing file with the right checksum is
    kept."""
    destination = Path(destination)
    if destination.exists() and (md5 is None or file_digest(destination, "md5") == md5):
        return destination
    log.info("downloading %s to %s", url, destination)
    with atomic_path(destination) as part:
        try:
            request = urllib.request.Request(url, headers={"User-Agent": "medtransfer"})
            with urllib.request.urlopen(request, timeout=60) as response, part.open("wb") as out:
                total = int(response.headers.get("Content-Length") or 0) or None
                with progress(desc=f"download {destination.name}", total=total, unit="B") as bar:
                    for chunk in iter(lambda: response.read(CHUNK), b""):
                        out.write(chunk)
                        bar.update(len(chunk))
        except OSError as err:
            where = f" Download it by hand from {get_from} into {destination.parent}." if get_from else ""
            raise DownloadError(f"could not download {url}: {err}.{where}") from None
        if md5 is not None and (actual := file_digest(part, "md5")) != md5:
            raise DownloadError(
                f"{url}: checksum mismatch (MD5 {actual}, expected {md5}); the download is corrupt, try again"
            )
    return destination


def gunzip_file(source: str | Path, destination: str | Path) -> Path:
    """Decompress ``source`` (``.gz``) to ``destination`` through a temporary file, with a progress bar over
    the compressed bytes read."""
    log.info("decompressing %s to %s", source, destination)
    with atomic_path(destination) as part:
        try:
            size = os.path.getsize(source)
            with (open(source, "rb") as raw, gzip.GzipFile(fileobj=raw, mode="rb") as src,
                  part.open("wb") as out,
                  progress(desc=f"gunzip {Path(source).name}", total=size, unit="B") as bar):
                for chunk in iter(lambda: src.read(CHUNK), b""):
                    out.write(chunk)
                    bar.update(raw.tell() - bar.n)
        except (OSError, EOFError) as err:
            raise DownloadError(
                f"{source}: not a complete gzip file ({err}); delete it and download again"
            ) from None
    return Path(destination)
