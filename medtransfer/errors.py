"""The base of every error that is about what a user gave medtransfer (data, weights, stores, configs).

Such errors carry a message that says what is wrong, where, and what to do, so the ``medtransfer`` command
prints the message alone instead of a traceback through Lightning and jsonargparse (which wrap errors raised
while a config is instantiated). ``MEDTRANSFER_TRACEBACK=1`` shows the full traceback.

A DataLoader worker cannot pass its exception on: torch re-raises a new one of the same type whose message is
the worker's whole traceback (or a ``RuntimeError`` when the type cannot be built from one string).
``user_error_message`` recovers the original message from either.
"""

from __future__ import annotations

import re
import sys

# torch.utils.data's ExceptionWrapper.reraise: "Caught <type> <where>.\nOriginal <formatted traceback>"
WORKER_RERAISE = re.compile(r"Caught (\w+) (in [^\n]*?)\.\nOriginal Traceback \(most recent call last\):\n")
# a formatted traceback's line naming the exception raised: "<module>.<Class>: <message>" (a message
# without text: "<module>.<Class>" alone, which then is the whole message)
RAISED_LINE = re.compile(r"^(\w+(?:\.\w+)*)\.(\w+)(?:: |$)", re.MULTILINE)


class MedTransferError(Exception):
    """A problem with the user's input whose message is the whole story."""


class ConfigValueError(MedTransferError, ValueError):
    """A config value outside what it can be (a fraction of 0, a size below 1, an unknown choice).

    The message names the key as a config spells it (``data.init_args.train_fraction``), the value and what
    would do.
    """


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message (its type's name when it has none).

    This quotes a library's error inside one of ours without its multi-line detail.
    """
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


def find_user_error(error: BaseException | None) -> MedTransferError | None:
    """The first MedTransferError in ``error``'s chain of causes, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MedTransferError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def user_error_message(error: BaseException | None) -> str | None:
    """What the user is told about ``error``: the message of the user error behind it, or None.

    The message of the first MedTransferError in its chain of causes (also one that a DataLoader worker
    raised), without any traceback text; None when the chain holds no user error (a bug: the traceback is
    shown).
    """
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MedTransferError):
            return _worker_message(str(error), type(error)) or str(error)
        message = _worker_message(str(error), None)
        if message is not None:
            return message
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def _worker_message(text: str, error_type: type | None) -> str | None:
    """The original message of a MedTransferError that a DataLoader worker raised.

    It is read from the text torch re-raised it with; None when ``text`` is no such re-raise.

    Args:
        text: the re-raised exception's message.
        error_type: the re-raised exception's type (None: torch could not rebuild it and raised a
            RuntimeError; the type is then read from the traceback).
    """
    caught = WORKER_RERAISE.match(text)
    if caught is None:
        return None
    # the exception that reached the worker's loop is the one after the last traceback heading (earlier ones
    # are its causes)
    start = text.rfind("Traceback (most recent call last):\n")
    last = next((m for m in RAISED_LINE.finditer(text, start) if m.group(2) == caught.group(1)), None)
    if last is None:
        return None
    if error_type is None:
        error_type = getattr(sys.modules.get(last.group(1)), last.group(2), None)  # never imports
        if not isinstance(error_type, type) or not issubclass(error_type, MedTransferError):
            return None
    return text[last.end():].rstrip("\n") or error_type.__name__
