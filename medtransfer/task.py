"""The task contract between datamodules and models (docs/architecture.md, "The task")."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from .errors import MedTransferError

TaskKind = Literal["binary", "multiclass", "multilabel"]
KINDS = ("binary", "multiclass", "multilabel")
PRIMARY_METRICS = ("auroc", "kappa")
# the splits every dataset provides and every model reports metrics on (``{split}/{metric}``)
SPLITS = ("train", "val", "test")


class TaskMismatchError(MedTransferError, ValueError):
    """A model built for one task was given data of another."""


@dataclass(frozen=True)
class Task:
    """What a dataset asks of a model: the kind of labels, the classes and the metric that ranks models.

    ``binary`` models emit one logit and take long labels in {0, 1}; ``multiclass`` models emit one logit per
    class and take long labels; ``multilabel`` models emit one logit per class and take float ``B x C``
    labels.
    """

    kind: TaskKind
    class_names: tuple[str, ...]
    ordinal: bool = False
    primary_metric: str = "auroc"

    def __post_init__(self) -> None:
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.kind not in KINDS:
            raise ValueError(f"task kind must be one of {KINDS}, got {self.kind!r}")
        if self.kind == "binary" and len(self.class_names) != 2:
            raise ValueError(f"a binary task has 2 class names, got {list(self.class_names)}")
        if self.kind != "binary" and len(self.class_names) < 2:
            raise ValueError(f"a {self.kind} task needs at least 2 classes, got {list(self.class_names)}")
        if self.primary_metric not in PRIMARY_METRICS:
            raise ValueError(f"primary_metric must be one of {PRIMARY_METRICS}, got {self.primary_metric!r}")
        if self.primary_metric == "kappa" and not (self.kind == "multiclass" and self.ordinal):
            raise ValueError("quadratic weighted kappa needs an ordinal multiclass task")
        if self.ordinal and self.kind != "multiclass":
            raise ValueError("only multiclass tasks can be ordinal")

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def num_outputs(self) -> int:
        """Logits a model emits: one for binary, one per class otherwise."""
        return 1 if self.kind == "binary" else self.num_classes

    def to_dict(self) -> dict:
        data = asdict(self)
        data["class_names"] = list(self.class_names)
        data["num_classes"] = self.num_classes
        return data

    @classmethod
    def from_dict(cls, data: dict) -> Task:
        return cls(
            kind=data["kind"],
            class_names=tuple(data["class_names"]),
            ordinal=bool(data.get("ordinal", False)),
            primary_metric=data.get("primary_metric", "auroc"),
        )

    def check_matches(self, other: Task, what: str = "the data") -> None:
        """Raise a sentence saying how ``other`` differs, when a model built for ``self`` meets it.

        Kind, number and names of the classes must agree: a binary "pneumonia" head scored against "lesion"
        labels would produce numbers that look fine and mean nothing.
        """
        if (self.kind, self.class_names) == (other.kind, other.class_names):
            return
        raise TaskMismatchError(
            f"the model was built for a {self.kind} task with {self.num_classes} classes "
            f"{list(self.class_names)}, but {what} is a {other.kind} task with {other.num_classes} classes "
            f"{list(other.class_names)}: use a model config for this dataset, or a checkpoint trained on it"
        )
