"""The local launcher: runs one after another, or ``parallel`` at once, each process given its own devices.

Each run is a ``medtransfer fit --ckpt_path last`` subprocess writing into its own folder (stdout and stderr
appended to ``output.log``).
Pretraining runs go first, and the runs that load a pretraining run's backbone wait for it (and are skipped
if it fails). Frozen-backbone runs that share feature stores wait for the first of them to finish, so every
(backbone, dataset) is extracted once. Ctrl-C stops the running processes; next time their runs continue from
their ``last.ckpt`` as SLURM tasks do (``attempt.py``: a failed run, another config's checkpoint or one
trained on a pretraining export that runs again is moved aside and the run starts afresh).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from .attempt import prepare_attempt
from .failures import Failure
from .plan import Run, run_waits
from .retention import drop_last_checkpoint, kept_message
from .spec import GridSpec, LocalSettings
from .state import LOG_FILE, RESULTS_FILE, attempt_failure, run_dir, run_record


class Handle(Protocol):
    def poll(self) -> int | None: ...

    def terminate(self) -> None: ...


Starter = Callable[[Run, Path, list[str], dict[str, str]], Handle]


def log_overrides(folder: Path) -> list[tuple[str, Any]]:
    """Point the run's logger (and so its checkpoints and results.json) at ``folder``."""
    return [
        ("trainer.logger.init_args.save_dir", str(folder)),
        ("trainer.logger.init_args.name", ""),
        ("trainer.logger.init_args.version", ""),
        ("trainer.default_root_dir", str(folder)),
    ]


def cli_command() -> list[str]:
    return [sys.executable, "-m", "medtransfer.cli"]


class Process:
    """A ``medtransfer fit`` subprocess in its own process group (so Ctrl-C can stop its workers too)."""

    def __init__(self, run: Run, folder: Path, argv: list[str], env: dict[str, str]) -> None:
        self.log = open(folder / LOG_FILE, "a")  # a continued run's log goes on; closed when the process ends
        self.popen = subprocess.Popen(
            [*cli_command(), *argv],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **env},
            start_new_session=True,
        )

    def poll(self) -> int | None:
        code = self.popen.poll()
        if code is not None and not self.log.closed:
            self.log.close()
        return code

    def terminate(self) -> None:
        if self.popen.poll() is None:
            os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.popen.pid, signal.SIGKILL)
        self.log.close()


@dataclass
class Outcome:
    run: Run
    code: int
    seconds: float
    skipped_for: str | None = None  # the failed pretraining run this run needed; it was not started
    failure: Failure | None = None  # what its results.json says went wrong (e.g. the loss diverged)

    @property
    def failed(self) -> bool:
        return self.code != 0 or self.failure is not None


def device_slots(settings: LocalSettings) -> list[tuple[int, ...]]:
    """Disjoint device groups, one per concurrent run (on CPU, empty: runs keep the config's devices)."""
    if not settings.devices:
        return [()] * settings.parallel
    k = settings.devices_per_run
    slots = [tuple(settings.devices[i : i + k]) for i in range(0, len(settings.devices) - k + 1, k)]
    if not slots:
        raise ValueError(f"local.devices {list(settings.devices)} has fewer than devices_per_run={k} devices")
    return slots[: settings.parallel]


