"""One run, from built parts to its outputs: the checks before anything runs, the run folder (refused when it
holds a finished run, locked while written, removed again when the run never started), the pre-flight
summary, the thread policy, the Lightning call of the verb (for ``fit``: then validate and test the best
checkpoint), results.json, and the way it ends when training diverges or a signal stops it.

``execute`` is what ``medtransfer fit/validate/test/predict`` and ``medtransfer.run.fit(...)`` both run."""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytorch_lightning as pl

from ..callbacks import PredictionWriter
from ..explain import add_explanations
from ..lightning_modules import MedTransferModule
from ..lightning_modules.frozen import FrozenBackboneModule
from ..runtime.cpu_precision import warn_if_emulated
from ..runtime.folder import checkpoint_directory, logger_description, run_directory
from ..runtime.lock import lock_folder, run_folder_busy
from ..runtime.ranks import is_rank_zero
from ..runtime.signals import RunStopped, stop_on_signals
from ..runtime.threads import all_threads, step_threads
from ..task import TaskMismatchError
from ..utils.atomic import write_bytes_atomic
from .decision import record_decisions
from .guards import DivergedError, check_not_finished
from .inference import (
    CheckpointRecord,
    check_images_as_trained,
    check_same_training_data,
    check_trained,
    prepare_for_new_images,
    read_checkpoint_record,
    trainable_parameters,
)
from .options import RunOptions
from .preflight import preflight_summary, report_preflight
from .record import RunRecord, metrics_line, write_results
from .result import RunResult
from .trainer_values import check_launch, missing_monitor
from .whole_run import (
    built_settings,
    check_both_classes_scored,
    check_whole_splits,
    cut_short_warnings,
    training_record,
)

log = logging.getLogger(__name__)
CONFIG_FILE = "config.yaml"


@dataclass
class Job:
    """A run to execute: its verb, built parts, checkpoint, options, and (from a config) the resolved
    config, its YAML and the task the checkpoint was trained for. ``method_kwargs``: the Trainer method's
    own settings from the config (``verbose``, ``return_predictions``)."""

    verb: str
    model: MedTransferModule
    data: pl.LightningDataModule
    trainer: pl.Trainer
    ckpt_path: str | None = None
    options: RunOptions = field(default_factory=RunOptions)
    config: dict | None = None
    config_yaml: str | None = None
    checkpoint: CheckpointRecord | None = None  # what the checkpoint records of its training
    method_kwargs: dict = field(default_factory=dict)
    tested_checkpoint: str | None = None  # after fit: the best checkpoint, whose weights were tested
    training: dict | None = None  # after fit: results.json's ``training`` (``whole_run.training_record``)

    def evaluated_checkpoint(self) -> str | None:
        """The checkpoint whose weights the run's scores are of (results.json's ``checkpoint``)."""
        return self.tested_checkpoint if self.verb == "fit" else self.trainer.ckpt_path


def execute(job: Job) -> RunResult:
    """Run ``job`` (see the module docstring) and return what it produced."""
    record = RunRecord(job.verb, job.options, job.config)
    check_before_running(job)
    if is_rank_zero():
        warn_if_emulated(job.trainer)
    data = job.model.attach_data(job.data)
    with stop_on_signals(), step_threads(one_thread=steps_on_one_thread(job.model, job.trainer)):
        folder = RunFolder(job)
        try:
            with folder:
                if is_rank_zero():
                    record.preflight = preflight_summary(job.verb, job.model, data)
                    report_preflight(record.preflight, folder.path)
                    if job.config_yaml is not None:
                        write_bytes_atomic(folder.path / CONFIG_FILE, job.config_yaml.encode())
                with expected_warnings_silenced(job.model):
                    metrics = run_verb(job, data, record, folder.path)
                return finish(job, data, record, folder.path, metrics)
        except RunStopped as stop:  # at any point of the run: say where, and how to go on
            raise RunStopped(stop.signum, stopped_message(job, stop, folder.path)) from None


