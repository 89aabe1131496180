"""Lightning's refusals of a callback's monitor, raised inside fit as tracebacks, are one named line
(``run.trainer_values.missing_monitor``)."""

from __future__ import annotations

from pytorch_lightning.utilities.exceptions import MisconfigurationException

from medtransfer.errors import ConfigValueError
from medtransfer.run.trainer_values import missing_monitor


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
