"""What a feature store's contents depend on, and where the store of those inputs lives."""

from __future__ import annotations

import json
import re
from pathlib import Path

import albumentations as A
import torch

from .. import __version__
from ..backbones.backbone import Backbone, state_dict_fingerprint
from ..utils.hashing import json_digest

STORE_DTYPE = "float16"


def store_fingerprint(backbone: Backbone, datamodule, split: str,
                      autocast: torch.dtype | None = None) -> dict:
    """Every input of the embeddings of ``split``: backbone weights (hashed as they are now, so weights loaded
    after construction count), embedding recipe, device-side resize and normalisation, the dataset
    (``data_fingerprint()``: its samples and labels), the split, its pixels (``Source.pixel_stamps``: each
    image file's size and modification time, each in-memory image's digest, so that an image rewritten under
    its name makes a new store), the eval transform, the image size, the store dtype, the package version
    and, for a store extracted under autocast, its dtype (``autocast``: ``bfloat16``; a float32 extraction has
    no ``autocast`` entry)."""
    fingerprint = as_json(
        {
            "backbone": {
                "name": backbone.name,
                "weights": state_dict_fingerprint(backbone.model.state_dict()),
                "embedding": backbone.embedding,
                "embed_dim": backbone.embed_dim,
                "resize_to": backbone.resize_to,
                "preprocessing": backbone.preprocessing.to_dict(),
            },
            "data": datamodule.data_fingerprint(),
            "split": split,
            "transform": describe_transform(datamodule.eval_transform()),
            "image_size": datamodule.image_size,
            "dtype": STORE_DTYPE,
            "medtransfer_version": __version__,
        }
    )
    stamps = datamodule.sources()[split].pixel_stamps()
    if stamps is not None:
        fingerprint["pixels"] = json_digest(stamps)
    if autocast is not None:
        fingerprint["autocast"] = str(autocast).removeprefix("torch.")
    return fingerprint


def as_json(document: dict) -> dict:
    """The document as it reads back from JSON (tuples become lists), so stored and fresh fingerprints
    compare."""
    return json.loads(json.dumps(document, sort_keys=True, default=str))


def describe_transform(transform: A.BasicTransform) -> dict | str:
    """The transform as albumentations serialises it (its repr when a custom step cannot be serialised)."""
    try:
        return A.to_dict(transform)["transform"]
    except (NotImplementedError, AttributeError, TypeError, ValueError):
        return repr(transform)


def fingerprint_key(fingerprint: dict) -> str:
    """16 hex digits of the SHA-256 of the fingerprint's canonical JSON."""
    return json_digest(fingerprint)


def store_path(root: str | Path, fingerprint: dict) -> Path:
    """``<root>/<dataset>/<backbone>/<split>-<key>``: readable names, and the key makes every input count."""
    dataset = _safe(str(fingerprint["data"].get("dataset", "dataset")))
    backbone = _safe(str(fingerprint["backbone"]["name"]))
    return Path(root) / dataset / backbone / f"{_safe(fingerprint['split'])}-{fingerprint_key(fingerprint)}"


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "unnamed"
