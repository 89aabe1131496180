"""One flag style for every verb: underscores, as LightningCLI spells its options (``--test_after_fit``,
``--ckpt_path``). The tool verbs once had dashed flags (``--dry-run``, ``--output-dir``); those spellings
still work, with a warning, so existing scripts and SLURM files keep running: ``underscore_flags`` rewrites
them before parsing, and ``--help`` shows only the underscore spelling. ``VerbParser`` says a tool verb's
mistakes in one line."""

from __future__ import annotations

import argparse
import logging
import sys
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


class VerbParser(argparse.ArgumentParser):
    """``argparse``'s parser for a tool verb, whose mistakes are one line naming the option, with where the
    options are listed (the usage text only with ``--help``), as the run verbs say theirs."""

    def error(self, message: str):
        sys.stderr.write(f"{self.prog}: error: {message} (see `{self.prog} --help`)\n")
        sys.exit(2)