def check_before_running(job: Job) -> None:
    """What must hold before a run starts: the checkpoint's task is the data's, the Trainer launches every
    rank and scores whole splits (``run.whole_run``), an evaluation has trained weights (or says it wants
    untrained ones), new images suit the model; explanation callbacks added, and
    a run that tests records its decision thresholds (``run.decision``)."""
    if job.checkpoint is None:
        job.checkpoint = read_checkpoint_record(job.ckpt_path)  # a run built in Python: read here
    record = job.checkpoint
    data_task = getattr(job.data, "task", None)
    if record is not None and record.task is not None and data_task is not None:
        try:
            record.task.check_matches(data_task, what=f"the data ({type(job.data).__name__})")
        except TaskMismatchError as err:
            raise TaskMismatchError(f"checkpoint {record.path} does not fit: {err}") from None
    check_launch(job.trainer)
    check_whole_splits(built_settings(job.trainer), job.verb)
    check_both_classes_scored(job.data, job.verb)
    check_trained(job.model, job.verb, job.ckpt_path, job.options.allow_untrained)
    check_images_as_trained(record and record.images, job.data, job.ckpt_path)
    if job.verb == "fit":
        check_same_training_data(record and record.training, job.data, job.ckpt_path)
    prepare_for_new_images(job.model, job.data)
    if job.options.explain:
        add_explanations(job.trainer, job.verb)
    if job.verb in ("fit", "test"):
        record_decisions(job.trainer, job.options.decision_rule)


@contextmanager
def expected_warnings_silenced(model) -> Iterator[None]:
    """Lightning's warnings that a frozen head makes by design, said on every probe (they taught users to
    ignore warnings): modules in eval mode at the start of training (its backbones, ``Backbone.freeze``), and
    fewer training batches than the logging interval."""
    with warnings.catch_warnings():
        if isinstance(model, FrozenBackboneModule):
            warnings.filterwarnings("ignore", message=r"Found \d+ module\(s\) in eval mode")
            # steps on cached features log per epoch, never per step: the logging interval is moot
            warnings.filterwarnings("ignore", message=r"The number of training batches .* logging interval")
        yield


def steps_on_one_thread(model, trainer: pl.Trainer) -> bool:
    """Whether the run's steps take one CPU thread (``runtime.threads``): a head with trainable weights on
    cached features, on a CPU. kNN (nothing to train; a query batch against the whole bank is a large
    product) and every model on images keep every thread."""
    cached = isinstance(model, FrozenBackboneModule) and model.feature_cache
    return cached and trainable_parameters(model) > 0 and trainer.strategy.root_device.type == "cpu"


class RunFolder:
    """The run's folder (``runtime.folder.run_directory``) for the length of a ``with`` block: logged, refused
    when it holds a finished run, locked by the launching process, and removed again when the run fails or
    is stopped before it produced anything (so a run that never started leaves no folder and shifts no
    version number), with the folders above it that it made (``<save_dir>/<name>``) when they are empty."""

    def __init__(self, job: Job) -> None:
        self.job = job
        self.path = Path(run_directory(job.trainer))  # a broadcast under DDP: every rank asks
        self.existed = self.path.exists()
        self.outermost_new = outermost_missing(self.path)
        self._lock: int | None = None

    def __enter__(self) -> RunFolder:
        job = self.job
        if is_rank_zero():
            log.info("%s: run folder %s", job.verb, self.path)
            log.info("logger: %s", ", ".join(map(logger_description, job.trainer.loggers)) or "none")
            if job.verb == "fit":
                callback = job.trainer.checkpoint_callback
                log.info("checkpoints: %s", checkpoint_directory(job.trainer) if callback else "none")
            check_not_finished(self.path, continuing=job.verb == "fit" and job.ckpt_path is not None,
                               logged=bool(job.trainer.loggers))
            self._lock = lock_folder(self.path, run_folder_busy(self.path))
        return self

    def __exit__(self, kind, error, traceback) -> None:
        import os

        if self._lock is not None:
            os.close(self._lock)
        if error is not None and is_rank_zero() and not self.existed and self.never_started():
            shutil.rmtree(self.path, ignore_errors=True)
            remove_empty_parents(self.path, self.outermost_new)

    def never_started(self) -> bool:
        """Whether the run produced nothing worth keeping: no training step, no results, no checkpoint."""
        produced = ("results.json", "predictions.csv", "test_predictions.csv", "*.ckpt")
        if self.job.trainer.global_step > 0:
            return False
        return not any(next(self.path.rglob(pattern), None) for pattern in produced)


def outermost_missing(path: Path) -> Path | None:
    """The outermost folder on the way to ``path`` that does not exist yet (``path`` itself, or a parent),
    or None when ``path`` exists."""
    missing = None
    for folder in (path, *path.parents):
        if folder.exists():
            return missing
        missing = folder
    return missing


def remove_empty_parents(path: Path, outermost: Path | None) -> None:
    """Remove the folders above ``path`` up to ``outermost`` that are empty: made for this run, and holding
    nothing of another (a run starting beside it in the same ``<name>`` keeps its folder)."""
    if outermost is None or path == outermost:
        return
    for folder in path.parents:
        try:
            folder.rmdir()
        except OSError:  # not empty, or gone
            return
        if folder == outermost:
            return


