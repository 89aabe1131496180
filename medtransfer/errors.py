"""The base of every error that is about what a user gave medtransfer (data, weights, stores, configs).

Such errors carry a message that says what is wrong, where, and what to do, so the ``medtransfer`` command
prints the message alone instead of a traceback through Lightning and jsonargparse (which wrap errors raised
while a config is instantiated). ``MEDTRANSFER_TRACEBACK=1`` shows the full traceback.
"""

from __future__ import annotations


class MedTransferError(Exception):
    """A problem with the user's input whose message is the whole story."""


def find_user_error(error: BaseException | None) -> MedTransferError | None:
    """The first MedTransferError in ``error``'s chain of causes, if any."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, MedTransferError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None
