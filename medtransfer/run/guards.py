"""What stops a run rather than let it produce a number that looks right and is not: training that has
diverged (``DivergenceGuard``), and a run folder that already holds a finished run's results
(``check_not_finished``). Both are named errors: the command prints one line and exits 2."""

from __future__ import annotations

from pathlib import Path

import torch
from pytorch_lightning import Callback

from ..errors import MedTransferError
from ..runtime.rank_exit import StopAllRanks
from ..runtime.requeue import SlurmRequeue

# a run folder holding one of these holds a finished run's outputs
FINISHED_OUTPUTS = ("results.json", "predictions.csv")
GPU_CHECK_EVERY = 50  # steps between host reads of the loss flag on an accelerator (a read waits for a step)


class DivergedError(MedTransferError, RuntimeError):
    """Training produced a non-finite loss or parameter; ``epoch``, ``step`` and ``what`` say where."""

    def __init__(self, message: str, epoch: int, step: int, what: str) -> None:
        super().__init__(message)
        self.epoch, self.step, self.what = epoch, step, what

    def record(self) -> dict:
        """The ``failure`` entry of the run's results.json."""
        return {"kind": "diverged", "error": str(self), "epoch": self.epoch, "step": self.step,
                "what": self.what}


class FinishedRunError(MedTransferError, FileExistsError):
    """The run folder already holds a finished run's results."""


def fixed_callbacks() -> list[Callback]:
    """The callbacks of every run, which no config can remove: how it stops (every DDP rank on one's error, a
    SLURM job requeued on its signal) and the divergence guard."""
    return [StopAllRanks(), SlurmRequeue(), DivergenceGuard()]


class DivergenceGuard(Callback):
    """Stops training the moment its loss or a trainable parameter is NaN or infinite: every later number of
    such a run (metrics on NaN probabilities, a "best" checkpoint) would be meaningless, and used to be
    scored and ranked.

    The loss is checked after every step (on an accelerator its flag is read every ``GPU_CHECK_EVERY``
    steps: reading it waits for the step to finish, which would cost throughput), the trainable parameters
    before every validation and at every epoch's end, before the epoch's checkpoint is written. Every DDP
    rank decides together."""

    def __init__(self) -> None:
        self._bad_loss: torch.Tensor | None = None
        self._first_bad: tuple[int, int] | None = None

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if not isinstance(loss, torch.Tensor):  # a step that returned no loss (the exact solver's)
            return
        bad = ~torch.isfinite(loss.detach()).all()
        self._bad_loss = bad if self._bad_loss is None else self._bad_loss | bad
        on_cpu = loss.device.type == "cpu"
        if on_cpu or trainer.global_step % GPU_CHECK_EVERY == 0:
            self._check_loss(trainer, loss)

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._check_loss(trainer, None)
            self._check_parameters(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self._check_loss(trainer, None)
        self._check_parameters(trainer, pl_module)

    def _check_loss(self, trainer, loss: torch.Tensor | None) -> None:
        bad = bool(self._bad_loss) if self._bad_loss is not None else False
        if trainer.world_size > 1:
            bad = trainer.strategy.reduce_boolean_decision(bad, all=False)
        if bad:
            value = "" if loss is None else f" ({float(loss.detach().float())})"
            raise self._diverged(trainer, f"the training loss is not finite{value}")

    def _check_parameters(self, trainer, pl_module) -> None:
        parameters = (pl_module.guarded_parameters() if hasattr(pl_module, "guarded_parameters")
                      else [(n, p) for n, p in pl_module.named_parameters() if p.requires_grad])
        bad = [name for name, p in parameters if not bool(torch.isfinite(p.detach()).all())]
        decided = trainer.strategy.reduce_boolean_decision(bool(bad), all=False) if trainer.world_size > 1 \
            else bool(bad)
        if decided:
            shown = ", ".join(bad[:3]) if bad else "on another process"
            raise self._diverged(trainer, f"trainable parameters are not finite ({shown})")

    def _diverged(self, trainer, what: str) -> DivergedError:
        epoch, step = trainer.current_epoch, trainer.global_step
        return DivergedError(
            f"training diverged at epoch {epoch}, step {step}: {what}. The run is recorded as failed (no "
            "test metrics); lower model.init_args.lr, add warm-up (model.init_args.warmup_epochs) or "
            "gradient clipping (trainer.gradient_clip_val), or check the inputs for NaN", epoch, step, what)


def check_not_finished(folder: str | Path, continuing: bool, logged: bool = True) -> None:
    """Refuse to write into a run folder that holds a finished run's outputs: medtransfer never overwrites
    results a table may already cite. ``continuing``: the run was asked to continue from a checkpoint;
    ``logged``: the run has a logger (which numbers its runs' folders; without one, every run writes to
    ``trainer.default_root_dir``)."""
    folder = Path(folder)
    found = [name for name in FINISHED_OUTPUTS if (folder / name).is_file()]
    if not found:
        return
    if continuing:
        raise FinishedRunError(
            f"--ckpt_path: the run in {folder} is finished ({found[0]} is there): there is nothing to "
            "continue; leave out --ckpt_path to start a new run"
        )
    fix = ("leave --trainer.logger.init_args.version unset (a new version_<n>), or give another name or "
           "save_dir") if logged else "give --trainer.default_root_dir another folder, or use a logger"
    raise FinishedRunError(f"{folder} holds a finished run ({found[0]}) and medtransfer never overwrites "
                           f"one: {fix}")
