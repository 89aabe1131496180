"""A run's scores are of the run its config describes: the whole split it names, a model trained as asked and
chosen as asked. Lightning's debugging settings (``fast_dev_run``, ``overfit_batches``, ``limit_*_batches``)
would otherwise produce a results.json of one batch, or of part of a test set, that a table cites as the
split's score; and a fit that validates nothing would test its last weights under a config that says "the
best on validation".

``check_whole_splits`` refuses those settings when the config is read (so also at a grid's ``--dry_run``),
and for a Trainer built in Python before its run starts (``built_settings``). ``check_both_classes_scored``
refuses a binary fit whose validation or test split holds one class, where AUROC is undefined.
``training_record`` is results.json's ``training``: how many epochs and steps ran, what ended training, and
which checkpoint was tested and why; ``cut_short_warnings`` says when that is not what the config asked."""

from __future__ import annotations

from collections.abc import Mapping

from ..datamodules.errors import ClassSetError
from ..errors import ConfigValueError

# what each verb scores, and the limit that would make it part of that split
SCORED_SPLIT = {"fit": ("test", "limit_test_batches"), "test": ("test", "limit_test_batches"),
                "validate": ("val", "limit_val_batches"), "predict": ("predict", "limit_predict_batches")}
QUICK_CHECK = ("for a quick check, run a short real run instead (--trainer.max_epochs 1 "
               "--data.init_args.train_fraction 0.05), or `medtransfer prepare` to check the data")


def check_whole_splits(trainer: Mapping, verb: str) -> None:
    """Raise ``ConfigValueError`` for a setting (``trainer`` as parsed) under which ``verb`` would score or
    train on part of what it reports: Lightning's debugging runs, a limit on the scored split, and a fit
    whose validation never runs."""
    if trainer.get("fast_dev_run") not in (None, False, 0):
        raise ConfigValueError(
            f"trainer.fast_dev_run={trainer.get('fast_dev_run')}: Lightning's debugging run trains and "
            f"scores one batch, and medtransfer would record that batch's scores as the run's results; "
            f"{QUICK_CHECK}")
    if verb in ("fit", "validate") and (trainer.get("overfit_batches") or 0) > 0:
        raise ConfigValueError(
            f"trainer.overfit_batches={trainer.get('overfit_batches')}: Lightning's overfitting check trains "
            "and validates on the same few training batches, which chooses the checkpoint and the decision "
            "thresholds on them; remove it (data.init_args.train_fraction trains on a real subset)")
    split, key = SCORED_SPLIT.get(verb, (None, None))
    if key is not None and _limited(trainer.get(key)):
        raise ConfigValueError(
            f"trainer.{key}={trainer.get(key)}: {verb} would score part of the {split} split and record it "
            f"as the whole split's result; leave {key} at 1.0 (a smaller split: the dataset's own options, "
            "e.g. data.init_args.num_test or a splits file)")
    if verb == "fit":
        _validation_runs(trainer)


def check_both_classes_scored(data, verb: str) -> None:
    """A fit of a binary task needs both classes in its validation split (AUROC, on which it chooses the
    checkpoint to test and the decision thresholds, is undefined on one: it used to "choose" its first epoch
    on NaN and test it as the best) and in its test split (its AUROC, what a table reports, would be NaN after
    the whole training). ``test`` and ``validate`` may score one class on purpose (a sensitivity check);
    their AUROC is NaN with a warning."""
    task = getattr(data, "task", None)
    if verb != "fit" or task is None or task.kind != "binary" or not hasattr(data, "class_counts"):
        return
    counts = data.class_counts()
    for split, decides in (("val", "on which fit chooses the checkpoint to test and the decision thresholds"),
                           ("test", "the run's primary metric")):
        found = counts.get(split, {})
        missing = [name for name, count in found.items() if count == 0]
        if missing and sum(found.values()):
            shown = ", ".join(f"{name} {count}" for name, count in found.items())
            dataset = getattr(data, "name", type(data).__name__)
            raise ClassSetError(
                f"{dataset}: the {split} split has no {missing[0]!r} image "
                f"({shown}): AUROC, {decides}, is undefined on one class; give the {split} split images of "
                f"both classes (data.init_args.{split}_fraction carves a stratified one from the training "
                "split, where the dataset has that option)")


