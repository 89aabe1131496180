"""Where a registry entry's file comes from: a local file, else the torch hub cache, else a verified download.

The cache follows torch.hub's convention, ``$TORCH_HOME/hub/checkpoints/<file name>``
(``torch.hub.get_dir()``), so files that the projects' own ``torch.hub`` loaders cached are found too. Set
``MEDTRANSFER_OFFLINE=1`` to never try the network.
"""

from __future__ import annotations

import logging
from pathlib import Path
from urllib.error import URLError

import torch

from ..runtime.progress import show_progress
from ..runtime.settings import offline_variable
from .errors import ChecksumError, WeightsNotFoundError
from .registry import WeightsEntry

log = logging.getLogger(__name__)

OFFLINE_ENV = "MEDTRANSFER_OFFLINE"  # read through runtime.settings


def cache_dir() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints"


def cached_path(entry: WeightsEntry) -> Path:
    return cache_dir() / entry.file_name


def resolve_weights_file(entry: WeightsEntry | None, checkpoint: str | Path | None) -> Path:
    """The file to load: ``checkpoint`` when given (it must exist), else the cached file, else a download."""
    if checkpoint is not None:
        path = Path(checkpoint).expanduser()
        if not path.is_file():
            hint = f" (the registry's file for {entry.name} is {entry.file_name})" if entry else ""
            raise WeightsNotFoundError(f"checkpoint file {path} does not exist{hint}")
        return path
    if entry is None:
        raise ValueError("a checkpoint file is needed to load weights into a plain timm architecture")
    path = cached_path(entry)
    if path.is_file():
        return path
    return download(entry)


def download(entry: WeightsEntry, force: bool = False) -> Path:
    """Download ``entry``'s file into the cache with a progress bar, verifying the published checksum."""
    path = cached_path(entry)
    if path.is_file() and not force:
        return path
    if entry.url is None:
        raise WeightsNotFoundError(
            f"{entry.name}: there is no direct download for these weights; {entry.instructions}. Then put "
            f"the file at {path} or pass it as the checkpoint (model.init_args.checkpoint)."
        )
    if (variable := offline_variable()) is not None:
        why = f"offline ({variable} is set)"
        raise WeightsNotFoundError(_not_found_message(entry.name, entry.url, path, why))
    return download_url(entry.name, entry.url, path, entry.sha256)


def download_url(name: str, url: str, path: Path, sha256: str | None) -> Path:
    """Download ``url`` to ``path`` with a progress bar, checking ``sha256`` (or its prefix) if given."""
    path.parent.mkdir(parents=True, exist_ok=True)
    log.info("downloading the %s weights from %s to %s", name, url, path)
    try:  # torch.hub draws its own tqdm bar on stderr, shown where medtransfer's bars are
        torch.hub.download_url_to_file(url, str(path), hash_prefix=sha256, progress=show_progress())
    except (URLError, OSError) as err:
        raise WeightsNotFoundError(_not_found_message(name, url, path, f"download failed: {err}")) from None
    except RuntimeError as err:
        if "invalid hash value" in str(err):
            raise ChecksumError(
                f"{url}: the download does not have the published SHA-256 ({err}); nothing was kept at "
                f"{path}. Try again; if it persists the file upstream changed: report it."
            ) from None
        raise
    return path


def checksum_matches(entry: WeightsEntry, digest: str) -> bool | None:
    """True/False against the published checksum (or its leading digits); None where none is published."""
    return None if entry.sha256 is None else digest.startswith(entry.sha256)


def _not_found_message(name: str, url: str, path: Path, why: str) -> str:
    return (f"{name}: weights not found locally and {why}. Download {url} and put it at {path} "
            f"(or pass any path as the checkpoint: model.init_args.checkpoint / --checkpoint).")
