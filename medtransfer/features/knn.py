"""Weighted k-nearest-neighbour classification on embeddings (the kNN evaluation of DINO, Caron et al.
2021)."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

BANK_CHUNK = 65_536  # bank rows compared at once, so the similarity matrix stays small on large stores
UNIT_ROWS_CHUNK = 16_384  # bank rows prepared at once: their float32 temporaries stay a few hundred MiB


@torch.no_grad()
def unit_rows(bank: torch.Tensor, transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
              chunk: int = UNIT_ROWS_CHUNK) -> torch.Tensor:
    """The bank as ``knn_vote`` compares it, prepared once: ``transform`` (e.g. the standardisation) of each
    row, then scaled to unit length, as float32.

    It is built ``chunk`` rows at a time into one float32 tensor (262,144 x 2,048: 2 GiB), so no query batch
    converts, standardises or normalises the bank again; give it to ``knn_vote`` with ``unit_bank=True``.
    """
    out = torch.empty(bank.shape, dtype=torch.float32, device=bank.device)
    for start in range(0, len(bank), chunk):
        rows = bank[start : start + chunk]
        rows = transform(rows) if transform is not None else rows
        out[start : start + chunk] = F.normalize(rows.float(), dim=1)
    return out


@torch.no_grad()
def knn_vote(
    queries: torch.Tensor,
    bank: torch.Tensor,
    bank_labels: torch.Tensor,
    num_classes: int,
    k: int = 20,
    temperature: float = 0.07,
    unit_bank: bool = False,
) -> torch.Tensor:
    """Class scores ``B x C`` of ``queries`` from their ``k`` most cosine-similar rows of ``bank``.

    Each neighbour votes with weight ``exp(similarity / temperature)`` for its label: a one-hot class for long
    ``bank_labels`` (``N``), or its label vector for multilabel float ``bank_labels`` (``N x C``). Scores are
    the weighted votes divided by the total weight, so single-label rows sum to 1 and multilabel entries are
    the weighted share of neighbours with that finding. ``unit_bank``: the bank's rows are float32 of unit
    length already (``unit_rows``), and are used as they are.
    """
    if len(bank) == 0:
        raise ValueError("kNN needs a non-empty training split as its memory bank")
    k = min(k, len(bank))
    q = F.normalize(queries.float(), dim=1)
    sims, rows = [], []
    for start in range(0, len(bank), BANK_CHUNK):
        chunk = bank[start : start + BANK_CHUNK]
        chunk = chunk if unit_bank else F.normalize(chunk.float(), dim=1)
        s, r = (q @ chunk.T).topk(min(k, len(chunk)), dim=1)
        sims.append(s)
        rows.append(r + start)
    similarity, index = torch.cat(sims, dim=1).topk(k, dim=1)
    neighbours = torch.cat(rows, dim=1).gather(1, index)
    weights = (
        (similarity - similarity[:, :1]) / temperature
    ).exp()  # shifted by the top similarity: no overflow
    labels = bank_labels[neighbours]
    votes = labels.float() if labels.ndim == 3 else F.one_hot(labels.long(), num_classes).float()
    return (weights.unsqueeze(-1) * votes).sum(dim=1) / weights.sum(dim=1, keepdim=True)
