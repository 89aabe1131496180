"""DVME: Dynamic Visual Meta-Embedding, one classifier over the fused embeddings of several backbones.

One classifier over the fused embeddings of several pretrained backbones (Truong et al. 2021,
arXiv:2108.10048), with the ``dme``, ``concat`` and ``mean`` fusions as baselines.

What a run reports besides the task metrics (TensorBoard scalars each epoch, and ``extra["dvme"]`` in
results.json from the last evaluated split, the test split after ``fit``)::

    "dvme": {"fusion": "dvme", "mode": "frozen", "backbones": ["resnet50.simclr_in1k", ...], "split": "test",
             "importance": {"overall": {backbone: share}, "per_class": {class: {backbone: share}}},
             "attention": {...same layout...}}   # "dme_weights" for fusion dme; neither for concat/mean

``importance`` is the ablation share (``importance.py``), logged as ``{val,test}/importance/<backbone>``
and, at test time, ``test/importance/<class>/<backbone>``; ``attention`` (``dme_weights``) are the fusion's
own mixing weights, logged as ``{train,val,test}/attention/<backbone>``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Literal

import torch
from torch import nn

from ..backbones import create_backbone
from ..backbones.backbone import Backbone
from ..backbones.factory import names_weights
from ..errors import ConfigValueError
from ..task import SPLITS, Task
from .base import Optimizer, Schedule, check_lr_multiplier
from .frozen import FrozenBackboneModule, lay_out
from .fusion import FUSIONS, build_fusion
from .importance import EmbeddingMeans, ImportanceMeter, ablation_importance, importance_table

MODES = ("frozen", "end_to_end")
PAPER_BACKBONES = ("resnet50.simclr_in1k", "resnet50.swav_in1k", "vit_small_patch16_224.dino")
MIXING_NAMES = {"dvme": "attention", "dme": "dme_weights"}


@dataclass
class BackboneSpec:
    """One backbone of the fusion. In YAML a plain name, or a mapping with these keys.

    Args:
        name: registry weights (``resnet50.swav_in1k``) or any timm architecture.
        checkpoint: a local weights file for ``name`` (see ``medtransfer weights``).
        backbone_kwargs: extra timm arguments (e.g. ``img_size: 32`` for a ViT on small images).
        embedding: embedding recipe override (e.g. ``cls_last4``); default: the weights' own.
        resize_to: resize the batch on the device to this side for this backbone only (default: as loaded).
    """

    name: str
    checkpoint: str | None = None
    backbone_kwargs: dict | None = None
    embedding: str | None = None
    resize_to: int | None = None


def check_distinct_backbones(specs: list[BackboneSpec]) -> None:
    """Refuse one set of weights listed twice with the same settings.

    Its embedding would be fused with a copy of itself (frozen, the very same numbers), and the result read as
    a fusion of two backbones. One architecture with two checkpoints (SimCLR and BYOL ResNet-18s), embeddings
    or input sizes is fine, and so is a random-init architecture twice (two different initialisations).
    """
    first: dict[str, int] = {}
    for number, spec in enumerate(specs, 1):
        if not has_fixed_weights(spec):
            continue
        key = json.dumps(asdict(spec), sort_keys=True, default=str)
        if key in first:
            raise ConfigValueError(
                f"model.init_args.backbones: entries {first[key]} and {number} are the same backbone "
                f"({spec.name!r}, checkpoint {spec.checkpoint}): DVME would fuse its embedding with a copy "
                "of itself; give each entry other weights (a checkpoint), or list it once")
        first[key] = number


def has_fixed_weights(spec: BackboneSpec) -> bool:
    """Whether the entry loads given weights (a checkpoint, or weights its name names).

    The other entries are random initialisations of an architecture, different each time.
    """
    return spec.checkpoint is not None or names_weights(spec.name)


def as_spec(entry: BackboneSpec | str | dict) -> BackboneSpec:
    """A backbone entry of ``model.backbones`` as a ``BackboneSpec``."""
    if isinstance(entry, BackboneSpec):
        return entry
    if isinstance(entry, str):
        return BackboneSpec(entry)
    if isinstance(entry, dict):
        allowed = {f.name for f in fields(BackboneSpec)}
        unknown = sorted(set(entry) - allowed)
        if unknown or "name" not in entry:
            raise ValueError(f"model.backbones entry {entry}: expected the keys {sorted(allowed)} with at "
                             "least 'name'" + (f"; unknown: {unknown}" if unknown else ""))
        return BackboneSpec(**entry)
    raise ValueError(f"model.backbones entries are backbone names or mappings with a 'name', got {entry!r}")


def unique_labels(names: list[str]) -> list[str]:
    """Backbone names, numbered where one appears more than once (``resnet18#1``, ``resnet18#2``)."""
    return [f"{n}#{names[:i].count(n) + 1}" if names.count(n) > 1 else n for i, n in enumerate(names)]


class DVME(FrozenBackboneModule):
    """A classifier over the fusion of several backbones' embeddings.

    DVME (``fusion: dvme``): each embedding ``e_k`` is projected to ``proj_dim`` (``z_k = W_k e_k + b_k``),
    tagged with a learned per-backbone embedding, and the ``K`` tokens pass through ``layers`` ViT-style
    pre-norm self-attention blocks that attend across backbones; the output tokens are concatenated, projected
    to ``proj_dim`` and a linear head gives the task's logits. Every backbone keeps its own preprocessing: the
    one uint8 batch is normalised (and resized with ``resize_to``) per backbone on the device.

    Modes: ``frozen`` (default) keeps the backbones fixed and, with ``feature_cache`` on, trains on their
    feature stores aligned by sample id, at about the cost of a linear probe once the stores exist;
    ``end_to_end`` trains the backbones too, at ``lr * backbone_lr_multiplier`` (mixed precision and DDP
    through the trainer, as for ``Finetune``; ``feature_cache`` does not apply).

    Args:
        backbones: the backbones to fuse, names or ``BackboneSpec`` mappings (default: the paper's SimCLR,
            SwAV and DINO ViT-S/16).
        fusion: ``dvme``, ``dme`` (Kiela et al. 2018), ``concat`` (raw embeddings side by side) or ``mean``
            (average of the projections).
        proj_dim: the common size of the projections and of the fused embedding.
        layers, heads: self-attention blocks and heads of the ``dvme`` fusion (``proj_dim`` divisible by
            ``heads``).
        dropout: dropout in the attention blocks and before the linear head.
        mode: ``frozen`` or ``end_to_end``.
        backbone_lr_multiplier: end to end only: the backbones learn at ``lr * backbone_lr_multiplier``.
        feature_cache, features_dir, standardize: frozen mode: see ``FrozenBackboneModule`` (each backbone's
            embedding is standardised with its own training statistics before its projection).
        memory_format: ``channels_last`` lays out every convolutional backbone (weights and each batch) NHWC,
            in both modes: the extraction of frozen stores, and end to end the training steps (with
            ``trainer.precision: bf16-mixed`` on GPUs with tensor cores); ViTs keep their layout. Outputs
            equal the default layout's to float rounding. Null (the default) or ``contiguous``: the default
            layout.
        task, lr, weight_decay, optimizer, scheduler, warmup_epochs: see ``TaskModule`` (no weight decay on
            biases, norms and the source embeddings).
    """

    def __init__(
        self,
        backbones: list[BackboneSpec | str] | None = None,
        fusion: Literal["dvme", "dme", "concat", "mean"] = "dvme",
        proj_dim: int = 512,
        layers: int = 1,
        heads: int = 8,
        dropout: float = 0.1,
        mode: Literal["frozen", "end_to_end"] = "frozen",
        backbone_lr_multiplier: float = 0.1,
        feature_cache: bool = True,
        features_dir: str | None = None,
        standardize: bool = True,
        task: Task | None = None,
        lr: float = 1e-3,
        weight_decay: float = 1e-4,
        optimizer: Optimizer = "adamw",
        scheduler: Schedule = "cosine",
        warmup_epochs: float = 0.0,
        memory_format: Literal["contiguous", "channels_last"] | None = None,
    ) -> None:
        if mode not in MODES:
            raise ValueError(f"model.mode must be one of {list(MODES)}, got {mode!r}")
        if fusion not in FUSIONS:
            raise ValueError(f"model.fusion must be one of {list(FUSIONS)}, got {fusion!r}")
        super().__init__(task, lr, weight_decay, optimizer, scheduler, warmup_epochs,
                         feature_cache=feature_cache and mode == "frozen", features_dir=features_dir,
                         standardize=standardize and mode == "frozen", memory_format=memory_format)
        check_lr_multiplier(backbone_lr_multiplier)
        specs = [as_spec(b) for b in (PAPER_BACKBONES if backbones is None else backbones)]
        if not specs:
            raise ValueError("model.backbones is empty: list at least one backbone to fuse")
        check_distinct_backbones(specs)
        self.save_task_hyperparameters()
        self.hparams["backbones"] = [asdict(s) for s in specs]  # plain data: loadable with weights_only
        self.mode = mode
        self.fusion_name = fusion
        self.backbone_lr_multiplier = backbone_lr_multiplier
        self.backbones = nn.ModuleList(self._create(spec) for spec in specs)
        self.init_standardizers()
        self.backbone_labels = unique_labels([spec.name for spec in specs])
        dims = [b.embed_dim for b in self.backbones]
        self.fusion = build_fusion(fusion, dims, proj_dim, layers, heads, dropout)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.fusion.out_dim, self.task.num_outputs))
        self.embedding_means = EmbeddingMeans(dims)
        self.mixing_name = MIXING_NAMES.get(fusion)
        # ablation importance needs the training means: val and test only; mixing weights in every stage
        self.importance_meters = self._meters(("val", "test"))
        self.mixing_meters = self._meters(SPLITS if self.mixing_name else ())
        self.epoch_importance: dict[str, dict] = {}
        self._last: tuple[list[torch.Tensor], torch.Tensor | None] | None = None

    def _create(self, spec: BackboneSpec) -> Backbone:
        backbone = create_backbone(spec.name, checkpoint=spec.checkpoint, embedding=spec.embedding,
                                   resize_to=spec.resize_to, **(spec.backbone_kwargs or {}))
        return lay_out(backbone.freeze() if self.mode == "frozen" else backbone, self.memory_format)

    def _meters(self, stages: tuple[str, ...]) -> nn.ModuleDict:
        return nn.ModuleDict({f"{s}_split": ImportanceMeter(self.task, len(self.backbones)) for s in stages})

    # -- network ---------------------------------------------------------------------------------------------
    def feature_backbones(self) -> list[Backbone]:
        """Frozen mode: every backbone (stores, and checkpoints without their weights); end to end: none."""
        return list(self.backbones) if self.mode == "frozen" else []

    def source_embeddings(self, batch: dict) -> list[torch.Tensor]:
        """One ``B x d_k`` embedding per backbone: cached features, or the backbones on the batch's images."""
        if self.mode == "end_to_end":
            return [backbone(batch["image"]) for backbone in self.backbones]
        return self.embeddings(batch)

    def fused_logits(self, embeddings: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Logits and the fusion's mixing weights (``B x K``, or ``None``) from per-backbone embeddings."""
        fused = self.fusion(embeddings)
        return self.head(fused.embedding), fused.mixing

    def logits(self, batch: dict) -> torch.Tensor:
        embeddings = self.source_embeddings(batch)
        logits, mixing = self.fused_logits(embeddings)
        self._last = (embeddings, mixing)  # read by _step for the importance meters
        return logits

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.fused_logits(self.source_embeddings({"image": images}))[0]

    # -- importance ------------------------------------------------------------------------------------------
    def _scores(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """What ablation importance measures changes of: logits (log-probabilities for multiclass tasks)."""
        logits = self.fused_logits(embeddings)[0].float()
        return logits.log_softmax(dim=-1) if self.task.kind == "multiclass" else logits

    @torch.no_grad()
    def importance(self, embeddings: list[torch.Tensor]) -> torch.Tensor:
        """``B x K`` ablation importance of each backbone for these samples (see ``importance.py``)."""
        if len(embeddings) == 1:
            return torch.ones(len(embeddings[0]), 1, device=embeddings[0].device)
        embeddings = [e.detach() for e in embeddings]
        return ablation_importance(self._scores, embeddings, self.embedding_means.means())

    def _step(self, batch: dict, stage: str):
        result = super()._step(batch, stage)
        embeddings, mixing = self._last
        self._last = None
        labels = batch["label"]
        if mixing is not None:
            self.mixing_meters[f"{stage}_split"].update(mixing, labels)
        if stage == "train":
            self.embedding_means.update(embeddings)
        elif self.embedding_means.ready:
            self.importance_meters[f"{stage}_split"].update(self.importance(embeddings), labels)
        return result

    def _finish_epoch(self, stage: str) -> None:
        super()._finish_epoch(stage)
        tables = {}
        # decided alike on every DDP rank (a rank without samples still joins the meters' synchronisation)
        measures = [("importance", self.importance_meters if self.embedding_means.ready else {}),
                    (self.mixing_name, self.mixing_meters)]
        for name, meters in measures:
            if not name or f"{stage}_split" not in meters:
                continue
            meter = meters[f"{stage}_split"]
            overall, per_class = meter.compute()
            meter.reset()
            tables[name] = importance_table(overall, per_class, self.backbone_labels, self.task.class_names)
            # meters are synchronised across ranks by torchmetrics: no further reduction
            self.log_dict({f"{stage}/{name}/{b}": v for b, v in tables[name]["overall"].items()},
                          sync_dist=False, rank_zero_only=False)
            if stage == "test" and self.logger is not None:  # straight to the logger: keeps the console short
                per_class = tables[name]["per_class"]
                self.logger.log_metrics({f"test/{name}/{c}/{b}": v for c, row in per_class.items()
                                         for b, v in row.items()}, step=self.global_step)
        if tables:
            self.epoch_importance[stage] = tables

    def on_validation_epoch_end(self) -> None:
        super().on_validation_epoch_end()
        if self.trainer.sanity_checking:
            for meters in (self.importance_meters, self.mixing_meters):
                if "val_split" in meters:
                    meters["val_split"].reset()

    def extra_results(self) -> dict:
        """``{"dvme": ...}`` for results.json.

        The fusion, mode, backbones and the last evaluated split's importance (test after ``fit``).
        """
        summary: dict = {"fusion": self.fusion_name, "mode": self.mode, "backbones": self.backbone_labels}
        split = next((s for s in ("test", "val") if s in self.epoch_importance), None)
        if split is not None:
            summary.update({"split": split, **self.epoch_importance[split]})
        return {"dvme": summary}

    # -- optimisation ----------------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict]:
        decay, no_decay = [], []
        for name, param in [*self.fusion.named_parameters(), *self.head.named_parameters(prefix="head")]:
            (no_decay if param.ndim < 2 or "source_embedding" in name else decay).append(param)
        groups = [{"params": decay, "lr": self.lr}, {"params": no_decay, "lr": self.lr, "weight_decay": 0.0}]
        if self.mode == "end_to_end":
            backbone_params = [p for b in self.backbones for p in b.parameters()]
            groups.insert(0, {"params": backbone_params, "lr": self.lr * self.backbone_lr_multiplier})
        return groups

    def backbone_descriptions(self) -> list[dict]:
        return [backbone.describe() for backbone in self.backbones]

    def produced_weights(self) -> dict | None:
        """End to end: the backbones as trained (the fingerprints in their order); frozen: none."""
        if self.mode == "frozen":
            return None
        return {"what": "backbones trained end to end",
                "fingerprint": [backbone.current_fingerprint() for backbone in self.backbones]}
