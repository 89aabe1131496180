"""medtransfer's runs as plain functions.

``fit``, ``validate``, ``test``, ``predict`` and ``pretrain`` take a config (files, a dict, command-line style
arguments) or the objects themselves, and do everything the ``medtransfer`` command does after parsing; the
command, the benchmark grid and the tests call them. See docs/python-api.md.
"""

from .api import default_trainer, fit, predict, pretrain, test, validate
from .options import Intervals, RunOptions
from .result import RunResult

__all__ = ["Intervals", "RunOptions", "RunResult", "default_trainer", "fit", "predict", "pretrain", "test",
           "validate"]
