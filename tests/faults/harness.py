"""The fault matrix's machinery: a case injects one fault into one medtransfer operation, and the harness
records what medtransfer did (success with checked data, or its exit status and one-line message) and whether
any file written before the fault (results, checkpoints, stores, caches, splits) changed or vanished."""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import os
import re
import subprocess
import sys
import time
import traceback
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from unittest import mock

REPO = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).with_name("driver.py")
STOPPED = (130, 143)  # 128 + SIGINT, 128 + SIGTERM: a run the user stopped, ended as the shell expects


@dataclass
class Outcome:
    """What medtransfer did: ``exit_code`` 0 with ``data_ok`` (the output was checked against the expected
    data), or a non-zero exit status and the last line it printed."""

    exit_code: int
    message: str = ""
    data_ok: bool | None = None

    @property
    def did(self) -> str:
        if self.exit_code == 0:
            return "success, data correct" if self.data_ok else "success, DATA WRONG"
        return f"exit {self.exit_code}: {self.message}"


@dataclass
class Case:
    name: str
    group: str
    fault: str
    run: Callable[[Workspace], Outcome]
    # "success", "error" (exit 2), "stopped" (a signal's 130 or 143, with how to go on) or "either"
    expect: str = "either"
    in_suite: bool = True  # cheap enough for pytest (the benchmark script runs every case)
    says: str = ""  # a regular expression that the message of an error or a stop must match (a named error)


@dataclass
class Row:
    case: Case
    outcome: Outcome
    damaged: list[str]
    seconds: float

    @property
    def passed(self) -> bool:
        outcome = self.outcome
        stopped = self.case.expect == "stopped" and outcome.exit_code in STOPPED
        good = (outcome.exit_code == 0 and outcome.data_ok) or (
            (outcome.exit_code == 2 or stopped) and bool(outcome.message)
        )
        wanted = {
            "success": outcome.exit_code == 0,
            "error": outcome.exit_code == 2,
            "stopped": outcome.exit_code in STOPPED,
        }.get(self.case.expect, True)
        return good and wanted and self.says_enough and not self.damaged

    @property
    def says_enough(self) -> bool:
        """An error's (or a stop's) message matches the case's ``says``: it names what went wrong."""
        return self.outcome.exit_code == 0 or re.search(self.case.says, self.outcome.message) is not None


@dataclass
class Workspace:
    """A case's folder, and the files it promised to keep (``protect``)."""

    root: Path
    protected: dict[Path, str] = field(default_factory=dict)

    def protect(self, *paths: Path) -> None:
        """Record the SHA-256 of every file under ``paths``: after the fault each must be there, unchanged."""
        for path in paths:
            files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
            for file in files:
                self.protected[file] = digest(file)

    def damaged(self) -> list[str]:
        lost = []
        for file, sha in self.protected.items():
            if not file.is_file():
                lost.append(f"{file.relative_to(self.root)} lost")
            elif digest(file) != sha:
                lost.append(f"{file.relative_to(self.root)} changed")
        return lost


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def run_case(case: Case, root: Path) -> Row:
    root.mkdir(parents=True, exist_ok=True)
    workspace = Workspace(root)
    started = time.perf_counter()
    try:
        outcome = case.run(workspace)
    except Exception as error:  # a harness-level failure is a failed row, not a crashed matrix
        outcome = Outcome(-1, f"case raised {type(error).__name__}: {error}\n{traceback.format_exc()}")
    return Row(case, outcome, workspace.damaged(), time.perf_counter() - started)


def call(function: Callable[[], object], check: Callable[[object], bool] | None = None) -> Outcome:
    """Run a Python API call as the command would: a MedTransferError is exit 2 with its message; any other
    exception is a crash (exit 1)."""
    from medtransfer.errors import find_user_error

    try:
        value = function()
    except Exception as error:
        user_error = find_user_error(error)
        if user_error is None:
            return Outcome(1, f"crash: {type(error).__name__}: {error}")
        return Outcome(2, first_line(str(user_error)))
    return Outcome(0, data_ok=True if check is None else bool(check(value)))