def run_verb(job: Job, data, record: RunRecord, folder: Path) -> dict:
    """The verb's Lightning calls; its metrics per split. A diverged fit is recorded as failed (results.json
    with ``status: failed`` and where it failed, no test metrics) before its error goes on; a signal ends the
    run with ``RunStopped`` saying how to continue."""
    trainer, model = job.trainer, job.model
    try:
        if job.verb == "fit":
            return fit_then_test(job, data)
        call = getattr(trainer, job.verb)
        call(model, datamodule=data, ckpt_path=job.ckpt_path, **job.method_kwargs)
        split = {"validate": "val", "test": "test"}.get(job.verb)
        return {} if split is None else {split: dict(model.epoch_metrics.get(split, {}))}
    except DivergedError as error:
        if is_rank_zero():
            metrics = {split: values for split, values in model.epoch_metrics.items() if split != "test"}
            with all_threads():
                write_results(record, folder, model, data, trainer, metrics, None, failure=error.record())
        raise
    except Exception as error:
        named = missing_monitor(error)
        if named is None:
            raise
        raise named from error


def fit_then_test(job: Job, data) -> dict:
    """``fit``, then (``test_after_fit``) validate and test the best checkpoint, as the run's final scores."""
    trainer, model = job.trainer, job.model
    trainer.fit(model, datamodule=data, ckpt_path=job.ckpt_path)
    metrics = {}
    if model.epoch_metrics.get("train"):
        metrics["train"] = model.epoch_metrics["train"]
    chosen, tests = None, job.options.test_after_fit and model.evaluate_after_fit and not trainer.interrupted
    if tests:
        chosen = best_checkpoint(trainer)
        trainer.validate(model, datamodule=data, ckpt_path=chosen, verbose=False)
        metrics["val"] = dict(model.epoch_metrics.get("val", {}))
        job.tested_checkpoint = trainer.ckpt_path  # the best checkpoint, now loaded: test these weights
        trainer.test(model, datamodule=data, ckpt_path=None)
        metrics["test"] = dict(model.epoch_metrics.get("test", {}))
    elif "val" in model.epoch_metrics:
        metrics["val"] = model.epoch_metrics["val"]
    job.training = training_record(trainer, chosen, tests)
    return metrics


def best_checkpoint(trainer: pl.Trainer) -> str | None:
    """``best`` when the checkpoint callback kept a best model, else its last checkpoint, else None (the
    weights as they are)."""
    callback = trainer.checkpoint_callback
    if callback is None:
        return None
    if getattr(callback, "best_model_path", ""):
        return "best"
    return getattr(callback, "last_model_path", None) or None


def finish(job: Job, data, record: RunRecord, folder: Path, metrics: dict) -> RunResult:
    """results.json (not for predict, which writes predictions.csv), the lines the command prints, and the
    result. Every rank returns; only rank zero writes and prints."""
    trainer = job.trainer
    results_path = None
    predictions = next((cb.path for cb in trainer.callbacks if isinstance(cb, PredictionWriter)), None)
    if job.verb != "predict" and trainer.is_global_zero:
        record.training = job.training
        with all_threads():  # the statistics of the results: every thread again
            results_path = write_results(record, folder, job.model, data, trainer, metrics,
                                         job.evaluated_checkpoint())
    result = RunResult.read(job.verb, folder, metrics, results_path, trainer, predictions)
    if trainer.is_global_zero:
        if results_path is not None:
            print(f"results: {results_path}")
        if predictions is not None:
            print(f"predictions: {predictions}")
        if "test" in metrics:
            print(metrics_line(metrics["test"], result.intervals))
        for warning in cut_short_warnings(job.training) if job.training else ():
            log.warning(warning)
    return result


def stopped_message(job: Job, stop: RunStopped, folder: Path) -> str:
    """What the user is told when a signal stops the run: where, that nothing partial was written, and how
    to continue."""
    import signal

    trainer = job.trainer
    name = signal.Signals(stop.signum).name
    where = f" at epoch {trainer.current_epoch}, step {trainer.global_step}" if job.verb == "fit" else ""
    head = f"medtransfer: {job.verb} stopped by {name}{where}; every file written is whole"
    if job.verb != "fit":
        return f"{head}. Run the same command again to redo it"
    last = next(iter(sorted(Path(checkpoint_directory(trainer)).glob("last*.ckpt"))), None)
    if last is None:
        return f"{head}; no checkpoint was written yet: run the same command again to start over"
    return f"{head}. Continue it with the same command and --ckpt_path last (from {last})"
