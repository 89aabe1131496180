"""The kNN monitor of pretraining: how well the backbone being pretrained separates the data's classes, each
validation epoch, without training anything on it.

The training split (eval transform, its labels) is embedded as the memory bank; each validation image votes
DINO-style (``features.knn.knn_vote``: its ``k`` most cosine-similar bank rows, weighted by
``exp(similarity / temperature)``), and the vote shares are scored with the task's metrics, synchronised over
DDP processes. Labels and validation images are read for this score only: the pretrained weights never
depend on them.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch import nn

from ...backbones.backbone import Backbone
from ...features.knn import knn_vote
from ...task import Task
from ..metrics import build_metrics, metric_targets


class KNNMonitor(nn.Module):
    def __init__(self, task: Task, k: int = 20, temperature: float = 0.07) -> None:
        super().__init__()
        self.task = task
        self.k = k
        self.temperature = temperature
        self.metrics = build_metrics(task)
        self._bank: tuple[torch.Tensor, torch.Tensor] | None = None
        self._bank_loader = None

    @torch.no_grad()
    def build_bank(self, backbone: Backbone, datamodule, device: torch.device) -> None:
        """Embed this process's share of the training split and gather every process's share."""
        if self._bank_loader is None:
            self._bank_loader = datamodule.eval_dataloader("train")
        features, labels = [], []
        for batch in self._bank_loader:
            features.append(backbone(batch["image"].to(device)).float())
            labels.append(batch["label"].to(device))
        self._bank = (gather_rows(torch.cat(features)), gather_rows(torch.cat(labels)))

    @torch.no_grad()
    def update(self, embeddings: torch.Tensor, labels: torch.Tensor) -> None:
        bank, bank_labels = self._bank
        scores = knn_vote(embeddings, bank, bank_labels, self.task.num_classes, self.k, self.temperature)
        probabilities = scores[:, 1] if self.task.kind == "binary" else scores
        self.metrics.update(probabilities, metric_targets(self.task, labels))

    def compute(self) -> dict[str, float]:
        values = {name: float(value) for name, value in self.metrics.compute().items()}
        self.metrics.reset()
        self._bank = None
        return values

    @property
    def ready(self) -> bool:
        return self._bank is not None

    def describe(self) -> dict:
        return {"bank": "training split (eval transform)", "queries": "validation split", "k": self.k,
                "temperature": self.temperature, "similarity": "cosine",
                "vote": "exp(similarity / temperature)"}


def gather_rows(tensor: torch.Tensor) -> torch.Tensor:
    """The rows of ``tensor`` from every DDP process, in rank order (processes may hold different numbers)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return tensor
    world = dist.get_world_size()
    count = torch.tensor([len(tensor)], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(world)]
    dist.all_gather(counts, count)
    longest = int(max(c.item() for c in counts))
    padded = tensor.new_zeros((longest, *tensor.shape[1:]))
    padded[: len(tensor)] = tensor
    parts = [torch.zeros_like(padded) for _ in range(world)]
    dist.all_gather(parts, padded)
    return torch.cat([part[: int(c.item())] for part, c in zip(parts, counts, strict=True)])
