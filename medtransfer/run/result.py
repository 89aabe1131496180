"""What a run returns to Python.

Its metrics with their confidence intervals, where its outputs are (run folder, results.json, best checkpoint,
predictions, a backbone export), and results.json itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class RunResult:
    """What a run returns: its metrics, their confidence intervals, where its outputs are, and results.json.

    Attributes:
        metrics: per split (``train``/``val``/``test``) the metric values.
        intervals: results.json's (``intervals["test"]["metrics"][name]`` has ``low``/``high``).
        results: the whole results.json (empty for ``predict`` and on DDP ranks other than zero, which write
            nothing).
    """

    verb: str
    run_dir: Path
    metrics: dict = field(default_factory=dict)
    intervals: dict = field(default_factory=dict)
    results_path: Path | None = None
    best_checkpoint: Path | None = None
    predictions_path: Path | None = None
    exported: dict | None = None
    results: dict = field(default_factory=dict)

    @property
    def status(self) -> str:
        """results.json's ``status``: ``finished`` or ``failed`` (``finished`` when none was written)."""
        return self.results.get("status", "finished")

    @classmethod
    def read(cls, verb: str, folder: Path, metrics: dict, results_path: Path | None, trainer,
             predictions_path: Path | None) -> RunResult:
        """The result of a run that ended, from its trainer and the results.json it wrote (if any)."""
        results = json.loads(Path(results_path).read_text()) if results_path is not None else {}
        callback = trainer.checkpoint_callback
        best = getattr(callback, "best_model_path", "") or getattr(callback, "last_model_path", "") or None
        exported = (results.get("extra") or {}).get("pretraining", {}).get("export")
        return cls(verb, Path(folder), metrics, results.get("intervals", {}), results_path,
                   Path(best) if best and verb == "fit" else None,
                   Path(predictions_path) if predictions_path else None, exported, results)
