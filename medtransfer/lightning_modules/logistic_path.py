"""Exact linear evaluation: L2-regularised logistic regression solved to convergence with full-batch L-BFGS,
along a path of regularisation strengths (the CLIP / DINOv2 linear probe).

Each point of the path minimises ``mean_i loss_i + l2 / 2 * ||W||^2`` (the bias is not penalised), which is
scikit-learn's ``LogisticRegression(C=1 / (l2 * n))`` for ``n`` training samples: binary (one logit,
sigmoid), multiclass (softmax over all classes, multinomial) and multilabel (one sigmoid per label, their
losses summed, so every label is its own problem with the same ``l2``: scikit-learn's one-vs-rest). The path
runs from the strongest penalty to the weakest, each point starting from the previous solution (warm start),
so the weakly regularised points, which take the most iterations from zero, start close to their optimum.

The objective and its gradient are written out (no autograd): two passes over the features per evaluation,
which is all the work there is. The features stay in float32 (half the memory traffic of float64; promoted
to float64 for tolerances below ``FLOAT32_TOL``, which float32 gradients cannot resolve); the weights, the
objective and the gradient are float64, so convergence is judged at full precision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

KINDS = ("binary", "multiclass", "multilabel")
# L-BFGS also stops when the objective no longer changes at float64 precision (scikit-learn: ftol = 64 eps);
# such a point only counts as converged when its gradient is within the tolerance too
STALL_CHANGE = 64 * torch.finfo(torch.float64).eps
# float32 features give gradients good to about 1e-6: a tighter tolerance is solved on float64 features
FLOAT32_TOL = 1e-5
MAX_EVALS_PER_ITERATION = 5  # the strong-Wolfe line search may evaluate the objective several times a step


@dataclass
class PathPoint:
    """The solution for one ``l2``: ``weight`` (outputs x D), ``bias`` (outputs), the L-BFGS iterations it
    took, whether the gradient reached the tolerance, and the training objective it reached."""

    l2: float
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    converged: bool
    objective: float
    gradient: float  # largest absolute entry of the objective's gradient at the solution

    def logits(self, features: torch.Tensor) -> torch.Tensor:
        """``N x outputs`` float64 logits of ``features`` (``N x D``)."""
        return _logits(features, self.weight, self.bias)


def data_loss(kind: str, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """The mean over samples of the task's loss: binary cross-entropy of one logit, softmax cross-entropy, or
    binary cross-entropy summed over the labels of a multilabel sample."""
    if kind == "binary":
        return F.binary_cross_entropy_with_logits(logits.reshape(-1), labels.reshape(-1).to(logits.dtype))
    if kind == "multiclass":
        return F.cross_entropy(logits, labels.long())
    per_element = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype), reduction="none")
    return per_element.sum(dim=1).mean()


def loss_and_gradient(kind: str, logits: torch.Tensor,
                      labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``data_loss`` and its gradient with respect to the ``N x outputs`` logits."""
    n = len(logits)
    if kind == "multiclass":
        log_probs = logits.log_softmax(dim=1)
        loss = -log_probs.gather(1, labels.long().view(-1, 1)).mean()
        gradient = log_probs.exp()
        gradient[torch.arange(n, device=logits.device), labels.long()] -= 1.0
        return loss, gradient / n
    target = labels.reshape(logits.shape).to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, target, reduction="sum") / n
    return loss, (torch.sigmoid(logits) - target) / n


def logistic_path(
    features: torch.Tensor,
    labels: torch.Tensor,
    kind: str,
    num_outputs: int,
    l2_values: Sequence[float],
    max_iter: int = 1000,
    tol: float = 1e-4,
    history_size: int = 20,
) -> list[PathPoint]:
    """Solve the regularised logistic regression for every value of ``l2_values`` (returned in that order).

    ``features``: ``N x D`` float32 or float64 (standardise them first: the penalty treats every dimension
    alike); ``labels``: ``N`` (binary 0/1, multiclass class numbers) or ``N x C`` 0/1 (multilabel). A point
    has converged when the largest absolute entry of the objective's gradient is at most ``tol``
    (scikit-learn's ``tol`` for ``lbfgs`` means the same); ``max_iter`` bounds the L-BFGS iterations of each
    point.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    l2_values = [float(v) for v in l2_values]
    if not l2_values or min(l2_values) <= 0:
        raise ValueError(f"l2 values must be positive and at least one, got {list(l2_values)}")
    if not features.is_floating_point() or features.dtype == torch.float16:
        features = features.float()
    if tol < FLOAT32_TOL:
        features = features.double()
    labels = labels.to(features.device)
    weight = torch.zeros(num_outputs, features.shape[1], dtype=torch.float64, device=features.device)
    bias = torch.zeros(num_outputs, dtype=torch.float64, device=features.device)
    solved: dict[int, PathPoint] = {}
    for index in sorted(range(len(l2_values)), key=lambda i: -l2_values[i]):
        solved[index] = _solve(features, labels, kind, weight, bias, l2_values[index], max_iter, tol,
                               history_size)
    return [solved[i] for i in range(len(l2_values))]


def _logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return (features @ weight.T.to(features.dtype)).to(torch.float64) + bias


def _solve(features, labels, kind, weight, bias, l2, max_iter, tol, history_size) -> PathPoint:
    """One point, warm-started from (and updating in place) ``weight`` and ``bias``."""
    optimizer = torch.optim.LBFGS(
        [weight, bias], lr=1.0, max_iter=max_iter, max_eval=max_iter * MAX_EVALS_PER_ITERATION,
        tolerance_grad=tol, tolerance_change=STALL_CHANGE, history_size=history_size,
        line_search_fn="strong_wolfe",
    )

    @torch.no_grad()
    def objective() -> torch.Tensor:
        loss, dlogits = loss_and_gradient(kind, _logits(features, weight, bias), labels)
        weight.grad = (dlogits.T.to(features.dtype) @ features).to(torch.float64) + l2 * weight
        bias.grad = dlogits.sum(dim=0)
        return loss + 0.5 * l2 * weight.pow(2).sum()

    optimizer.step(objective)
    value = objective()
    gradient = max(float(weight.grad.abs().max()), float(bias.grad.abs().max()))
    return PathPoint(
        l2=l2,
        weight=weight.clone(),
        bias=bias.clone(),
        iterations=int(optimizer.state[weight].get("n_iter", 0)),
        converged=gradient <= tol,
        objective=float(value),
        gradient=gradient,
    )
