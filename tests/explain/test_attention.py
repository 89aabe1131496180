"""Attention maps of a ViT against the attention computed by hand from the last block's query and key
projections: softmax(q k^T / sqrt(d)), the class token's row, on the patch grid, per head."""

from __future__ import annotations

import pytest
import timm
import torch

from medtransfer.explain import Explainer, ExplanationError, choose_target
from medtransfer.lightning_modules import Finetune
from medtransfer.lightning_modules.metrics import probabilities
from medtransfer.task import Task

from .test_gradcam import images

TASK = Task("multiclass", ("a", "b", "c"))


def vit(seed: int = 0) -> Finetune:
    torch.manual_seed(seed)
    return Finetune(backbone="test_vit", backbone_kwargs={"img_size": 64}, task=TASK).eval()


def manual_attention(model: Finetune, x: torch.Tensor) -> torch.Tensor:
    """``B x heads x N x N`` attention of the last block, from its normed input tokens."""
    block = model.backbone.model.blocks[-1]
    tokens = []
    handle = block.norm1.register_forward_hook(lambda _m, _i, output: tokens.append(output))
    with torch.no_grad():
        model(x)
        handle.remove()
        attn = block.attn
        batch, count, _ = tokens[0].shape
        qkv = attn.qkv(tokens[0]).reshape(batch, count, 3, attn.num_heads, attn.head_dim)
        qkv = qkv.permute(2, 0, 3, 1, 4)
        q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
        return (q @ k.transpose(-2, -1) / attn.head_dim ** 0.5).softmax(dim=-1)


def test_class_token_attention_per_head_matches_the_manual_computation():
    model = vit()
    x = images(3)
    assert model.backbone.model.blocks[-1].attn.fused_attn  # timm's default: no weights formed
    explained = Explainer().explain(model, x)
    (maps,) = explained.maps
    assert (maps.method, maps.layer) == ("attention", "blocks.5.attn")
    attention = manual_attention(model, x)
    heads = attention[:, :, 0, 1:].reshape(3, 2, 4, 4)  # 64 px / 16 px patches: a 4 x 4 grid; 2 heads
    torch.testing.assert_close(maps.heads, heads, rtol=1e-4, atol=1e-6)
    torch.testing.assert_close(maps.maps, heads.mean(dim=1))
    # each head's row sums to one over the class token and the patches
    torch.testing.assert_close(maps.heads.sum(dim=(2, 3)) + attention[:, :, 0, 0], torch.ones(3, 2))
    assert model.backbone.model.blocks[-1].attn.fused_attn  # put back
    with torch.no_grad():
        expected = probabilities(TASK, model(x))
    torch.testing.assert_close(explained.probabilities, expected, rtol=1e-4, atol=1e-5)


def test_an_earlier_block_and_gradcam_on_tokens_can_be_asked_for():
    model = vit(1)
    x = images(2)
    (early,) = Explainer(layer="blocks.2.attn").explain(model, x).maps
    assert early.method == "attention" and early.heads.shape == (2, 2, 4, 4)
    (cam,) = Explainer(method="gradcam").explain(model, x).maps
    assert (cam.method, cam.layer, cam.heads) == ("gradcam", "blocks.5.norm1", None)
    assert cam.maps.shape == (2, 4, 4) and bool((cam.maps >= 0).all()) and float(cam.maps.sum()) > 0


def test_a_transformer_without_class_token_asks_for_gradcam():
    model = timm.create_model("test_vit", num_classes=0, img_size=64, class_token=False, global_pool="avg")
    with pytest.raises(ExplanationError, match="no class token"):
        choose_target(model, "attention")
    assert choose_target(model).method == "gradcam"
