"""One flag style for every verb: underscores, as LightningCLI spells its options (``--test_after_fit``,
``--ckpt_path``). The tool verbs once had dashed flags (``--dry-run``, ``--output-dir``); those spellings
still work, with a warning, so existing scripts and SLURM files keep running: ``underscore_flags`` rewrites
them before parsing, and ``--help`` shows only the underscore spelling."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence

log = logging.getLogger(__name__)


def underscore_flags(argv: Sequence[str], renamed: Iterable[str], prog: str) -> list[str]:
    """``argv`` with each deprecated dashed spelling of the underscore flags ``renamed`` (e.g. ``--dry_run``
    for ``--dry-run``, also as ``--output-dir=DIR``) replaced by the underscore one, warning once per flag.
    Arguments after ``--`` stay as they are."""
    dashed = {"--" + flag.removeprefix("--").replace("_", "-"): flag for flag in renamed}
    out: list[str] = []
    warned: set[str] = set()
    for position, arg in enumerate(argv):
        if arg == "--":
            return out + list(argv[position:])
        name, equals, value = arg.partition("=")
        if name in dashed:
            if name not in warned:
                warned.add(name)
                log.warning("%s: %s is deprecated, use %s (the underscore style of every medtransfer verb)",
                            prog, name, dashed[name])
            arg = dashed[name] + equals + value
        out.append(arg)
    return out
