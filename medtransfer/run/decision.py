"""The decision thresholds a tested run records in results.json (``extra.decision``), for the thresholded
metric the grid's report shows beside each primary metric (``grid.decisions``: balanced accuracy of the test
decisions).

At the end of every test of a binary or multilabel task, each class's threshold is chosen on the labelled
VALIDATION split with the weights just tested (after ``fit``: the best checkpoint), by the run's
``decision_rule`` (``outputs.thresholds``). The rule defaults to ``youden``: Youden's J (sensitivity +
specificity - 1) is twice balanced accuracy minus one, so the threshold maximising J on validation maximises
exactly the metric the report shows. Multiclass tasks record nothing: the most probable class decides.

The validation probabilities come from the model's own ``predict_step`` on the split the trainer's datamodule
serves, so every head gets them its own way: images through the network (Finetune, end-to-end DVME, frozen
heads without ``feature_cache``), the validation feature store (LinearProbe, LinearSweep's selected head,
frozen DVME), or the vote against the memory bank loaded for the test (kNN). Under DDP each rank scores its
shard and the shards are gathered, as ``medtransfer predict`` chooses its thresholds.

Choosing thresholds never fails a run: a run without a labelled validation split, or whose choice fails,
records ``{"rule": null, "reason": ...}`` and logs the reason as a warning.
"""

from __future__ import annotations

import logging

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from ..callbacks import gather_from_ranks
from ..errors import first_line
from ..outputs.scoring import chosen_decision, joined_outputs, validation_parts

log = logging.getLogger(__name__)


class DecisionRecorder(Callback):
    """Chooses the decision thresholds at the end of each test (``decision_record``); ``record`` keeps them
    for results.json."""

    def __init__(self, rule: str) -> None:
        self.rule = rule
        self.record: dict | None = None

    def on_test_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record = None

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.record = decision_record(trainer, pl_module, self.rule)


def record_decisions(trainer: pl.Trainer, rule: str) -> None:
    """Give the trainer one ``DecisionRecorder`` with ``rule`` (a trainer used for several runs keeps one)."""
    trainer.callbacks[:] = [c for c in trainer.callbacks if not isinstance(c, DecisionRecorder)]
    trainer.callbacks.append(DecisionRecorder(rule))


def decision_record(trainer: pl.Trainer, pl_module, rule: str) -> dict | None:
    """``Decision.describe`` of the thresholds ``rule`` chooses on the validation split; None for multiclass;
    ``{"rule": None, "reason": ...}`` when none could be chosen. Collective under DDP."""
    task = getattr(pl_module, "task", None)
    if task is None or task.kind == "multiclass":
        return None
    shards = gather_from_ranks(trainer, [rank_outputs(trainer, pl_module)])
    failed = next((shard for shard in shards if isinstance(shard, str)), None)
    if failed is not None:
        return unchosen(trainer, failed)
    try:
        probs, labels = joined_outputs([part for shard in shards for part in shard])
        return chosen_decision(task, probs, labels, rule).describe(task)
    except Exception as error:  # a run that would finish must not fail here: the reason is recorded instead
        return unchosen(trainer, first_line(error))


def rank_outputs(trainer: pl.Trainer, pl_module) -> list | str:
    """This rank's validation parts (``outputs.scoring.validation_parts``), or why it has none: every rank
    must reach the gather, so no error leaves here."""
    if getattr(trainer, "datamodule", None) is None:
        return "the run was given no datamodule to read a validation split from"
    try:
        return validation_parts(trainer, pl_module)
    except Exception as error:  # see decision_record
        return first_line(error)


def unchosen(trainer: pl.Trainer, reason: str) -> dict:
    """The record of a test whose thresholds could not be chosen; the reason is logged once."""
    if trainer.is_global_zero:
        log.warning("no decision thresholds chosen on the validation split (results.json records why; the "
                    "report decides at 0.5): %s", reason)
    return {"rule": None, "reason": reason}
