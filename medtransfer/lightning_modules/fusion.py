"""Fusions of several backbones' embeddings into one vector (DVME and the baselines a reviewer asks for).

Every fusion takes a list of ``K`` embeddings ``B x d_k`` (one per backbone, sizes may differ) and returns a
``FusionOutput``: the fused ``B x out_dim`` embedding, ready for a linear classifier, and the per-backbone
mixing weights ``B x K`` (rows sum to 1) where the fusion learns how to mix its sources (``importance.py``
says what they do and do not tell about which backbone matters):

- ``dvme``: Dynamic Visual Meta-Embedding (Truong et al. 2021). Each embedding is projected to
  ``proj_dim``, tagged with a learned source embedding, and the ``K`` tokens pass through ViT-style pre-norm
  self-attention blocks that attend across backbones; the output tokens are concatenated and projected to
  ``proj_dim``. Mixing weights: the mean attention each backbone's token receives (over layers, heads and
  querying tokens).
- ``dme``: Dynamic Meta-Embeddings (Kiela et al. 2018). A softmax over a linear score of each projection
  weights their sum. Mixing weights: those softmax weights.
- ``concat``: the raw embeddings concatenated (no learned mixing: ``None``).
- ``mean``: the average of the projections (fixed equal mixing: ``None``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import torch
from torch import nn

FUSIONS = ("dvme", "dme", "concat", "mean")


class FusionOutput(NamedTuple):
    embedding: torch.Tensor
    """``B x out_dim`` fused embedding."""
    mixing: torch.Tensor | None
    """``B x K`` per-backbone mixing weights (rows sum to 1); ``None`` for fusions that learn no mixing."""


class Fusion(nn.Module):
    """Base: checks the inputs against the embedding sizes it was built for."""

    out_dim: int

    def __init__(self, embed_dims: Sequence[int]) -> None:
        super().__init__()
        if len(embed_dims) == 0:
            raise ValueError("a fusion needs at least one backbone embedding size")
        self.embed_dims = tuple(int(d) for d in embed_dims)

    @property
    def num_sources(self) -> int:
        return len(self.embed_dims)

    def check_inputs(self, embeddings: Sequence[torch.Tensor]) -> None:
        got = tuple(int(e.shape[-1]) for e in embeddings)
        if got != self.embed_dims:
            raise ValueError(f"{type(self).__name__} was built for embeddings of sizes "
                             f"{list(self.embed_dims)} (one per backbone), got {list(got)}")

    def forward(self, embeddings: Sequence[torch.Tensor]) -> FusionOutput:
        raise NotImplementedError


def projections(embed_dims: Sequence[int], proj_dim: int) -> nn.ModuleList:
    """``z_k = W_k e_k + b_k``: one linear map per backbone to the common size."""
    return nn.ModuleList(nn.Linear(d, proj_dim) for d in embed_dims)


def project(layers: nn.ModuleList, embeddings: Sequence[torch.Tensor]) -> torch.Tensor:
    """``B x K x proj_dim`` tokens from the ``K`` embeddings."""
    return torch.stack([layer(e) for layer, e in zip(layers, embeddings, strict=True)], dim=1)


class CrossBackboneAttention(nn.Module):
    """Multi-head self-attention over the ``K`` backbone tokens that also returns its attention weights
    (before dropout, so each query's row sums to 1)."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"model.proj_dim ({dim}) must be divisible by model.heads ({heads})")
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.qkv = nn.Linear(dim, 3 * dim)
        self.attn_drop = nn.Dropout(dropout)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        b, k, d = x.shape
        q, key, v = self.qkv(x).reshape(b, k, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        weights = ((q * self.scale) @ key.transpose(-2, -1)).softmax(dim=-1)  # B x heads x K(query) x K(key)
        out = (self.attn_drop(weights) @ v).transpose(1, 2).reshape(b, k, d)
        return self.proj_drop(self.proj(out)), weights


class FusionBlock(nn.Module):
    """ViT-style pre-norm block: ``x + attn(norm(x))`` then ``x + mlp(norm(x))``."""

    def __init__(self, dim: int, heads: int, dropout: float = 0.0, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(dim * mlp_ratio)
        self.norm1 = nn.LayerNorm(dim)
        self.attn = CrossBackboneAttention(dim, heads, dropout)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, dim), nn.Dropout(dropout))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        attended, weights = self.attn(self.norm1(x))
        x = x + attended
        return x + self.mlp(self.norm2(x)), weights


class DVMEFusion(Fusion):
    """Project, tag with the source, self-attend across backbones, concatenate the output tokens, project."""

    def __init__(self, embed_dims: Sequence[int], proj_dim: int = 512, layers: int = 1, heads: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__(embed_dims)
        if layers < 1:
            raise ValueError(f"model.layers must be at least 1 for the dvme fusion, got {layers}")
        self.projections = projections(self.embed_dims, proj_dim)
        self.source_embedding = nn.Parameter(torch.zeros(self.num_sources, proj_dim))
        nn.init.trunc_normal_(self.source_embedding, std=0.02)
        self.blocks = nn.ModuleList(FusionBlock(proj_dim, heads, dropout) for _ in range(layers))
        self.norm = nn.LayerNorm(proj_dim)
        self.output = nn.Linear(self.num_sources * proj_dim, proj_dim)
        self.out_dim = proj_dim

    def encode(self, embeddings: Sequence[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``B x K x proj_dim`` output tokens (normed) and the attention each token receives (``B x K``)."""
        self.check_inputs(embeddings)
        tokens = project(self.projections, embeddings) + self.source_embedding
        received = []
        for block in self.blocks:
            tokens, weights = block(tokens)
            received.append(weights.float().mean(dim=(1, 2)))  # over heads and querying tokens: B x K
        return self.norm(tokens), torch.stack(received).mean(dim=0)

    def forward(self, embeddings: Sequence[torch.Tensor]) -> FusionOutput:
        tokens, received = self.encode(embeddings)
        return FusionOutput(self.output(tokens.flatten(1)), received)


class DMEFusion(Fusion):
    """``sum_k softmax_k(a . z_k + b) z_k`` over the projections ``z_k`` (Kiela et al. 2018, DME)."""

    def __init__(self, embed_dims: Sequence[int], proj_dim: int = 512) -> None:
        super().__init__(embed_dims)
        self.projections = projections(self.embed_dims, proj_dim)
        self.score = nn.Linear(proj_dim, 1)
        self.out_dim = proj_dim

    def forward(self, embeddings: Sequence[torch.Tensor]) -> FusionOutput:
        self.check_inputs(embeddings)
        tokens = project(self.projections, embeddings)
        weights = self.score(tokens).squeeze(-1).float().softmax(dim=1)  # B x K
        return FusionOutput((weights.unsqueeze(-1).to(tokens.dtype) * tokens).sum(dim=1), weights)


class ConcatFusion(Fusion):
    """The raw embeddings side by side; the classifier is then a linear probe on the concatenation."""

    def __init__(self, embed_dims: Sequence[int]) -> None:
        super().__init__(embed_dims)
        self.out_dim = sum(self.embed_dims)

    def forward(self, embeddings: Sequence[torch.Tensor]) -> FusionOutput:
        self.check_inputs(embeddings)
        return FusionOutput(torch.cat(list(embeddings), dim=1), None)


class MeanFusion(Fusion):
    """The average of the per-backbone projections."""

    def __init__(self, embed_dims: Sequence[int], proj_dim: int = 512) -> None:
        super().__init__(embed_dims)
        self.projections = projections(self.embed_dims, proj_dim)
        self.out_dim = proj_dim

    def forward(self, embeddings: Sequence[torch.Tensor]) -> FusionOutput:
        self.check_inputs(embeddings)
        return FusionOutput(project(self.projections, embeddings).mean(dim=1), None)


def build_fusion(name: str, embed_dims: Sequence[int], proj_dim: int = 512, layers: int = 1, heads: int = 8,
                 dropout: float = 0.0) -> Fusion:
    """The fusion called ``name`` (one of ``FUSIONS``) for embeddings of sizes ``embed_dims``."""
    if name == "dvme":
        return DVMEFusion(embed_dims, proj_dim, layers, heads, dropout)
    if name == "dme":
        return DMEFusion(embed_dims, proj_dim)
    if name == "concat":
        return ConcatFusion(embed_dims)
    if name == "mean":
        return MeanFusion(embed_dims, proj_dim)
    raise ValueError(f"model.fusion must be one of {list(FUSIONS)}, got {name!r}")
