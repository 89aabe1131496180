"""Exact linear evaluation: L2-regularised logistic regression solved to convergence with full-batch L-BFGS,
along a path of regularisation strengths (the CLIP / DINOv2 linear probe).

Each point of the path minimises ``mean_i loss_i + l2 / 2 * ||W||^2`` (the bias is not penalised), which is
scikit-learn's ``LogisticRegression(C=1 / (l2 * n))`` for ``n`` training samples: binary (one logit,
sigmoid), multiclass (softmax over all classes, multinomial) and multilabel (one sigmoid per label, their
losses summed, so every label is its own problem with the same ``l2``: scikit-learn's one-vs-rest). The path
runs from the strongest penalty to the weakest, each point starting from the previous solutions (warm start,
extrapolated along the path when that lowers the objective), so the weakly regularised points, which take
the most iterations from zero, start close to their optimum.

A point has converged when the largest entry of the objective's gradient is within ``tol`` scaled by the
objective relative to its value at zero weights (``PathSolver``): scikit-learn's rule where the objective is
near that value, and proportionally tighter as it shrinks on nearly separable features, where a fixed bound
is met far from the optimum.

The objective and its gradient are written out (no autograd): two passes over the features per evaluation,
which is all the work there is. The features stay in float32 (half the memory traffic of float64; promoted
to float64 for tolerances below ``FLOAT32_TOL``, which float32 gradients cannot resolve); the weights, the
objective and the gradient are float64, so convergence is judged at full precision, and the logits are
updated by the change in weight between evaluations, so their float32 rounding shrinks with the steps.
With a few outputs these products are matrix-vector products on one thread, so the solve takes one thread
(``solver_threads``): a second one would only spin.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..runtime.threads import solver_threads, torch_threads

# the default gradient tolerance, relative to the objective (docs/protocols.md, "Convergence relative to the
# objective"): every point of the path within 0.002 validation AUROC of scikit-learn's solution at tol 1e-8
DEFAULT_TOL = 5e-5

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
    took, whether the gradient reached its bound, and the training objective it reached."""

    l2: float
    weight: torch.Tensor
    bias: torch.Tensor
    iterations: int
    converged: bool
    objective: float
    gradient: float  # largest absolute entry of the objective's gradient at the solution
    gradient_bound: float  # the bound ``gradient`` had to reach: ``tol`` relative to the objective

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
    tol: float = DEFAULT_TOL,
    history_size: int = 20,
) -> list[PathPoint]:
    """Solve the regularised logistic regression for every value of ``l2_values`` (returned in that order).

    ``features``: ``N x D`` float32 or float64 (standardise them first: the penalty treats every dimension
    alike); ``labels``: ``N`` (binary 0/1, multiclass class numbers) or ``N x C`` 0/1 (multilabel). A point
    has converged when the largest absolute entry of the objective's gradient is at most
    ``tol * objective / objective at zero weights`` (``PathSolver.gradient_bound``): ``tol`` means what
    scikit-learn's ``tol`` means for ``lbfgs`` where the objective is that of zero weights, and the bound
    tightens as the objective shrinks. ``max_iter`` bounds the L-BFGS iterations of each point.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    l2_values = [float(v) for v in l2_values]
    if not l2_values or min(l2_values) <= 0:
        raise ValueError(f"l2 values must be positive and at least one, got {list(l2_values)}")
    solver = PathSolver(features, labels, kind, num_outputs, tol, history_size)
    solved: dict[int, PathPoint] = {}
    with torch_threads(solver_threads(num_outputs, features.device)):
        for index in sorted(range(len(l2_values)), key=lambda i: -l2_values[i]):
            solver.extrapolate(l2_values[index], list(solved.values())[-2:])
            solved[index] = solver.solve(l2_values[index], max_iter)
    return [solved[i] for i in range(len(l2_values))]


def _logits(features: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    return (features @ weight.T.to(features.dtype)).to(torch.float64) + bias


class PathSolver:
    """The points of one path, solved in turn, each from the weights the previous ones left (warm start).

    Convergence is relative to the problem. The gradient of a logistic loss is bounded by the loss itself, so
    on a nearly separable store, where the weakly penalised objective falls to a few thousandths, a fixed
    bound of 1e-4 is met far from the optimum: such points stopped within a few iterations of the previous
    penalty's solution, 0.02 validation AUROC from scikit-learn's. The bound is ``tol * objective / objective
    at zero weights``: ``tol`` where the path starts, never looser, and tighter in proportion as the
    objective shrinks."""

    def __init__(self, features: torch.Tensor, labels: torch.Tensor, kind: str, num_outputs: int, tol: float,
                 history_size: int) -> None:
        if not features.is_floating_point() or features.dtype == torch.float16:
            features = features.float()
        self.features = features.double() if tol < FLOAT32_TOL else features
        self.labels = labels.to(features.device)
        self.kind, self.tol, self.history_size = kind, tol, history_size
        self.weight = torch.zeros(num_outputs, features.shape[1], dtype=torch.float64, device=features.device)
        self.bias = torch.zeros(num_outputs, dtype=torch.float64, device=features.device)
        zero_logits = torch.zeros(len(features), num_outputs, dtype=torch.float64, device=features.device)
        self.zero_objective = float(data_loss(kind, zero_logits, self.labels))
        self.products = zero_logits  # features @ weight.T at ``product_weight`` (``track_products``)
        self.product_weight = self.weight.clone()

    def gradient_bound(self, objective: float) -> float:
        """The gradient bound of a point whose objective is ``objective``."""
        return self.tol * objective / self.zero_objective

    @torch.no_grad()
    def evaluate(self, l2: float) -> float:
        """The objective at the current weights; its gradient goes to ``weight.grad`` and ``bias.grad``."""
        loss, dlogits = loss_and_gradient(self.kind, self.track_products() + self.bias, self.labels)
        self.weight.grad = (dlogits.T.to(self.features.dtype) @ self.features).to(torch.float64)
        self.weight.grad += l2 * self.weight
        self.bias.grad = dlogits.sum(dim=0)
        return float(loss + 0.5 * l2 * self.weight.pow(2).sum())

    @torch.no_grad()
    def track_products(self) -> torch.Tensor:
        """``features @ weight.T`` at the current weights, updated by the product of the features with the
        change in weight since the last evaluation. A float32 product rounds to about 1e-6 of its size: of
        the whole weights, that is more than a late step of a weakly penalised point lowers the objective,
        and its line search fails; of the change, it shrinks with the steps."""
        change = (self.weight - self.product_weight).T.to(self.features.dtype)
        self.products += (self.features @ change).to(torch.float64)
        self.product_weight.copy_(self.weight)
        return self.products

    def largest_gradient(self) -> float:
        return max(float(self.weight.grad.abs().max()), float(self.bias.grad.abs().max()))

    def extrapolate(self, l2: float, previous: list[PathPoint]) -> None:
        """Start ``l2`` from the line through the two previous solutions (in log ``l2``) rather than from the
        last one, if that lowers its objective: along a path the weights move steadily."""
        if len(previous) < 2 or previous[0].l2 == previous[1].l2:
            return
        older, last = previous
        step = math.log(l2 / last.l2) / math.log(last.l2 / older.l2)
        start = self.evaluate(l2)
        self.weight.add_(last.weight - older.weight, alpha=step)
        self.bias.add_(last.bias - older.bias, alpha=step)
        if self.evaluate(l2) > start:
            self.weight.copy_(last.weight)
            self.bias.copy_(last.bias)

    def solve(self, l2: float, max_iter: int) -> PathPoint:
        """One point: L-BFGS (its history kept) until the gradient is within the bound of the objective it
        has reached. The bound is set from the objective when L-BFGS starts or resumes, so L-BFGS resumes
        while the objective has fallen since and tightened it; a solve that stalls short of its bound (its
        line search finds no lower objective) or runs out of ``max_iter`` has not converged."""
        optimizer = torch.optim.LBFGS(
            [self.weight, self.bias], lr=1.0, tolerance_change=STALL_CHANGE, history_size=self.history_size,
            line_search_fn="strong_wolfe",
        )
        iterations, given = 0, math.inf
        while True:
            objective = self.evaluate(l2)
            gradient, bound = self.largest_gradient(), self.gradient_bound(objective)
            if gradient <= bound or gradient > given or iterations >= max_iter:
                break
            left = max_iter - iterations
            optimizer.param_groups[0].update(tolerance_grad=bound, max_iter=left,
                                             max_eval=left * MAX_EVALS_PER_ITERATION)
            optimizer.step(lambda: self.evaluate(l2))
            iterations, given = int(optimizer.state[self.weight].get("n_iter", 0)), bound
        return PathPoint(l2=l2, weight=self.weight.clone(), bias=self.bias.clone(), iterations=iterations,
                         converged=gradient <= bound, objective=objective, gradient=gradient,
                         gradient_bound=bound)
