"""Callbacks every run gets by default."""

from __future__ import annotations

from pytorch_lightning.callbacks import ModelCheckpoint


class TaskCheckpoint(ModelCheckpoint):
    """ModelCheckpoint on the task's primary validation metric (``val/auroc`` or ``val/kappa``, higher is
    better) plus ``last.ckpt``; the metric is read from the datamodule's task, so configs never repeat it."""

    def __init__(self, dirpath: str | None = None, save_top_k: int = 1, save_last: bool = True) -> None:
        super().__init__(dirpath=dirpath, filename="best-epoch={epoch:03d}", monitor=None, mode="max",
                         save_top_k=save_top_k, save_last=save_last, auto_insert_metric_name=False)

    def setup(self, trainer, pl_module, stage: str) -> None:
        task = getattr(pl_module, "task", None)
        if task is not None and self.monitor is None:
            self.monitor = f"val/{task.primary_metric}"
        super().setup(trainer, pl_module, stage)
