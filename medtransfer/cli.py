"""The ``medtransfer`` command: which verb, then hand over. ``fit``, ``validate``, ``test`` and ``predict``
are parsed by ``medtransfer.run.config`` and run by ``medtransfer.run`` (what Python users call too); the tool
verbs live in ``medtransfer.verbs``. Nothing heavy is imported before the verb asks for it, so ``--help`` of a
tool verb answers at once.

Every error about the user's input (a ``MedTransferError`` anywhere in the chain of causes) ends the command
with its one-line message and exit status 2; a signal ends it with 128 + the signal (``runtime.signals``);
``MEDTRANSFER_TRACEBACK=1`` shows tracebacks."""

from __future__ import annotations

import difflib
import importlib
import sys

from .runtime.exits import close_process_group, end_on_error, exit_on_user_error, stopped
from .runtime.signals import RunStopped, stop_on_signals

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
    "feature-map": ("medtransfer.verbs.feature_map",
                    "t-SNE/UMAP maps of stored features per backbone, with class separation"),
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
        with stop_on_signals():
            status = run_verb(verb, args)
        if status or verb in TOOL_VERBS:  # a training verb that ended well returns, as Lightning's did
            sys.exit(status)
    except RunStopped as stop:  # a tool verb, or a run still being set up (a run says where it stopped)
        stopped(verb, stop.signum, stop.status)
    except KeyboardInterrupt:  # Ctrl-C before the handlers were installed
        stopped(verb, 2, 130)
    except Exception as error:
        end_on_error(error)
    finally:
        close_process_group()


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


def usage() -> str:
    lines = ["usage: medtransfer <verb> [options]   (`medtransfer <verb> --help` for a verb's options)", ""]
    lines += [f"  {name:<12} {text}" for name, text in TRAINING_VERBS.items()]
    lines += [f"  {name:<12} {text}" for name, (_, text) in TOOL_VERBS.items()]
    lines += ["", "Python: medtransfer.run.fit(...) and the other verbs do what the command does "
              "(docs/python-api.md)"]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
