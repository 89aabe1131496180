"""Maps that would mislead: a last stage too coarse for the image size (a ResNet-18 at 32 px is 1 x 1) is
replaced by the latest earlier stage of at least 4 x 4, with a warning; a named layer is kept, with the
warning; a map constant up to rounding is drawn flat, never stretched into stripes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from medtransfer.explain import Explainer
from medtransfer.explain.explainer import BackboneMaps, ExplainedBatch
from medtransfer.explain.figures import (
    HEADING_LINES,
    LINE,
    MARGIN,
    PANEL,
    TITLE_LINES,
    explanation_pixels,
    scaled_map,
)
from medtransfer.lightning_modules import Finetune
from medtransfer.task import Task

from .test_gradcam import images

TASK = Task("binary", ("normal", "lesion"))
SEEDED = torch.Generator().manual_seed(0)


def test_a_32px_resnet18_draws_layer2_and_warns_about_layer4():
    torch.manual_seed(0)
    model = Finetune(backbone="resnet18", task=TASK)
    x = images(2, size=32)
    said = (r"^Grad-CAM of resnet18: layer4 gives a 1 x 1 map for 32 x 32 images \(under 4 x 4.*\); "
            r"drawing the earlier layer2 \(4 x 4\) instead")
    with pytest.warns(UserWarning, match=said):
        (maps,) = Explainer().explain(model, x).maps
    assert maps.layer == "layer2" and maps.maps.shape == (2, 4, 4)
    (named,) = Explainer(layer="layer2").explain(model, x).maps  # the same map as asking for layer2
    torch.testing.assert_close(maps.maps, named.maps)


def test_the_latest_stage_of_at_least_4x4_is_chosen():
    """test_resnet at 64 px: layer4 is 2 x 2, layer3 4 x 4 and layer2 8 x 8; layer3 is drawn."""
    model = Finetune(backbone="test_resnet", task=TASK)
    said = r"layer4 gives a 2 x 2 map for 64 x 64 images.*earlier layer3 \(4 x 4\)"
    with pytest.warns(UserWarning, match=said):
        (maps,) = Explainer().explain(model, images(1, size=64)).maps
    assert maps.layer == "layer3" and maps.maps.shape == (1, 4, 4)


def test_a_named_coarse_layer_is_kept_with_the_warning_once(recwarn):
    model = Finetune(backbone="test_resnet", task=TASK)
    explainer = Explainer(layer="layer4")
    for _ in range(2):
        (maps,) = explainer.explain(model, images(1, size=32)).maps
    assert maps.layer == "layer4" and maps.maps.shape == (1, 1, 1)
    said = [str(w.message) for w in recwarn if "layer4" in str(w.message)]
    assert said == ["Grad-CAM of test_resnet: layer4 gives a 1 x 1 map for 32 x 32 images (under 4 x 4, too "
                    "coarse to show where anything lies); kept because it was named"]


def test_a_map_of_4x4_or_more_is_drawn_from_the_last_stage_without_a_warning(recwarn):
    model = Finetune(backbone="test_resnet", task=TASK)
    (maps,) = Explainer().explain(model, images(1, size=128)).maps
    assert maps.layer == "layer4" and maps.maps.shape == (1, 4, 4)
    assert not [w for w in recwarn if "too coarse" in str(w.message)]


@pytest.mark.parametrize("raw", [torch.full((1, 1), 0.37), torch.full((2, 2), 123.456),
                                 torch.full((7, 7), 0.02) * (1 + 1e-6 * torch.randn(7, 7, generator=SEEDED))],
                         ids=["1x1", "2x2 constant", "7x7 with rounding noise"])
def test_a_map_constant_up_to_noise_draws_as_zeros(raw):
    up = F.interpolate(raw[None, None], size=(PANEL, PANEL), mode="bilinear", align_corners=False)
    assert float(up.max() - up.min()) > 0  # the noise that used to be stretched to [0, 1]
    assert torch.equal(scaled_map(raw, (PANEL, PANEL)), torch.zeros(PANEL, PANEL))


def test_real_maps_are_still_scaled_to_the_full_range():
    faint = torch.tensor([[1.0, 1.0], [1.0, 1.01]])  # a spread of 1% of the peak is structure, drawn
    for raw in (torch.arange(16.0).reshape(4, 4), faint):
        scaled = scaled_map(raw, (PANEL, PANEL))
        assert float(scaled.min()) == 0 and float(scaled.max()) == 1


def test_the_picture_of_a_1x1_map_is_one_colour():
    """The bug this guards: a 1 x 1 Grad-CAM drew hot stripes along two edges of its panel."""
    image = torch.full((3, 32, 32), 128, dtype=torch.uint8)
    one_cell = BackboneMaps("resnet18", "gradcam", "layer4", torch.full((1, 1, 1), 0.37), None)
    explained = ExplainedBatch(torch.tensor([0.8]), torch.tensor([1]), [one_cell])
    pixels = explanation_pixels(TASK, image, explained, 0, "case 1")
    left = MARGIN + PANEL + MARGIN  # the second panel (the map over the image), below its title
    top = HEADING_LINES * LINE + MARGIN + TITLE_LINES * LINE
    panel = pixels[top : top + PANEL, left : left + PANEL]
    assert panel.shape == (PANEL, PANEL, 3) and len(np.unique(panel.reshape(-1, 3), axis=0)) == 1
