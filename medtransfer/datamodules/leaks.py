"""What a leak found between splits becomes (``patient_splits``, ``copies``): in splits the user made, an
error saying how to fix them; in a published dataset's official splits, which its papers report on, a warning
naming who declared them."""

from __future__ import annotations

import logging

SHOWN = 3  # leaks named in a message


def named(leaks: list[str]) -> str:
    """The first few leaks, ``; ``-separated, and how many more there are."""
    more = f" and {len(leaks) - SHOWN} more" if len(leaks) > SHOWN else ""
    return "; ".join(leaks[:SHOWN]) + more


def refuse_or_warn(log: logging.Logger, dataset: str, problem: str, declared_by: str | None,
                   error: type[Exception], fix: str) -> None:
    """Raise ``error`` for splits the user made (``declared_by`` None), or warn on ``log``."""
    if declared_by is None:
        raise error(f"{dataset}: {problem}; {fix}")
    log.warning("%s: %s (kept: %s)", dataset, problem, declared_by)
