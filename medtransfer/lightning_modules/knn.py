"""kNN evaluation of a frozen backbone on its feature stores."""

from __future__ import annotations

from typing import Literal

import torch

from ..features.knn import knn_vote, unit_rows
from ..runtime.memory import check_fits
from ..task import Task
from .frozen import FeatureCacheError, SingleBackboneModule

EPS = 1e-6


class KNN(SingleBackboneModule):
    """Weighted kNN on cosine similarity (DINO's recipe), on a frozen backbone's stored embeddings.

    The ``k`` training samples most similar to a query vote for their labels with weight
    ``exp(similarity / temperature)``; the vote shares are the class probabilities.

    The memory bank is the stored training split (its label fraction), so kNN costs one extraction and nothing
    to train: run it with ``medtransfer validate`` or ``medtransfer test``. Metrics have the usual names under
    a ``knn/`` prefix (``knn/test/auroc``); ``loss`` is the negative log-likelihood of the vote shares.

    Args:
        backbone, checkpoint, backbone_kwargs, embedding, resize_to: as for ``LinearProbe``.
        k: number of neighbours (default 20).
        temperature: softness of the similarity weighting (DINO: 0.07).
        features_dir: see ``FrozenBackboneModule`` (kNN always runs on feature stores).
        standardize: standardise bank and queries with the bank's statistics before the cosine similarity
            (centring helped on every store measured: docs/protocols.md; ``false`` is DINO's exact recipe).
        task: filled in from the datamodule.
        memory_format: see ``FrozenBackboneModule``.
    """

    def __init__(
        self,
        backbone: str = "resnet50.tv_in1k",
        checkpoint: str | None = None,
        backbone_kwargs: dict | None = None,
        embedding: str | None = None,
        resize_to: int | None = None,
        k: int = 20,
        temperature: float = 0.07,
        features_dir: str | None = None,
        standardize: bool = True,
        task: Task | None = None,
        memory_format: Literal["contiguous", "channels_last"] | None = None,
    ) -> None:
        if k < 1 or temperature <= 0:
            raise ValueError(
                f"model.k must be >= 1 and model.temperature > 0, got k={k}, temperature={temperature}"
            )
        super().__init__(task, feature_cache=True, features_dir=features_dir, standardize=standardize,
                         memory_format=memory_format)
        self.save_task_hyperparameters()
        self.build_frozen_backbone(backbone, checkpoint, backbone_kwargs, embedding, resize_to)
        self.k = k
        self.temperature = temperature
        self._bank: tuple[torch.Tensor, torch.Tensor] | None = None  # the stored rows and their labels
        self._unit_bank: torch.Tensor | None = None  # the rows as compared: standardised, unit length

    def setup(self, stage: str) -> None:
        if stage == "fit":
            raise FeatureCacheError(
                "kNN has nothing to train: run `medtransfer test` (or `validate`) with this "
                "config; the training split serves as the memory bank"
            )
        super().setup(stage)

    def load_bank(self) -> None:
        """The stored training split (its label fraction) becomes the memory bank, before any query.

        The bank is standardised and scaled to unit rows once, in float32 (``unit_rows``), rather than by
        every query batch: the one extra copy of the split kNN holds, refused up front when it cannot fit.
        """
        train = self.cached_split("train")
        bank = train.features[0].to(self.device)
        rows, dim = bank.shape
        check_fits(rows * dim * 4, f"kNN's memory bank ({rows} x {dim} training features as float32)",
                   "it holds the whole training split (the label fraction used): use a smaller "
                   "data.init_args.train_fraction, or a machine with more memory")
        self._unit_bank = unit_rows(bank, self.standardizers[0] if self.standardize else None)
        self._bank = (bank, train.labels.to(self.device))

    def on_validation_start(self) -> None:
        super().on_validation_start()
        self.load_bank()

    def on_test_start(self) -> None:
        super().on_test_start()
        self.load_bank()

    def on_predict_start(self) -> None:
        super().on_predict_start()
        self.load_bank()

    def logits(self, batch: dict) -> torch.Tensor:
        if self._bank is None:
            raise FeatureCacheError(
                "kNN has no memory bank: it is loaded from the training split's feature store when "
                "validation, test or predict starts through a Trainer"
            )
        labels = self._bank[1]
        scores = knn_vote(self.embeddings(batch)[0], self._unit_bank, labels, self.task.num_classes, self.k,
                          self.temperature, unit_bank=True)
        if self.task.kind == "multiclass":
            return scores.clamp_min(EPS).log()
        positive = scores[:, 1:] if self.task.kind == "binary" else scores
        return torch.logit(positive, eps=EPS)

    def configure_optimizers(self):
        return None

    def log_dict(self, dictionary, *args, **kwargs) -> None:
        """Log every metric under ``knn/`` (``knn/test/auroc``), apart from linear-probe numbers."""
        super().log_dict({f"knn/{name}": value for name, value in dictionary.items()}, *args, **kwargs)

    def extra_results(self) -> dict:
        return {
            "knn": {
                "k": self.k,
                "temperature": self.temperature,
                "similarity": "cosine",
                "vote": "exp(similarity / temperature)",
                "standardize": self.standardize,
            }
        }
