"""Errors of the weights registry and loader: each says which file, what was wrong and what to do."""

from __future__ import annotations

from ..errors import MedTransferError


class WeightsError(MedTransferError):
    """Base of the errors below."""


class WeightsNotFoundError(WeightsError, FileNotFoundError):
    """The weights file is not on disk and could not be downloaded."""


class ChecksumError(WeightsError):
    """A downloaded file does not have the published checksum."""


class CheckpointFormatError(WeightsError, ValueError):
    """The file cannot be read safely, or holds no state dict."""


class CheckpointMismatchError(WeightsError, ValueError):
    """The checkpoint's weights do not fit the model exactly (missing, unexpected or misshapen keys)."""


class UnknownBackboneError(WeightsError, ValueError):
    """A backbone name that is neither a registry name, a timm pretrained tag, an hf-hub: name nor a timm
    architecture."""


class StemError(WeightsError, ValueError):
    """A ``stem`` the backbone cannot take: an unknown one, a family without it, or pretrained weights it
    would not fit."""
