"""Every ``MEDTRANSFER_*`` environment variable medtransfer reads, in one place: its name, what it changes,
and its value as the code uses it. No other module reads them (``tests/runtime/test_settings.py`` checks),
and ``docs/settings.md`` lists the same table.

Environment variables are for what differs between machines and job launchers (a cluster's cache folder, an
offline node, a SLURM job's grace time); what a run computes belongs in its config, where it is recorded."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ..errors import MedTransferError

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")


@dataclass(frozen=True)
class Setting:
    name: str
    default: str
    meaning: str


SETTINGS = (
    Setting("MEDTRANSFER_LOG_LEVEL", "INFO", "the level of medtransfer's messages on stderr (DEBUG, INFO, "
            "WARNING, ERROR, CRITICAL)"),
    Setting("MEDTRANSFER_TRACEBACK", "unset", "1: a user error shows its full traceback instead of one line"),
    Setting("MEDTRANSFER_PROGRESS", "unset: bars on a terminal only", "1: progress bars even when stderr is "
            "a file; 0: never"),
    Setting("MEDTRANSFER_NUM_WORKERS", "unset: the CPUs per process", "DataLoader workers per process when "
            "the config leaves data.init_args.num_workers unset"),
    Setting("MEDTRANSFER_FEATURES", "./features", "where frozen heads keep feature stores when the config "
            "leaves model.init_args.features_dir unset"),
    Setting("MEDTRANSFER_CACHE", "~/.cache/medtransfer", "where large .npz arrays are unpacked for "
            "memory-mapping (its npz/ folder)"),
    Setting("MEDTRANSFER_OFFLINE", "unset", "1: never try the network for weights (HF_HUB_OFFLINE=1 too)"),
    Setting("MEDTRANSFER_REQUEUE_GRACE_S", "unset: stop at once", "seconds a SLURM job may still train after "
            "its requeue signal to finish the epoch (the benchmark's SLURM scripts set it)"),
    Setting("MEDTRANSFER_PYTHON", "the Python that wrote the script", "the Python a benchmark's SLURM "
            "scripts run (read by the scripts, not by Python)"),
)


class SettingError(MedTransferError, ValueError):
    """An environment variable whose value medtransfer cannot use."""


def raw(name: str) -> str:
    """The variable's value, stripped ('' when unset); ``name`` must be one of ``SETTINGS``."""
    if name not in {setting.name for setting in SETTINGS}:
        raise KeyError(f"{name} is not a medtransfer setting (runtime/settings.py lists them)")
    return os.environ.get(name, "").strip()


def switch(name: str) -> bool | None:
    """A yes/no variable: True, False, or None when unset or empty."""
    value = raw(name).lower()
    if not value:
        return None
    if value in TRUE_WORDS:
        return True
    if value in FALSE_WORDS:
        return False
    words = ", ".join(TRUE_WORDS + FALSE_WORDS)
    raise SettingError(f"{name}={value!r}: expected one of {words} (or unset it)")


def traceback_wanted() -> bool:
    return switch("MEDTRANSFER_TRACEBACK") is True


def log_level_name() -> str:
    return raw("MEDTRANSFER_LOG_LEVEL").upper()


def progress_forced() -> bool | None:
    return switch("MEDTRANSFER_PROGRESS")


def num_workers() -> int | None:
    value = raw("MEDTRANSFER_NUM_WORKERS")
    if not value:
        return None
    if not value.isdigit():
        raise SettingError(f"MEDTRANSFER_NUM_WORKERS={value!r}: expected a number of DataLoader workers "
                           "(0 or more), or unset it")
    return int(value)


def features_dir() -> str | None:
    return raw("MEDTRANSFER_FEATURES") or None


def cache_root() -> Path:
    return Path(raw("MEDTRANSFER_CACHE") or Path.home() / ".cache" / "medtransfer").expanduser()


def offline() -> bool:
    """Whether weights may not be downloaded (``offline_variable``)."""
    return offline_variable() is not None


def offline_variable() -> str | None:
    """The variable that forbids the network: ``MEDTRANSFER_OFFLINE``, or Hugging Face's ``HF_HUB_OFFLINE``
    (which medtransfer honours too); None when neither is set."""
    if switch("MEDTRANSFER_OFFLINE") is True:
        return "MEDTRANSFER_OFFLINE"
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in TRUE_WORDS:
        return "HF_HUB_OFFLINE"
    return None


def requeue_grace_s() -> float | None:
    value = raw("MEDTRANSFER_REQUEUE_GRACE_S")
    try:
        return float(value) if value else None
    except ValueError:
        raise SettingError(f"MEDTRANSFER_REQUEUE_GRACE_S={value!r}: expected seconds (a number)") from None
