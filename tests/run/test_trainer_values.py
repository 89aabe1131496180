"""Lightning's refusals of a callback's monitor, raised inside fit as tracebacks, are one named line
(``run.trainer_values.missing_monitor``); a fit that nothing would end is refused."""

from __future__ import annotations

import pytest
from pytorch_lightning.utilities.exceptions import MisconfigurationException

from medtransfer.errors import ConfigValueError
from medtransfer.run.trainer_values import check_trainer_values, missing_monitor


def test_a_monitor_no_metric_answers_is_named_with_the_metrics_logged_and_without_lightning_s_hint():
    stopping = missing_monitor(RuntimeError(
        "Early stopping conditioned on metric `val_auroc` which is not available. Pass in or modify your "
        "`EarlyStopping` callback to use any of the following: `val/auroc`, `val/loss`"))
    assert isinstance(stopping, ConfigValueError) and str(stopping) == (
        "trainer.callbacks: Early stopping conditioned on metric `val_auroc` which is not available. Pass in "
        "or modify your `EarlyStopping` callback to use any of the following: `val/auroc`, `val/loss` (a "
        "callback's monitor names one of these)")
    checkpoint = missing_monitor(MisconfigurationException(
        "`ModelCheckpoint(monitor='val_auroc')` could not find the monitored key in the returned metrics: "
        "['val/auroc']. HINT: Did you call `log('val_auroc', value)` in the `LightningModule`?"))
    assert str(checkpoint) == ("trainer.callbacks: `ModelCheckpoint(monitor='val_auroc')` could not find the "
                               "monitored key in the returned metrics: ['val/auroc']. (a callback's monitor "
                               "names one of these)")
    assert missing_monitor(RuntimeError("CUDA out of memory")) is None


STOPPING = {"class_path": "pytorch_lightning.callbacks.EarlyStopping"}


@pytest.mark.parametrize("ends", [{"max_steps": 100}, {"max_time": "00:01:00:00"}, {"callbacks": [STOPPING]}],
                         ids=["max_steps", "max_time", "EarlyStopping"])
def test_no_epoch_limit_is_fine_when_something_else_ends_training(ends):
    check_trainer_values({"max_epochs": -1, "max_steps": -1} | ends, "fit")
    with pytest.raises(ConfigValueError, match="fit would train until it is killed and never test"):
        check_trainer_values({"max_epochs": -1, "max_steps": -1}, "fit")
    check_trainer_values({"max_epochs": -1}, "test")  # only fit trains