def built_settings(trainer) -> dict:
    """What ``check_whole_splits`` reads, from a built Trainer (one built in Python has no parsed config)."""
    keys = ("fast_dev_run", "overfit_batches", "check_val_every_n_epoch", "max_epochs",
            *(key for _, key in SCORED_SPLIT.values()))
    return {key: getattr(trainer, key, None) for key in keys}


def _limited(value) -> bool:
    """Whether a ``limit_*_batches`` value keeps part of the batches: 1.0, the default, keeps all; an int
    counts batches (a config's numbers are parsed as floats, a Trainer built in Python keeps its ints)."""
    if value is None or isinstance(value, bool):
        return False
    return isinstance(value, int) or float(value) != 1.0


def _validation_runs(trainer: Mapping) -> None:
    """A fit chooses its tested checkpoint and its decision thresholds on the validation split: settings under
    which validation never runs would test the last weights instead, unannounced."""
    if trainer.get("limit_val_batches") in (0, 0.0):
        raise ConfigValueError(
            "trainer.limit_val_batches=0: fit would never validate, so the checkpoint to test could not be "
            "chosen on the validation split; give a fraction in (0, 1] or a number of batches >= 1")
    every, epochs = trainer.get("check_val_every_n_epoch"), trainer.get("max_epochs")
    if isinstance(every, int) and isinstance(epochs, int) and 0 < epochs < every:
        raise ConfigValueError(
            f"trainer.check_val_every_n_epoch={every} with trainer.max_epochs={epochs}: fit would never "
            "validate, so the checkpoint to test could not be chosen on the validation split; validate at "
            f"least once (check_val_every_n_epoch <= {epochs})")


def training_record(trainer, tested: str | None, did_test: bool) -> dict:
    """results.json's ``training`` after a fit: epochs completed of ``max_epochs``, optimizer steps, what
    ended training (``max_epochs``, ``max_steps``, ``max_time``, ``early_stopping``, ``interrupted``) and
    the tested checkpoint (``tested``: the ``ckpt_path`` that fit's test was given; ``did_test``: whether it
    tested) with how it was chosen."""
    from pytorch_lightning.callbacks import EarlyStopping, Timer

    callback = trainer.checkpoint_callback
    monitor = getattr(callback, "monitor", None)
    completed = trainer.fit_loop.epoch_progress.current.completed
    timer = next((cb for cb in trainer.callbacks if isinstance(cb, Timer)), None)
    stopping = next((cb for cb in trainer.callbacks if isinstance(cb, EarlyStopping)), None)
    if trainer.interrupted:
        ended = "interrupted"
    elif trainer.max_steps not in (None, -1) and trainer.global_step >= trainer.max_steps:
        ended = "max_steps"
    elif timer is not None and timer.time_remaining("train") <= 0:
        ended = "max_time"
    elif stopping is not None and stopping.stopped_epoch > 0:
        ended = "early_stopping"
    else:
        ended = "max_epochs"
    if not did_test:
        chosen = "none: fit did not test"
    elif tested == "best":
        chosen = f"best {monitor}" if monitor else "best"
    elif tested is None:
        chosen = "the weights as training left them (no checkpoint callback)"
    else:
        chosen = f"last: no validation produced {monitor}" if monitor else "last"
    return {"epochs": completed, "max_epochs": trainer.max_epochs, "steps": trainer.global_step,
            "ended_by": ended, "tested_checkpoint": chosen}


def cut_short_warnings(training: Mapping) -> list[str]:
    """What the user is told when training or its checkpoint choice is not what the config asked: a time
    limit that ended training before ``max_epochs``, or a last checkpoint tested because nothing chose a
    best one."""
    said = []
    completed, planned = training.get("epochs"), training.get("max_epochs")
    counted = isinstance(completed, int) and isinstance(planned, int) and planned != -1
    if training.get("ended_by") == "max_time" and counted and completed < planned:
        said.append(f"trainer.max_time ended training after {completed} of {planned} epochs: the scores are "
                    "of a model trained for less than the config asks (results.json's training.ended_by)")
    tested = str(training.get("tested_checkpoint"))
    if tested.startswith("last: "):
        said.append(f"tested the last checkpoint, not the best: {tested[6:]} "
                    "(validation ran too late or never; results.json's training.tested_checkpoint)")
    return said
