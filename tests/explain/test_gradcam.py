"""Grad-CAM against its closed form: for a network that ends in global average pooling and a linear layer
(timm's ``test_resnet`` under a linear head), the class score is ``sum_k w_k mean(A_k) + b``, so Grad-CAM's
``alpha_k`` is ``w_k / (h w)`` and the map is ``ReLU(sum_k w_k A_k) / (h w)`` (CAM, Zhou et al. 2016)."""

from __future__ import annotations

import pytest
import torch

from medtransfer.explain import Explainer, ExplanationError, choose_target
from medtransfer.lightning_modules import Finetune, LinearProbe
from medtransfer.task import Task

TASKS = {"binary": Task("binary", ("normal", "lesion")), "multiclass": Task("multiclass", ("a", "b", "c"))}


CAM_SIZE = 128  # px: test_resnet's last stage is 4 x 4, the coarsest map drawn from it (test_coarse.py)


def images(count: int = 3, size: int = 64, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator)


def closed_form_cam(backbone, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """``ReLU(sum_k w_k A_k) / (h w)`` with ``A`` the last stage's output and ``w`` each sample's class
    weights (``B x C``)."""
    with torch.no_grad():
        activations = backbone.model.forward_features(backbone.normalise(x))
    h, w = activations.shape[-2:]
    return torch.relu(torch.einsum("bk,bkhw->bhw", weight, activations)) / (h * w)


def binary_weight(head: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """Each sample's class weights for a one-logit head: ``w`` for the positive class, ``-w`` otherwise."""
    return head[0].expand(len(classes), -1) * (2 * classes.float() - 1)[:, None]


@pytest.mark.parametrize("kind", ["binary", "multiclass"])
def test_gradcam_of_a_finetuned_cnn_is_the_closed_form(kind):
    torch.manual_seed(0)
    model = Finetune(backbone="test_resnet", task=TASKS[kind]).eval()
    x = images(size=CAM_SIZE)
    explained = Explainer().explain(model, x)
    (maps,) = explained.maps
    assert (maps.method, maps.layer, maps.heads) == ("gradcam", "layer4", None)
    head = model.head[1].weight.detach()
    if kind == "binary":  # the negative class's score is the negative logit
        weight = binary_weight(head, explained.classes)
    else:
        weight = head[explained.classes]
    expected = closed_form_cam(model.backbone, weight, x)
    assert maps.maps.shape == expected.shape == (3, 4, 4)
    torch.testing.assert_close(maps.maps, expected, rtol=1e-4, atol=1e-6)
    with torch.no_grad():
        assert torch.equal(explained.classes, model(x).argmax(1) if kind == "multiclass"
                           else (model(x)[:, 0] >= 0).long())


def test_gradcam_explains_the_class_it_is_given():
    torch.manual_seed(1)
    model = Finetune(backbone="test_resnet", task=TASKS["multiclass"]).eval()
    x = images(2, size=CAM_SIZE)
    classes = torch.tensor([2, 0])
    (maps,) = Explainer().explain(model, x, classes).maps
    expected = closed_form_cam(model.backbone, model.head[1].weight.detach()[classes], x)
    torch.testing.assert_close(maps.maps, expected, rtol=1e-4, atol=1e-6)


def test_a_frozen_backbone_keeps_eval_mode_no_gradients_and_its_statistics():
    """A linear probe's frozen backbone is explained through the head on its embeddings (standardised), and
    afterwards nothing about the model has changed."""
    torch.manual_seed(2)
    model = LinearProbe(backbone="test_resnet", task=TASKS["multiclass"], feature_cache=False)
    model.standardizers[0].mean.normal_()
    model.standardizers[0].std.uniform_(0.5, 2.0)
    model.standardizers[0].fitted.fill_(True)
    model.train()
    flags = {name: p.requires_grad for name, p in model.named_parameters()}
    modes = {name: m.training for name, m in model.named_modules()}
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(size=CAM_SIZE)
    explained = Explainer().explain(model, x)
    assert {name: p.requires_grad for name, p in model.named_parameters()} == flags
    assert {name: m.training for name, m in model.named_modules()} == modes
    assert not model.backbone.training and model.training and model.head.training
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())  # BatchNorm stats too
    weight = model.head.weight.detach()[explained.classes] / model.standardizers[0].std
    torch.testing.assert_close(explained.maps[0].maps, closed_form_cam(model.backbone, weight, x),
                               rtol=1e-4, atol=1e-6)


def test_a_trainable_model_in_training_mode_is_explained_in_eval_mode_and_left_as_it_was():
    torch.manual_seed(3)
    model = Finetune(backbone="test_resnet", task=TASKS["binary"]).train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    x = images(size=CAM_SIZE)
    explained = Explainer().explain(model, x)
    assert model.training and model.backbone.training
    assert all(p.requires_grad and p.grad is None for p in model.parameters())
    assert all(torch.equal(state[k], v) for k, v in model.state_dict().items())
    weight = binary_weight(model.head[1].weight.detach(), explained.classes)
    torch.testing.assert_close(explained.maps[0].maps, closed_form_cam(model.eval().backbone, weight, x),
                               rtol=1e-4, atol=1e-6)


def test_the_layer_can_be_chosen_and_unknown_layers_are_named():
    model = Finetune(backbone="test_resnet", task=TASKS["binary"])
    (maps,) = Explainer(layer="layer3").explain(model, images(1, size=CAM_SIZE)).maps
    assert maps.layer == "layer3" and maps.maps.shape == (1, 8, 8)
    with pytest.raises(ExplanationError, match="no module 'layer9'.*'layer4'"):
        Explainer(layer="layer9").explain(model, images(1))
    with pytest.raises(ExplanationError, match="attention maps need a timm attention module"):
        choose_target(model.backbone.model, "attention", "layer4")
    with pytest.raises(ExplanationError, match="no transformer blocks"):
        choose_target(model.backbone.model, "attention")
    with pytest.raises(ExplanationError, match="method 'saliency' is unknown"):
        choose_target(model.backbone.model, "saliency")


def test_a_channels_last_cnn_is_read_as_b_h_w_c():
    """Swin lays out its stages B x h x w x C (timm's output_fmt NHWC): the map is on the h x w grid, the
    same as Grad-CAM computed by hand on the stage's output permuted to channels first."""
    torch.manual_seed(4)
    tiny_swin = {"embed_dim": 16, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1), "window_size": 4,
                 "img_size": CAM_SIZE}
    model = Finetune(backbone="swin_tiny_patch4_window7_224", backbone_kwargs=tiny_swin,
                     task=TASKS["multiclass"]).eval()
    x = images(2, size=CAM_SIZE)
    explained = Explainer().explain(model, x)
    (maps,) = explained.maps
    assert (maps.layer, maps.maps.shape) == ("layers.3", (2, 4, 4))
    stage = []
    handle = model.backbone.model.layers[3].register_forward_hook(lambda _m, _i, output: stage.append(output))
    logits = model.logits({"image": x.float()})
    handle.remove()
    score = logits.gather(1, explained.classes.view(-1, 1)).sum()
    (gradient,) = torch.autograd.grad(score, stage)
    activations, gradient = stage[0].permute(0, 3, 1, 2), gradient.permute(0, 3, 1, 2)
    expected = torch.relu((gradient.mean(dim=(2, 3), keepdim=True) * activations).sum(dim=1))
    torch.testing.assert_close(maps.maps, expected.detach(), rtol=1e-4, atol=1e-6)
