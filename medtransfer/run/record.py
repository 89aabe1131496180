"""A run's results.json, built from what the run holds when it ends (docs/architecture.md, "A run's
results"): its metrics, the confidence intervals of its test metrics from the per-sample test predictions,
the decision thresholds its test chose on validation (``run.decision``), the data, the model with the weights
it started from and the weights it produced, the pre-flight summary, and whether it finished or failed (a
failed run has no test metrics and says where it failed)."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from ..backbones.backbone import state_dict_fingerprint
from ..callbacks import TestPredictionWriter
from ..outputs.results import build_results, write_json_atomic
from ..runtime.seeding import recorded_seed
from ..stats.intervals import test_intervals
from .decision import DecisionRecorder
from .options import RunOptions

RESULTS_FILE = "results.json"


@dataclass
class RunRecord:
    """What results.json needs besides the model, data and trainer: the verb, its options, the resolved
    config (None for a run built from Python objects), the pre-flight summary, a fit's training record and
    the start time."""

    verb: str
    options: RunOptions
    config: dict | None
    preflight: dict | None = None
    training: dict | None = None  # a fit's epochs, what ended it, the checkpoint tested (``run.whole_run``)
    started: float = field(default_factory=time.perf_counter)


def write_results(record: RunRecord, folder: str | Path, model, data, trainer, metrics: dict,
                  checkpoint: str | None, failure: dict | None = None) -> Path:
    """Write results.json in the run's folder (rank zero only) and return its path; ``checkpoint``: the one
    whose weights were scored."""
    folder = Path(folder)
    results = build_results(
        verb=record.verb,
        metrics=metrics,
        task=model.task.to_dict() if model.task is not None else None,
        data=data.describe() if hasattr(data, "describe") else {},
        model=model.describe() | {"weights": weights_record(model, folder)},
        seed=recorded_seed(),
        config=record.config if record.config is not None else objects_config(model, data),
        wall_time_s=time.perf_counter() - record.started,
        extra=model.extra_results() | decision_extra(trainer, metrics),
        checkpoint=checkpoint,
        **test_statistics(trainer, metrics, record.options, folder),
    )
    results["status"] = "failed" if failure else "finished"
    if failure:
        results["failure"] = failure
    if record.training is not None:
        results["training"] = record.training
    if record.preflight is not None:
        results["preflight"] = record.preflight
    return write_json_atomic(folder / RESULTS_FILE, results)


def weights_record(model, folder: Path) -> dict:
    """The fingerprints of the weights the run started from, of what it produced where it produced weights
    (a backbone export, a finetuned backbone; with paths relative to the run's folder), and of the whole model
    as it was last scored (``scored``: every weight and buffer, frozen backbones and head alike), which names
    the model wherever its checkpoint is read from."""
    produced = model.produced_weights()
    if produced is not None and produced.get("path"):
        produced = produced | {"path": _relative(produced["path"], folder)}
    return {"initial": [b.get("fingerprint") for b in model.backbone_descriptions()], "produced": produced,
            "scored": state_dict_fingerprint(model.state_dict())}


def _relative(path: str | Path, folder: Path) -> str:
    try:
        return os.path.relpath(path, folder)
    except ValueError:  # another drive (Windows)
        return Path(path).name


def objects_config(model, data) -> dict:
    """What a run built from Python objects can say of its config: the classes and the model's settings."""
    hparams = {k: v for k, v in dict(getattr(model, "hparams", {})).items() if k != "task"}
    return {
        "model": {"class_path": f"{type(model).__module__}.{type(model).__qualname__}", "init_args": hparams},
        "data": {"class_path": f"{type(data).__module__}.{type(data).__qualname__}"},
        "seed_everything": recorded_seed(),
    }


def test_statistics(trainer, metrics: dict, options: RunOptions, folder: Path) -> dict:
    """``predictions`` and ``intervals`` of results.json for a run that tested: its test predictions file and
    the confidence intervals of its test metrics (``RunOptions.intervals``)."""
    writer = next((cb for cb in trainer.callbacks if isinstance(cb, TestPredictionWriter)), None)
    if "test" not in metrics or writer is None or writer.predictions is None:
        return {}
    entry: dict = {"predictions": {"test": os.path.relpath(writer.path, folder)}}
    intervals = options.intervals
    if intervals.resamples > 0 and writer.predictions.labels is not None:
        computable = writer.predictions.metrics()
        names = [name for name in metrics["test"] if name in computable.names()]
        entry["intervals"] = {"test": test_intervals(computable, names, writer.predictions.groups,
                                                     intervals.resamples, intervals.seed,
                                                     intervals.confidence)}
    return entry


def decision_extra(trainer, metrics: dict) -> dict:
    """``extra.decision`` of a run that tested a binary or multilabel task (``run.decision``); else none."""
    recorder = next((cb for cb in trainer.callbacks if isinstance(cb, DecisionRecorder)), None)
    if "test" not in metrics or recorder is None or recorder.record is None:
        return {}
    return {"decision": recorder.record}


def metrics_line(results_metrics: dict, intervals: dict) -> str:
    """``test metrics: auroc=0.9561 [0.93, 0.97], ...`` as the command prints it."""
    shown = {k: v for k, v in results_metrics.items() if "/" not in k}
    bounds = intervals.get("test", {}).get("metrics", {})
    return "test metrics: " + ", ".join(f"{k}={v:.4f}{_interval_text(bounds.get(k))}"
                                        for k, v in shown.items())


def _interval_text(bounds: dict | None) -> str:
    return "" if bounds is None else f" [{bounds['low']:.4f}, {bounds['high']:.4f}]"
