"""Linear evaluation: a frozen backbone (eval mode, no gradients) and one trainable linear layer.

The layer is solved exactly on feature stores or trained by AdamW/SGD on images.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Literal

import numpy as np
import torch
from pytorch_lightning.utilities import rank_zero_warn
from torch import nn

from ..errors import MedTransferError
from ..runtime.memory import check_fits
from ..runtime.threads import all_threads
from ..task import Task
from .base import Optimizer, Schedule
from .frozen import SingleBackboneModule
from .logistic_path import DEFAULT_TOL, FLOAT32_TOL, PathPoint, logistic_path
from .metrics import build_metrics, metric_targets, probabilities, task_loss
from .selection import best_index, grid_edges, warn_grid_edges

SOLVERS = ("auto", "lbfgs", "sgd")
DEFAULT_L2 = tuple(float(v) for v in np.logspace(-5, 1, 10))


class TrainingSubsetError(MedTransferError, ValueError):
    """The training subset cannot define a linear classifier (no samples, or a class without examples)."""


class SolverConvergenceWarning(UserWarning):
    """An L-BFGS solve stopped at ``max_iter`` before its gradient reached the tolerance."""


class LinearProbe(SingleBackboneModule):
    """Linear probe on a frozen backbone.

    Two ways to train the head:

    - ``solver: lbfgs`` (the default on feature stores): the exact solution. L2-regularised logistic
      regression (binary, multiclass softmax, multilabel sigmoids) is solved to convergence by full-batch
      L-BFGS for every penalty of ``l2_penalties`` (strongest first, each warm-started from the previous),
      each solution is scored on the validation split by the task's primary metric, and the best one becomes
      the head. It is the CLIP / DINOv2 linear probe, and agrees with scikit-learn's
      ``LogisticRegression(C=1 / (l2 * n))`` on the same standardised features. Fitting takes one epoch (the
      solve, then one validation); ``max_epochs``, ``lr`` and the schedule do not apply. results.json
      ``extra.solver`` and TensorBoard (``solver/*``) hold the whole path; a choice at either end of the grid
      is warned about and recorded.
    - ``solver: sgd`` (the default without stores, ``feature_cache: false``): AdamW or SGD over epochs of
      (augmented) images, with ``lr``, ``weight_decay``, ``optimizer``, ``scheduler``.

    Args:
        backbone: registry weights (``resnet50.swav_in1k``) or any timm architecture.
        checkpoint: a local weights file for ``backbone`` (see ``medtransfer weights``).
        backbone_kwargs: extra timm arguments (e.g. ``img_size`` for a ViT at a small input size).
        embedding: embedding recipe override (e.g. ``cls_last4`` for DINO ViTs); default: the weights' own.
        resize_to: resize images on the device to this side before the backbone (default: as loaded).
        solver: ``auto`` (``lbfgs`` on feature stores, else ``sgd``), ``lbfgs`` or ``sgd``.
        l2_penalties: the L2 regularisation path of the exact solver (penalty on the mean loss).
        max_iter, tol: L-BFGS iterations per penalty, and the gradient tolerance: a penalty's solve has
            converged when the largest absolute entry of the gradient is at most ``tol`` times its objective
            relative to the objective at zero weights (``tol`` itself where the objective is that of zero
            weights, tighter as it shrinks on nearly separable features).
        feature_cache, features_dir, standardize, memory_format: see ``FrozenBackboneModule``.
        task, lr, weight_decay, optimizer, scheduler, warmup_epochs: see ``TaskModule`` (``sgd`` only).
    """

    def __init__(
        self,
        backbone: str = "resnet50.tv_in1k",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        resize_to: int | None = None,
        solver: Literal["auto", "lbfgs", "sgd"] = "auto",
        l2_penalties: Sequence[float] = DEFAULT_L2,
        max_iter: int = 1000,
        tol: float = DEFAULT_TOL,
        feature_cache: bool = True,
        features_dir: str | None = None,
        standardize: bool = True,
        task: Task | None = None,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        memory_format: Literal["contiguous", "channels_last"] | None = None,
    ) -> None:
        if solver not in SOLVERS:
            raise ValueError(f"model.solver must be one of {list(SOLVERS)}, got {solver!r}")
        if solver == "lbfgs" and not feature_cache:
            raise ValueError("model.solver lbfgs solves on feature stores: set feature_cache: true, or use "
                             "solver: sgd to train on (augmented) images")
        if not l2_penalties or min(l2_penalties) <= 0:
            raise ValueError(f"model.l2_penalties needs positive values, got {list(l2_penalties)}")
        super().__init__(task, lr, weight_decay, optimizer, scheduler, warmup_epochs, feature_cache,
                         features_dir, standardize, memory_format)
        self.save_task_hyperparameters()
        self.build_frozen_backbone(backbone, checkpoint, backbone_kwargs, embedding, resize_to)
        self.head = nn.Linear(self.backbone.embed_dim, self.task.num_outputs)
        self.solver = "lbfgs" if solver == "lbfgs" or (solver == "auto" and feature_cache) else "sgd"
        self.l2_penalties = [float(v) for v in l2_penalties]
        self.max_iter = max_iter
        self.tol = tol
        self.automatic_optimization = self.solver == "sgd"
        self.solver_summary: dict | None = None

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return self.backbone(images)

    def logits(self, batch: dict) -> torch.Tensor:
        return self.head(self.embeddings(batch)[0])

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits({"image": images})

    # -- the exact solver ------------------------------------------------------------------------------------
    def configure_optimizers(self):
        return super().configure_optimizers() if self.solver == "sgd" else SolveStep(self.head.parameters())

    def on_train_epoch_start(self) -> None:
        super().on_train_epoch_start()
        if self.solver == "lbfgs" and self.solver_summary is None:
            self.solve()

    def training_step(self, batch: dict, batch_idx: int):
        if self.solver == "sgd":
            return super().training_step(batch, batch_idx)
        if batch_idx == 0:
            self.optimizers().step()  # the solve, made at the start of the epoch, counts as one step
        return None

    def on_train_epoch_end(self) -> None:
        if self.solver == "lbfgs":
            self.trainer.should_stop = True  # the solution is final: one epoch, then its validation
        super().on_train_epoch_end()

    def solve(self) -> None:
        """Solve the L2 path on the training features, select on validation, and install the chosen head.

        Every DDP rank holds the whole training and validation features, so the ranks solve alike; rank 0's
        solution is broadcast anyway, so all ranks hold bit-identical heads.
        """
        train = self.cached_split("train")
        val = self.cached_split("val")
        self._check_memory(train.features[0].shape, len(val.labels))
        features = self.embeddings({"features": train.features})[0]
        check_training_labels(self.task, train.labels,
                              describe_subset(self.attached_data(), len(train.labels)))
        started = time.perf_counter()
        with all_threads():  # the steps may run on one thread; the solve takes every one
            path = logistic_path(features, train.labels, self.task.kind, self.task.num_outputs,
                                 self.l2_penalties, max_iter=self.max_iter, tol=self.tol)
        seconds = time.perf_counter() - started
        val_features = self.embeddings({"features": val.features})[0]
        summary = self._summarise(path, [p.logits(val_features).float() for p in path], val.labels)
        summary["path_seconds"] = round(seconds, 3)
        chosen = path[summary["selected"]["index"]]
        summary, chosen = self.trainer.strategy.broadcast((summary, chosen), src=0)
        with torch.no_grad():
            self.head.weight.copy_(chosen.weight.to(self.head.weight))
            self.head.bias.copy_(chosen.bias.to(self.head.bias))
        self.solver_summary = summary
        self._report_path(summary)
        self._record_training_fit(features, train.labels)

    def _check_memory(self, shape: torch.Size, val_rows: int) -> None:
        """Refuse up front a solve whose standardised features cannot fit.

        It holds the training split as float32 (float64 too for a ``tol`` below ``FLOAT32_TOL``) and the
        validation split as float32.
        """
        rows, dim = shape
        per_value = 4 + (8 if self.tol < FLOAT32_TOL else 0)
        check_fits(rows * dim * per_value + val_rows * dim * 4,
                   f"the exact solver on {rows} x {dim} training features (standardised, "
                   f"{'float32 and float64' if per_value > 4 else 'float32'})",
                   "use model.init_args.solver: sgd (or LinearSweep), which trains on batches of the float16 "
                   "stores, or a smaller data.init_args.train_fraction")

    def _summarise(self, path: list[PathPoint], val_logits: list[torch.Tensor], labels: torch.Tensor) -> dict:
        """Each penalty's iterations, convergence and validation score; the selected one; grid-edge notes."""
        scorer = build_metrics(self.task, sync_on_compute=False)[self.task.primary_metric].to(labels.device)
        targets = metric_targets(self.task, labels)
        scores, losses = [], []
        for logits in val_logits:
            scorer.update(probabilities(self.task, logits), targets)
            scores.append(float(scorer.compute()))
            scorer.reset()
            losses.append(float(task_loss(self.task, logits, labels)))
        best = best_index(scores, losses)
        metric = self.task.primary_metric
        points = [
            {"l2": p.l2, "iterations": p.iterations, "converged": p.converged, "gradient": p.gradient,
             "gradient_bound": p.gradient_bound, "train/objective": p.objective, f"val/{metric}": score,
             "val/loss": loss}
            for p, score, loss in zip(path, scores, losses, strict=True)
        ]
        return {
            "kind": "lbfgs",
            "selected": {"index": best, "l2": path[best].l2},
            "selected_on": f"val/{metric}",
            "tol": self.tol,
            "max_iter": self.max_iter,
            "path": points,
            "grid_edge": grid_edges({"l2_penalties": self.l2_penalties}, {"l2_penalties": path[best].l2}),
        }

    def _report_path(self, summary: dict) -> None:
        """Warnings for non-converged points and a grid-edge choice; the path as TensorBoard scalars."""
        for point in summary["path"]:
            if not point["converged"]:
                self._warn_unconverged(point)
        warn_grid_edges(type(self).__name__, summary["grid_edge"])
        metric = summary["selected_on"]
        if self.logger is not None:
            for index, point in enumerate(summary["path"]):
                self.logger.log_metrics({"solver/log10_l2": float(np.log10(point["l2"])),
                                         f"solver/{metric}": point[metric],
                                         "solver/val/loss": point["val/loss"],
                                         "solver/iterations": point["iterations"]}, step=index)
            self.logger.log_metrics({"solver/selected_l2": summary["selected"]["l2"]}, step=0)

    def _warn_unconverged(self, point: dict) -> None:
        rank_zero_warn(
            f"LinearProbe: the L-BFGS solve for l2 {point['l2']:g} did not converge in {point['iterations']} "
            f"iterations (largest gradient entry {point['gradient']:.2g} > {point['gradient_bound']:.2g}: "
            f"tol {self.tol:g} relative to the objective); raise model.init_args.max_iter or drop that "
            "penalty", category=SolverConvergenceWarning)

    def _record_training_fit(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """The chosen head's training metrics (train/*), from this rank's share of the training split.

        Each rank takes its share so that the synchronised metrics count every sample once.
        """
        if self.trainer.world_size == 1:  # every row: no copy of the training features
            features_share, subset = features, labels
        else:
            rows = torch.arange(self.global_rank, len(labels), self.trainer.world_size, device=labels.device)
            features_share = features.index_select(0, rows.to(features.device))
            subset = labels.index_select(0, rows)
        logits = self.head(features_share)
        self.record_step("train", probabilities(self.task, logits.detach()),
                         metric_targets(self.task, subset), task_loss(self.task, logits.detach(), subset))

    # -- checkpoints and results -----------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.solver_summary is not None:
            checkpoint["solver"] = self.solver_summary

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.solver_summary = checkpoint.get("solver", self.solver_summary)

    def extra_results(self) -> dict:
        return {"solver": self.solver_summary} if self.solver_summary is not None else {}


class SolveStep(torch.optim.Optimizer):
    """The exact solve as Lightning's one optimisation step.

    It changes nothing (the head was installed by ``LinearProbe.solve``), but the step count it adds makes
    checkpointing and logging treat the solved head like a trained one (``ModelCheckpoint`` saves nothing for
    a fit that took no step).
    """

    def __init__(self, params) -> None:
        super().__init__(params, {"lr": 0.0})

    @torch.no_grad()
    def step(self, closure=None):
        return None


def describe_subset(datamodule, size: int) -> str:
    """How the training subset was chosen, for error messages."""
    fraction = getattr(datamodule, "train_fraction", None)
    seed = getattr(datamodule, "fraction_seed", None)
    chosen = f" (train_fraction={fraction}, fraction_seed={seed})" if fraction is not None else ""
    return f"the {size} training samples used{chosen}"


def check_training_labels(task: Task, labels: torch.Tensor, subset: str) -> None:
    """Check the training subset has every class (every label: a positive and a negative).

    A linear classifier needs every class in its training subset; without, its intercept runs off to infinity
    and its AUROC means nothing.
    """
    if len(labels) == 0:
        raise TrainingSubsetError(f"{subset}: the training subset is empty; use a larger train_fraction")
    if task.kind == "multilabel":
        positives = labels.round().sum(dim=0)
        absent = [name for name, p in zip(task.class_names, positives.tolist(), strict=True) if p == 0]
        constant = [name for name, p in zip(task.class_names, positives.tolist(), strict=True)
                    if p == len(labels)]
        problems = ([f"no positive example of {absent}"] if absent else []) + (
            [f"no negative example of {constant}"] if constant else [])
    else:
        counts = torch.bincount(labels.long(), minlength=task.num_classes)
        absent = [name for name, c in zip(task.class_names, counts.tolist(), strict=True) if c == 0]
        problems = [f"no example of class(es) {absent}"] if absent else []
    if problems:
        raise TrainingSubsetError(
            f"{subset} hold {' and '.join(problems)}: a linear classifier cannot be fit. Use a larger "
            "train_fraction or another fraction_seed"
        )
