"""A callback that measures a run's steady-state training images/s and peak GPU memory, for the benchmarks.

``benchmarks/train_throughput.py`` times its Lightning side with it; ``benchmarks/gpu_check.sh`` adds it to
``medtransfer fit`` runs (``PYTHONPATH=benchmarks --trainer.callbacks+=training_speed.TrainingSpeed``).

The clock runs from the first training batch after ``warmup_batches`` (cuDNN autotuning, torch.compile,
allocator growth and loader start-up happen there) to the end of the run, stopped during validation: the data
loading between batches counts, evaluation does not. CUDA is synchronised at each start and stop only, so
measuring does not slow the steps down. The process's CPU time over the same stretches is kept too
(``images_per_cpu_s``): on a CPU shared with other work it measures the work a step costs, where the wall
clock also measures the neighbours.
"""

from __future__ import annotations

import time

import pytorch_lightning as pl
import torch


class TrainingSpeed(pl.Callback):
    """Training images/s after ``warmup_batches`` (counted over the whole run), printed when fitting ends
    with the peak GPU memory allocated; the values stay in ``images_per_s`` and ``peak_gpu_bytes``."""

    def __init__(self, warmup_batches: int = 5) -> None:
        self.warmup_batches = warmup_batches
        self.batches = 0
        self.images = 0
        self.seconds = 0.0
        self.cpu_seconds = 0.0
        self._started: tuple[float, float] | None = None
        self.images_per_s: float | None = None
        self.images_per_cpu_s: float | None = None
        self.peak_gpu_bytes: int | None = None

    @staticmethod
    def _now(module: pl.LightningModule) -> tuple[float, float]:
        """Wall-clock and process CPU seconds, once the GPU has caught up."""
        if module.device.type == "cuda":
            torch.cuda.synchronize(module.device)
        return time.perf_counter(), time.process_time()

    def _stop(self, module: pl.LightningModule) -> None:
        if self._started is not None:
            wall, cpu = self._now(module)
            self.seconds += wall - self._started[0]
            self.cpu_seconds += cpu - self._started[1]
            self._started = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if self._started is None and self.batches >= self.warmup_batches:
            self._started = self._now(pl_module)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self._started is not None:
            self.images += len(batch["label"])
        self.batches += 1

    def on_validation_start(self, trainer, pl_module) -> None:
        self._stop(pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._stop(pl_module)

    def on_fit_end(self, trainer, pl_module) -> None:
        self._stop(pl_module)
        self.images_per_s = self.images / self.seconds if self.seconds > 0 else None
        self.images_per_cpu_s = self.images / self.cpu_seconds if self.cpu_seconds > 0 else None
        if pl_module.device.type == "cuda":
            self.peak_gpu_bytes = torch.cuda.max_memory_allocated(pl_module.device)
        if trainer.is_global_zero:
            print(f"TrainingSpeed: {self.describe()}", flush=True)

    def describe(self) -> str:
        speed = (f"{self.images_per_s:.1f} training images/s per process over {self.images} images"
                 if self.images_per_s is not None
                 else f"no training batch after the {self.warmup_batches} warm-up batches")
        memory = (f"; peak GPU memory allocated {self.peak_gpu_bytes / 2**30:.2f} GiB"
                  if self.peak_gpu_bytes is not None else "")
        return speed + memory
