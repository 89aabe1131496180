"""Many independent linear heads on the same embeddings, held as one weight and applied in one product."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class HeadStack(nn.Module):
    """``heads`` linear layers ``in_features -> out_features``, as an ``H x out x in`` weight and an
    ``H x out`` bias (the layout ``HeadwiseOptimizer`` steps), each initialised like its own ``nn.Linear``."""

    def __init__(self, heads: int, in_features: int, out_features: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(heads, out_features, in_features))
        self.bias = nn.Parameter(torch.empty(heads, out_features))
        bound = 1 / math.sqrt(in_features)  # nn.Linear's default: kaiming_uniform(a=sqrt(5)) and its bias
        nn.init.uniform_(self.weight, -bound, bound)
        nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``H x B x out``: every head on ``x`` (``B x in``), one matrix product.

        The product is taken as ``weight @ x.T``: with the few columns of a sweep's heads on the right
        (``x @ weight.T``) MKL's product ran 1.5x slower on the CPU, forward and backward.
        """
        heads, out, dim = self.weight.shape
        logits = torch.addmm(self.bias.reshape(heads * out, 1), self.weight.reshape(heads * out, dim), x.t())
        return logits.view(heads, out, len(x)).transpose(1, 2)

    def head(self, index: int, x: torch.Tensor) -> torch.Tensor:
        """``B x out``: head ``index`` alone."""
        return F.linear(x, self.weight[index], self.bias[index])
