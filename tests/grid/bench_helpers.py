"""Helpers for the benchmark tests: small grids over the repository's config pieces, hand-made results.json
files, a stand-in for ``medtransfer fit`` subprocesses that writes results instantly, and a SLURM array task
run by bash."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from medtransfer.grid.plan import Run
from medtransfer.outputs.results import build_results, write_json_atomic

REPO = Path(__file__).resolve().parents[2]
SYNTHETIC = str(REPO / "configs" / "data" / "synthetic.yaml")
LINEAR = str(REPO / "configs" / "model" / "linear_probe.yaml")
DVME = str(REPO / "configs" / "model" / "dvme.yaml")
KNN = str(REPO / "configs" / "model" / "knn.yaml")


def small_grid(**extra) -> dict:
    """Synthetic data x linear probe x two backbones x two fractions x two seeds = 8 runs."""
    return {
        "name": "small",
        "overrides": {"trainer.max_epochs": 1, "data.init_args.num_train": 64},
        "axes": {
            "dataset": {"synthetic": SYNTHETIC},
            "protocol": {"linear": LINEAR},
            "backbone": {"supervised": "test_resnet", "ssl": "test_convnext"},
            "fraction": {"small": 0.25, "full": 1.0},
            "seed": [0, 1],
        },
        **extra,
    }


def results_document(
    config: dict,
    test: dict[str, float],
    *,
    verb: str = "fit",
    data: dict | None = None,
    backbones: list[str] = ("test_resnet",),
    model: str = "LinearProbe",
    seed: int = 0,
    primary: str = "auroc",
    extra: dict | None = None,
    task: dict | None = None,
    predictions: dict | None = None,
) -> dict:
    """A results.json as ``medtransfer fit`` writes it (results.build_results)."""
    return build_results(
        verb=verb,
        metrics={"val": dict(test), "test": dict(test)},
        task=task or {
            "kind": "binary",
            "class_names": ["normal", "lesion"],
            "ordinal": False,
            "primary_metric": primary,
            "num_classes": 2,
        },
        data={"name": "SyntheticMedical", "train_fraction": 1.0, "fraction_seed": seed, **(data or {})},
        model={"name": model, "backbones": [{"name": b, "fingerprint": "0" * 16} for b in backbones]},
        seed=seed,
        config=config,
        wall_time_s=1.0,
        extra=extra,
        predictions=predictions,
    )


class InstantRun:
    """Stands in for a ``medtransfer fit`` subprocess: writes the results.json the run would write, at once.
    During the ``kill_at``-th start (from 0) the benchmark itself is killed (KeyboardInterrupt), leaving a
    partial run folder behind, as a real kill would. The runs in ``diverge`` end as the divergence guard
    ends a run: ``status: failed`` and no test metrics."""

    def __init__(self, kill_at: int | None = None, scores: dict[str, float] | None = None,
                 diverge: set[str] = frozenset()) -> None:
        self.kill_at = kill_at
        self.scores = scores or {}
        self.diverge = diverge
        self.started: list[str] = []

    def __call__(self, run: Run, folder: Path, argv: list[str], env: dict[str, str]) -> InstantRun:
        self.started.append(run.id)
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"partial")
        if len(self.started) - 1 == self.kill_at:
            raise KeyboardInterrupt
        score = self.scores.get(run.id, 0.5 + 0.01 * len(self.started))
        seed = run.config.get("seed_everything", 0)
        fraction = run.config["data"]["init_args"]["train_fraction"]
        document = results_document(
            run.config,
            {"auroc": score, "acc": score},
            verb=run.verb,
            seed=seed,
            data={"train_fraction": fraction},
            backbones=[run.labels.get("backbone", "?")],
        )
        if run.id in self.diverge:
            document.update(diverged())
        write_json_atomic(folder / "results.json", document)
        return self

    def poll(self) -> int:
        return 0

    def terminate(self) -> None:
        pass


def diverged(epoch: int = 3, step: int = 41) -> dict:
    """What the divergence guard puts into a stopped run's results.json: its status and failure, metrics
    without a test split."""
    return {
        "status": "failed",
        "failure": {"error": f"the training loss is nan at step {step}\n(traceback)", "kind": "diverged",
                    "epoch": epoch, "step": step},
        "metrics": {"train": {"loss": float("nan")}},
    }


def read_json(path: Path) -> dict:
    return json.loads(path.read_text())


@dataclass
class ArrayTask:
    """Task 0 of a grid's sbatch array (``prepare``), run by bash as SLURM runs it (``run``)."""

    slurm: Path  # <output_dir>/slurm
    run_id: str  # the task's run
    folder: Path  # its run folder

    @classmethod
    def prepare(cls, plan, tmp_path: Path) -> ArrayTask:
        from medtransfer.grid.runner import run_plan

        run_plan(plan, launcher="slurm", say=lambda _: None, cwd=tmp_path)
        slurm = plan.spec.output_dir / "slurm"
        run = (slurm / "runs.txt").read_text().split()[0]
        return cls(slurm, run, plan.spec.output_dir / "runs" / run)

    def run(self, srun: str, bin_dir: Path, **env: str) -> subprocess.CompletedProcess:
        """``grid.sbatch`` with ``srun`` replaced by a shell script whose body is ``srun``."""
        bin_dir.mkdir()
        (bin_dir / "srun").write_text(f"#!/bin/sh\n{srun}\n")
        (bin_dir / "srun").chmod(0o755)
        env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "SLURM_ARRAY_TASK_ID": "0",
               "SLURM_JOB_NODELIST": "node7", "MEDTRANSFER_PYTHON": sys.executable, **env}
        return subprocess.run(["bash", str(self.slurm / "grid.sbatch")], env=env, capture_output=True,
                              text=True, timeout=120)
