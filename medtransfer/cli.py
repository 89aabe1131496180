"""The ``medtransfer`` command: which verb, then hand over. ``fit``, ``validate``, ``test`` and ``predict``
are parsed by ``medtransfer.run.config`` and run by ``medtransfer.run`` (what Python users call too); the tool
verbs live in ``medtransfer.verbs``. Nothing heavy is imported before the verb asks for it, so ``--help`` of a
tool verb answers at once.

Every error about the user's input (a ``MedTransferError`` anywhere in the chain of causes) ends the command
with its one-line message and exit status 2; a signal ends it with 128 + the signal (``run.signals``);
``MEDTRANSFER_TRACEBACK=1`` shows tracebacks."""

from __future__ import annotations

import difflib
import importlib
import os
import sys
from typing import NoReturn

TRAINING_VERBS = {
    "fit": "train, then validate and test the best checkpoint (results.json)",
    "validate": "score a checkpoint on the validation split",
    "test": "score a checkpoint on the test split, with confidence intervals",
    "predict": "score new images with a checkpoint (predictions.csv)",
}
# verbs outside the training run: name -> (module with main(argv) -> exit status, one-line help)
TOOL_VERBS: dict[str, tuple[str, str]] = {
    "extract": ("medtransfer.verbs.extract", "compute (or reuse) the feature stores of a frozen backbone"),
    "weights": ("medtransfer.verbs.weights", "list, check and download pretrained weights"),
    "benchmark": ("medtransfer.verbs.benchmark", "run a grid of experiments and report tables and plots"),
    "prepare": ("medtransfer.verbs.prepare", "check a dataset, report its splits, write them out"),
    "export": ("medtransfer.verbs.export",
               "write a trained model as ONNX or TorchScript, with its model card"),
}


def main(argv: list[str] | None = None) -> None:
    """The ``medtransfer`` command on ``argv`` (the process's arguments by default)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        sys.exit(0 if argv else 2)
    verb, args = argv[0], argv[1:]
    try:
        from .runtime.logs import configure_logging

        configure_logging()
        status = run_verb(verb, args)
        if status or verb in TOOL_VERBS:  # a training verb that ended well returns, as Lightning's did
            sys.exit(status)
    except KeyboardInterrupt:
        stopped_by_ctrl_c(verb)
    except Exception as error:
        end_on_error(error)
    finally:
        close_process_group()


def stopped_by_ctrl_c(verb: str) -> NoReturn:
    """Ctrl-C where no run handles it (a tool verb such as ``extract``, or a run still being set up): status
    130 and one line instead of a traceback. Every file medtransfer writes appears whole or not at all, so
    the same command finishes the work."""
    print(f"medtransfer: {verb} stopped by SIGINT; every file written is whole. Run the same command again "
          "to finish (what was written is reused)", file=sys.stderr)
    sys.exit(130)


def run_verb(verb: str, args: list[str]) -> int:
    """Run ``verb``; its exit status."""
    if verb in TOOL_VERBS:
        return importlib.import_module(TOOL_VERBS[verb][0]).main(args)
    if verb in TRAINING_VERBS:
        from .run.command import run_command

        return run_command(verb, args)
    close = difflib.get_close_matches(verb, [*TRAINING_VERBS, *TOOL_VERBS], n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    exit_on_user_error(f"medtransfer: error: unknown verb {verb!r}{hint} (`medtransfer --help` lists them)")


def end_on_error(error: Exception) -> NoReturn:
    """A user error's message and exit status 2; a rank stopped by another rank's user error likewise; any
    other error is a bug, and its traceback is shown."""
    from .errors import user_error_message

    if traceback_on_error():
        raise error
    if (message := user_error_message(error)) is not None:
        exit_on_user_error(f"medtransfer: error: {message}")
    rank_exit = sys.modules.get("medtransfer.runtime.rank_exit")  # imported only by a run that started ranks
    if rank_exit is not None and (stopped := rank_exit.stopped_rank_message()) is not None:
        exit_on_user_error(stopped)
    raise error


def traceback_on_error() -> bool:
    """Whether ``MEDTRANSFER_TRACEBACK`` asks for tracebacks. A value it cannot read is said on a line of its
    own and read as unset: it must not hide the error it was set to show (it was a traceback of its own)."""
    from .runtime.settings import SettingError, traceback_wanted

    try:
        return traceback_wanted()
    except SettingError as unreadable:
        print(f"medtransfer: warning: {unreadable}; the error below is shown without its traceback",
              file=sys.stderr)
        return False


def exit_on_user_error(line: str) -> NoReturn:
    """Print ``line`` and end with status 2. A DDP rank ends at once once its process group is closed: the
    interpreter's own exit after a failed collective took from 10 s to over a minute (in the teardown of the
    communication objects), while the rank's launcher waited."""
    print(line, file=sys.stderr)
    if close_process_group():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(2)
    sys.exit(2)


def close_process_group() -> bool:
    """End a DDP run's process group before the interpreter exits; whether it had more than one rank. Left
    to the exit handlers, its communication threads were sometimes still alive when their objects were
    destroyed, and the process aborted ("terminate called without an active exception", exit status 134)
    after writing its results."""
    dist = sys.modules.get("torch.distributed")  # no torch imported: no process group
    if dist is None or not (dist.is_available() and dist.is_initialized()):
        return False
    several = dist.get_world_size() > 1
    dist.destroy_process_group()
    return several


def usage() -> str:
    lines = ["usage: medtransfer <verb> [options]   (`medtransfer <verb> --help` for a verb's options)", ""]
    lines += [f"  {name:<10} {text}" for name, text in TRAINING_VERBS.items()]
    lines += [f"  {name:<10} {text}" for name, (_, text) in TOOL_VERBS.items()]
    lines += ["", "Python: medtransfer.run.fit(...) and the other verbs do what the command does "
              "(docs/python-api.md)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
