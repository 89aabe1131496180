"""AdamW or SGD over heads stacked in one tensor, each head with its own learning rate and weight decay."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import torch

KINDS = ("adamw", "sgd")


class HeadwiseOptimizer(torch.optim.Optimizer):
    """The update ``torch.optim.AdamW`` (or ``SGD`` with momentum 0.9, L2 weight decay) would make on each
    head alone, made for all heads at once on parameters whose first dimension indexes the head.

    A sweep of H heads as H parameter groups costs H optimizer loops per step, which on cached features is
    most of the step; stacked, it is one loop however many heads there are.

    The group's ``lr`` is the schedule's factor (1.0 until an ``LRScheduler`` changes it): head ``h`` steps at
    ``lr * head_lrs[h]`` with weight decay ``head_weight_decays[h]``.
    """

    def __init__(
        self,
        params: Iterable[torch.nn.Parameter],
        head_lrs: Sequence[float],
        head_weight_decays: Sequence[float],
        kind: str = "adamw",
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        momentum: float = 0.9,
    ) -> None:
        if kind not in KINDS:
            raise ValueError(f"optimizer kind must be one of {KINDS}, got {kind!r}")
        if len(head_lrs) != len(head_weight_decays):
            raise ValueError(f"{len(head_lrs)} learning rates but {len(head_weight_decays)} weight decays")
        params = list(params)
        for p in params:
            if p.dim() == 0 or p.shape[0] != len(head_lrs):
                raise ValueError(
                    f"a parameter of shape {tuple(p.shape)} is not a stack of {len(head_lrs)} heads"
                )
        defaults = {
            "lr": 1.0,
            "head_lrs": [float(v) for v in head_lrs],
            "head_weight_decays": [float(v) for v in head_weight_decays],
            "kind": kind,
            "betas": betas,
            "eps": eps,
            "momentum": momentum,
        }
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for param in group["params"]:
                if param.grad is None:
                    continue
                per_head = (-1,) + (1,) * (param.dim() - 1)
                lr = torch.tensor(group["head_lrs"], dtype=param.dtype, device=param.device).view(per_head)
                wd = torch.tensor(group["head_weight_decays"], dtype=param.dtype, device=param.device)
                update = _adamw if group["kind"] == "adamw" else _sgd
                update(param, self.state[param], lr * group["lr"], wd.view(per_head), group)
        return loss


def _adamw(param: torch.Tensor, state: dict, lr: torch.Tensor, wd: torch.Tensor, group: dict) -> None:
    """torch.optim.AdamW's single-tensor update (amsgrad off), with per-head ``lr`` and ``wd``."""
    grad = param.grad
    if not state:
        state["step"] = 0
        state["exp_avg"] = torch.zeros_like(param)
        state["exp_avg_sq"] = torch.zeros_like(param)
    state["step"] += 1
    beta1, beta2 = group["betas"]
    param.mul_(1 - lr * wd)
    state["exp_avg"].lerp_(grad, 1 - beta1)
    state["exp_avg_sq"].mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
    step_size = lr / (1 - beta1 ** state["step"])
    denom = (state["exp_avg_sq"].sqrt() / (1 - beta2 ** state["step"]) ** 0.5).add_(group["eps"])
    param.sub_(step_size * state["exp_avg"] / denom)


def _sgd(param: torch.Tensor, state: dict, lr: torch.Tensor, wd: torch.Tensor, group: dict) -> None:
    """torch.optim.SGD's update with momentum (no dampening, no Nesterov) and L2 weight decay, per head."""
    direction = param.grad + wd * param
    if "momentum_buffer" not in state:
        state["momentum_buffer"] = direction.clone()
    else:
        state["momentum_buffer"].mul_(group["momentum"]).add_(direction)
    param.sub_(lr * state["momentum_buffer"])
