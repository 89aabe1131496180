"""Checkpoints of tiny models trained for two steps on synthetic 32 px images, written the way ``medtransfer
fit`` writes them (TaskCheckpoint records the data preparation)."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl

from medtransfer.callbacks import TaskCheckpoint
from medtransfer.datamodules import SyntheticMedical

SIZE = 32


def tiny_data(kind: str = "binary") -> SyntheticMedical:
    return SyntheticMedical(kind=kind, num_train=16, num_val=16, num_test=8, native_size=SIZE,
                            image_size=SIZE, batch_size=8)


def train_checkpoint(folder: Path, model: pl.LightningModule, data: SyntheticMedical) -> Path:
    """``folder/last.ckpt`` after two training steps and one validation batch."""
    trainer = pl.Trainer(max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                         enable_progress_bar=False, enable_model_summary=False, accelerator="cpu",
                         callbacks=[TaskCheckpoint(dirpath=str(folder))])
    trainer.fit(model, datamodule=model.attach_data(data))
    return folder / "last.ckpt"
