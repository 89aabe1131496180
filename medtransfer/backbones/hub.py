"""Where the files of timm's pretrained weights come from: the Hugging Face cache, else the torch hub cache
(where timm's URL downloads go), else a download; offline and missing is one error naming the file to fetch
and where to put it.

The Hugging Face cache is ``HF_HUB_CACHE`` (default ``~/.cache/huggingface/hub``), read when it is needed, so
a run can point it elsewhere. ``MEDTRANSFER_OFFLINE=1`` or ``HF_HUB_OFFLINE=1`` never tries the network.
"""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from urllib.parse import urlparse

import huggingface_hub
from huggingface_hub.errors import EntryNotFoundError, HfHubHTTPError, LocalEntryNotFoundError

from ..errors import first_line
from ..runtime.settings import offline_variable
from .download import cache_dir, download_url
from .errors import WeightsNotFoundError

HUB_OFFLINE_ENV = "HF_HUB_OFFLINE"
HUB_CACHE_ENV = "HF_HUB_CACHE"


def offline_reason() -> str | None:
    """Why the network may not be used (``runtime.settings.offline``), or None."""
    variable = offline_variable()
    return None if variable is None else f"offline ({variable} is set)"


def hub_cache() -> Path:
    """The Hugging Face cache, from the environment as it is now (huggingface_hub reads it at import)."""
    value = os.environ.get(HUB_CACHE_ENV)
    return Path(value).expanduser() if value else Path(huggingface_hub.constants.HF_HUB_CACHE)


def split_revision(hub_id: str) -> tuple[str, str | None]:
    """``org/name@revision`` to ``(org/name, revision)``."""
    repo, _, revision = hub_id.partition("@")
    return repo, revision or None


def hub_url(repo: str, revision: str | None, filename: str) -> str:
    return f"https://huggingface.co/{repo}/resolve/{revision or 'main'}/{filename}"


def cached_hub_file(hub_id: str, filenames: tuple[str, ...]) -> Path | None:
    """The first of ``filenames`` that the Hugging Face cache holds for the repository, or None."""
    repo, revision = split_revision(hub_id)
    for filename in filenames:
        found = huggingface_hub.try_to_load_from_cache(repo, filename, cache_dir=hub_cache(),
                                                       revision=revision)
        if isinstance(found, str):
            return Path(found)
    return None


def hub_file(name: str, hub_id: str, filenames: tuple[str, ...], checkpoint_hint: bool = True) -> Path:
    """The first of ``filenames`` (preferred first) in the repository: cached, else downloaded into the
    cache. ``checkpoint_hint``: the file can stand in as the checkpoint (weights, not a config)."""
    cached = cached_hub_file(hub_id, filenames)
    if cached is not None:
        return cached
    repo, revision = split_revision(hub_id)
    reason = offline_reason()
    if reason is not None:
        raise WeightsNotFoundError(hub_missing_message(name, repo, revision, filenames[0], reason,
                                                       checkpoint_hint))
    for filename in filenames:
        try:
            return Path(huggingface_hub.hf_hub_download(repo, filename, revision=revision,
                                                        cache_dir=hub_cache()))
        except EntryNotFoundError as err:
            if not isinstance(err, LocalEntryNotFoundError):  # (LocalEntryNotFoundError: no connection)
                continue  # the repository publishes another of the candidates
            failure: Exception = err
        except (HfHubHTTPError, OSError, ValueError) as err:
            failure = err
        why = f"the download failed ({type(failure).__name__}: {first_line(failure)})"
        raise WeightsNotFoundError(hub_missing_message(name, repo, revision, filename, why,
                                                       checkpoint_hint)) from None
    raise WeightsNotFoundError(f"{name}: the Hugging Face repository {repo} has none of the files "
                               f"{list(filenames)}; is it a timm model?")


def url_file(name: str, url: str) -> Path:
    """A file timm publishes by URL only: in the torch hub cache, else downloaded into it."""
    path = cache_dir() / PurePosixPath(urlparse(url).path).name
    if path.is_file():
        return path
    reason = offline_reason()
    if reason is not None:
        raise WeightsNotFoundError(
            f"{name}: the weights file is not on this machine and {reason}. Download {url} and put it at "
            f"{path} (or pass any path as the checkpoint: model.init_args.checkpoint / --checkpoint)."
        )
    return download_url(name, url, path, None)


def hub_missing_message(name: str, repo: str, revision: str | None, filename: str, why: str,
                        checkpoint_hint: bool) -> str:
    """One line: what is missing, why it was not fetched, where to get it and where to put it."""
    fill = (f"fill the Hugging Face cache {hub_cache()} with `medtransfer weights download {name}` (or "
            f"`hf download {repo} {filename}`) where there is network, then copy it here or point "
            f"{HUB_CACHE_ENV} at it")
    if checkpoint_hint:
        fill = (f"Download {hub_url(repo, revision, filename)} and pass it as the checkpoint "
                f"(model.init_args.checkpoint / --checkpoint), or {fill}")
    else:
        fill = fill[0].upper() + fill[1:]
    return f"{name}: {filename} of {repo} is not on this machine and {why}. {fill}."
