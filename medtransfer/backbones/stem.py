"""A ResNet's stem, the layers before its first stage: timm's ImageNet stem or a small-image one.

``imagenet`` (timm's): a 7x7 stride-2 convolution and a 3x3 stride-2 max-pool, which shrink a 28 px image to
1 x 1 by the last stage. ``small`` (the CIFAR-style stem of MedMNIST v2's ResNet-18/50 (28)): one 3x3 stride-1
convolution (in place of timm's, or of a deep stem's three) and no max-pool, so a 28 px image ends as a 4 x 4
map. Pretrained stem weights cannot fill the small stem's convolution: ``create_backbone`` refuses that
pairing in one line (loading stays exact), and a medtransfer export records its stem (``export.py``), so it is
rebuilt as it was trained.
"""

from __future__ import annotations

from timm.models.resnet import ResNet
from torch import nn

from .errors import StemError

STEMS = ("imagenet", "small")


def check_stem(stem: str) -> None:
    """A known stem, or one line naming the choices."""
    if stem not in STEMS:
        raise StemError(f"model.init_args.stem={stem!r}: choose one of {', '.join(STEMS)}")


def apply_stem(model: nn.Module, stem: str, name: str) -> None:
    """Give ``model`` the stem, in place; ``imagenet`` keeps timm's."""
    check_stem(stem)
    if stem == "imagenet":
        return
    if not isinstance(model, ResNet):
        raise StemError(f"stem 'small' is for timm's ResNet family (resnet18, resnet50, resnet50d, resnext*, "
                        f"seresnet*, wide_resnet*, test_resnet); {name} is a {type(model).__name__}: "
                        "use stem imagenet")
    first = next(m for m in model.conv1.modules() if isinstance(m, nn.Conv2d))  # a deep stem's first conv
    conv = nn.Conv2d(first.in_channels, model.bn1.num_features, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")  # as timm initialises conv1
    model.conv1 = conv
    model.maxpool = nn.Identity()


def check_small_stem_weights(stem: str, name: str, pretrained: bool) -> None:
    """Refuse pretrained weights for the small stem: their stem (a 7x7 conv1) does not fit its 3x3 conv1.

    Loading stays exact, so the refusal is said here in one line rather than as a key mismatch.
    """
    if stem == "small" and pretrained:
        raise StemError(f"stem 'small' builds a 3x3 conv1 that the pretrained stem weights of {name} do not "
                        "fit: train it from random initialisation, load a medtransfer export trained with "
                        "stem small, or use stem imagenet with the pretrained weights")