def slot_env(slot: tuple[int, ...], parallel: int) -> tuple[dict[str, str], list[tuple[str, Any]]]:
    """Environment and overrides that give a run its devices (or its share of the CPU threads)."""
    if slot:
        return {"CUDA_VISIBLE_DEVICES": ",".join(map(str, slot))}, [("trainer.devices", len(slot))]
    if parallel > 1 and "OMP_NUM_THREADS" not in os.environ:
        return {"OMP_NUM_THREADS": str(max(1, (os.cpu_count() or 1) // parallel))}, []
    return {}, []


def run_local(
    spec: GridSpec,
    output_dir: Path,
    runs: list[Run],
    settings: LocalSettings,
    start: Starter = Process,
    say: Callable[[str], None] = print,
) -> list[Outcome]:
    """Run ``runs`` (all unfinished); returns every outcome. Pretraining runs go first; runs wait for the
    pretraining runs they need (and are skipped when one fails) and for the run that extracts their feature
    stores; extracting runs go next."""
    waits = run_waits(runs)
    awaited = set().union(*waits.values())
    slots = device_slots(settings)
    free = list(range(len(slots)))
    queue = sorted(runs, key=lambda r: (not r.pretraining, r.id not in awaited))  # stable: grid order kept
    active: dict[int, tuple[Run, Handle, float]] = {}
    ended: set[str] = set()
    failed: set[str] = set()
    outcomes: list[Outcome] = []
    try:
        while queue or active:
            for run in [r for r in queue if failed & set(r.required_ids)]:
                queue.remove(run)
                ended.add(run.id)
                outcomes.append(Outcome(run, 1, 0.0, skipped_for=sorted(failed & set(run.required_ids))[0]))
                say(describe_outcome(outcomes[-1], output_dir / "runs" / run.dir_name))
            for slot_index in list(free):
                ready = next((r for r in queue if waits[r.id] <= ended), None)
                if ready is None:
                    break
                queue.remove(ready)
                free.remove(slot_index)
                env, extra = slot_env(slots[slot_index], len(slots))
                folder = run_dir(output_dir, ready)
                # ckpt_path last: the run continues a killed attempt's last.ckpt, which begin_attempt kept
                argv = ready.fit_args(extra=[*log_overrides(folder), *extra, ("ckpt_path", "last")])
                said = begin_attempt(spec, output_dir, ready, argv, {r.id for r in runs})
                say(
                    f"[{len(outcomes) + len(active) + 1}/{len(runs)}] {ready.id}"
                    + (f" on devices {','.join(map(str, slots[slot_index]))}" if slots[slot_index] else "")
                    + f": {said}"
                )
                active[slot_index] = (ready, start(ready, folder, argv, env), time.perf_counter())
            for slot_index, (run, handle, started) in list(active.items()):
                code = handle.poll()
                if code is None:
                    continue
                del active[slot_index]
                free.append(slot_index)
                ended.add(run.id)
                outcome = Outcome(run, code, time.perf_counter() - started,
                                  failure=attempt_failure(output_dir / "runs" / run.dir_name))
                if outcome.failed:
                    failed.add(run.id)
                outcomes.append(outcome)
                say(describe_outcome(outcome, output_dir / "runs" / run.dir_name))
                if not outcome.failed and not spec.checkpoints.keep_last:
                    release_checkpoint(output_dir / "runs" / run.dir_name, say)
            if active:
                time.sleep(0.2)
    except BaseException:
        for run, handle, _ in active.values():
            handle.terminate()
            say(f"stopped {run.id}; next time it continues from its last.ckpt (or starts over without one)")
        raise
    return outcomes


def begin_attempt(spec: GridSpec, output_dir: Path, run: Run, argv: list[str], launched: set[str]) -> str:
    """Ready the run's folder (``attempt.prepare_attempt``); returns what was done. A checkpoint trained on
    the export of a pretraining run that this launch runs again is stale: the run starts afresh."""
    redone = sorted(set(run.required_ids) & launched)
    stale = f"was trained on the backbone of {redone[0]}, which runs again" if redone else None
    return prepare_attempt(run_dir(output_dir, run), run_record(spec, run, argv), stale)


def release_checkpoint(folder: Path, say: Callable[[str], None]) -> None:
    """Delete a finished run's ``last.ckpt`` (``retention``); a deletion the file system refuses is said."""
    try:
        drop_last_checkpoint(folder)
    except OSError as error:
        say(kept_message(folder, error))


def describe_outcome(outcome: Outcome, folder: Path) -> str:
    if outcome.skipped_for is not None:
        return f"SKIPPED {outcome.run.id}: the pretraining run {outcome.skipped_for} it needs failed"
    if outcome.failure is not None:
        return (f"FAILED {outcome.run.id} ({outcome.failure.describe()}; exit code {outcome.code}, "
                f"{outcome.seconds:.0f} s): never scored; redone on the next launch; folder: {folder}")
    if outcome.code != 0:
        tail = ""
        log = folder / LOG_FILE
        if log.is_file():
            tail = "\n    " + "\n    ".join(log.read_text(errors="replace").splitlines()[-15:])
        return (
            f"FAILED {outcome.run.id} (exit code {outcome.code}, {outcome.seconds:.0f} s); log: {log}{tail}"
        )
    try:
        test = json.loads((folder / RESULTS_FILE).read_text())["metrics"].get("test", {})
        scores = ", ".join(f"{k}={v:.4f}" for k, v in test.items() if "/" not in k and k != "loss")
    except (OSError, ValueError, KeyError, AttributeError):
        scores = "no results.json"
    if outcome.run.pretraining:
        return f"done {outcome.run.id} in {outcome.seconds:.0f} s (pretraining: backbone exported)"
    return f"done {outcome.run.id} in {outcome.seconds:.0f} s: test {scores}"
