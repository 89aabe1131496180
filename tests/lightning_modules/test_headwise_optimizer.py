"""HeadwiseOptimizer makes, for all heads at once, the update torch's optimizer makes on each head alone."""

from __future__ import annotations

import pytest
import torch

from medtransfer.lightning_modules.head_stack import HeadStack
from medtransfer.lightning_modules.headwise_optimizer import HeadwiseOptimizer

LRS = [0.0, 1e-3, 3e-2]
WDS = [0.0, 0.5, 0.05]


def reference(kind: str, weight: torch.Tensor, bias: torch.Tensor, lr: float, wd: float):
    params = [torch.nn.Parameter(weight.clone()), torch.nn.Parameter(bias.clone())]
    if kind == "adamw":
        return params, torch.optim.AdamW(params, lr=lr, weight_decay=wd)
    return params, torch.optim.SGD(params, lr=lr, momentum=0.9, weight_decay=wd)


@pytest.mark.parametrize("kind", ["adamw", "sgd"])
def test_stacked_steps_equal_separate_torch_optimizers(kind):
    torch.manual_seed(0)
    stack = HeadStack(len(LRS), 8, 3)
    optimizer = HeadwiseOptimizer(stack.parameters(), LRS, WDS, kind=kind)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1.0 / (1 + step))
    separate = [reference(kind, stack.weight[h].detach(), stack.bias[h].detach(), lr, wd)
                for h, (lr, wd) in enumerate(zip(LRS, WDS, strict=True))]
    schedules = [torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0 / (1 + step)) for _, opt in separate]
    for _ in range(5):
        x, target = torch.randn(16, 8), torch.randn(16, 3)
        optimizer.zero_grad()
        ((stack(x) - target) ** 2).mean(dim=(1, 2)).sum().backward()
        optimizer.step()
        schedule.step()
        for (params, opt), sched in zip(separate, schedules, strict=True):
            opt.zero_grad()
            ((torch.nn.functional.linear(x, *params) - target) ** 2).mean().backward()
            opt.step()
            sched.step()
    for h, (params, _) in enumerate(separate):
        torch.testing.assert_close(stack.weight[h], params[0], rtol=1e-5, atol=1e-7)
        torch.testing.assert_close(stack.bias[h], params[1], rtol=1e-5, atol=1e-7)
    assert torch.equal(stack.weight[0], separate[0][0][0])  # lr 0 leaves its head exactly as it was


def test_stack_equals_its_heads_one_by_one():
    torch.manual_seed(0)
    stack, x = HeadStack(4, 6, 2), torch.randn(5, 6)
    for h in range(4):
        torch.testing.assert_close(stack(x)[h], stack.head(h, x))


def test_bad_shapes_and_kinds_are_refused():
    stack = HeadStack(3, 4, 1)
    with pytest.raises(ValueError, match="not a stack of 2 heads"):
        HeadwiseOptimizer(stack.parameters(), [1e-3, 1e-2], [0.0, 0.0])
    with pytest.raises(ValueError, match="2 learning rates but 1 weight decays"):
        HeadwiseOptimizer(stack.parameters(), [1e-3, 1e-2], [0.0])
    with pytest.raises(ValueError, match="kind must be one of"):
        HeadwiseOptimizer(stack.parameters(), [1e-3] * 3, [0.0] * 3, kind="lamb")