def cli(argv: list[str], check: Callable[[], bool] | None = None) -> Outcome:
    """``medtransfer.cli.main(argv)`` in this process; its exit status and last stderr line."""
    from medtransfer.cli import main

    stderr = io.StringIO()
    code = 0
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            main(argv)
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        if isinstance(exit_.code, str):
            stderr.write(exit_.code)
    except Exception as error:
        return Outcome(1, f"crash: {type(error).__name__}: {first_line(str(error))}")
    if code:
        return Outcome(code, error_line(stderr.getvalue()))
    return Outcome(0, data_ok=True if check is None else bool(check()))


def driver(
    args: list[str], check: Callable[[], bool] | None = None, env: dict | None = None, timeout: float = 300
) -> Outcome:
    """``tests/faults/driver.py args`` in a subprocess (the faults that end a process: SIGKILL)."""
    environment = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", **(env or {})}
    done = subprocess.run(
        [sys.executable, str(DRIVER), *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=timeout,
        cwd=REPO,
    )
    if done.returncode:
        return Outcome(done.returncode, error_line(done.stderr) or f"killed by signal {-done.returncode}")
    return Outcome(0, data_ok=True if check is None else bool(check()))


@contextlib.contextmanager
def environment(**variables: str) -> Iterator[None]:
    """The process's environment with ``variables`` set, for one case."""
    with mock.patch.dict(os.environ, variables):
        yield


def first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else ""


def error_line(text: str) -> str:
    """The line of ``text`` where the command's error starts (its message may go on over more lines)."""
    lines = [line for line in text.strip().splitlines() if "error:" in line]
    return lines[-1] if lines else last_line(text)


def last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else ""


@contextlib.contextmanager
def failing_writes(code: int, under: Path) -> Iterator[None]:
    """Every file or folder created under ``under`` fails with ``OSError(code)`` (ENOSPC: a full disk,
    EROFS: a read-only mount), for root too (whom permissions do not stop)."""
    under = str(under)
    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir

    def refused(path) -> bool:
        return isinstance(path, (str, os.PathLike)) and os.path.abspath(os.fspath(path)).startswith(under)

    def fail(path):
        raise OSError(code, os.strerror(code), os.fspath(path))

    def guarded_open(file, mode="r", *args, **kwargs):
        if refused(file) and any(c in mode for c in "wax+"):
            fail(file)
        return real_open(file, mode, *args, **kwargs)

    def guarded_os_open(path, flags, *args, **kwargs):
        if refused(path) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            fail(path)
        return real_os_open(path, flags, *args, **kwargs)

    def guarded_mkdir(path, *args, **kwargs):
        if refused(path) and not os.path.isdir(path):
            fail(path)
        return real_mkdir(path, *args, **kwargs)

    with (
        mock.patch("builtins.open", guarded_open),
        mock.patch("io.open", guarded_open),
        mock.patch("os.open", guarded_os_open),
        mock.patch("os.mkdir", guarded_mkdir),
    ):
        yield


@contextlib.contextmanager
def read_only(folder: Path) -> Iterator[None]:
    """``folder`` read-only: its permissions, and (for root, whom they do not stop) refused writes."""
    mode = folder.stat().st_mode
    folder.chmod(0o555)
    try:
        with failing_writes(errno.EROFS if os.geteuid() == 0 else errno.EACCES, folder):
            yield
    finally:
        folder.chmod(mode)


@contextlib.contextmanager
def disk_full_in(target: str, nth: int = 1) -> Iterator[None]:
    """``target`` (a dotted path to a function that writes, e.g. ``numpy.save``) raises
    ``OSError(ENOSPC)`` from its ``nth`` call on, as a full disk does in the middle of a write."""
    import importlib

    parts = target.split(".")
    for cut in range(len(parts) - 1, 0, -1):  # the longest importable prefix, then attributes
        try:
            owner = importlib.import_module(".".join(parts[:cut]))
            break
        except ImportError:
            continue
    for attribute in parts[cut:-1]:
        owner = getattr(owner, attribute)
    module, name = owner, parts[-1]
    real = getattr(module, name)
    calls = {"n": 0}

    def full(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] >= nth:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    with mock.patch.object(module, name, full):
        yield
