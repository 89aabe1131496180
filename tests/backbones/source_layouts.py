"""Writers of checkpoint files in each published source's exact layout, from a backbone's timm state dict.

Each writer returns the keys that are not backbone weights (heads, momentum encoders, queues), which a correct
loader drops and reports. Head sizes are smaller than the originals where the size is not part of the layout
(keeps files small); key names, nesting and prefixes are the sources' own.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors.torch import save_file

Tensors = dict[str, torch.Tensor]
HEAD = 64  # stand-in width of projection heads / prototypes / queues


def _linear(prefix: str, out: int, inp: int, bias: bool = True) -> Tensors:
    tensors = {f"{prefix}.weight": torch.randn(out, inp)}
    if bias:
        tensors[f"{prefix}.bias"] = torch.randn(out)
    return tensors


def _batchnorm(prefix: str, n: int, affine: bool = True) -> Tensors:
    tensors = {f"{prefix}.running_mean": torch.randn(n), f"{prefix}.running_var": torch.rand(n) + 0.5,
               f"{prefix}.num_batches_tracked": torch.tensor(1000)}
    if affine:
        tensors |= {f"{prefix}.weight": torch.randn(n), f"{prefix}.bias": torch.randn(n)}
    return tensors


def _prefixed(prefix: str, tensors: Tensors) -> Tensors:
    return {prefix + k: v.clone() for k, v in tensors.items()}


def _features(backbone: Tensors) -> int:
    if "norm.weight" in backbone:  # ViT
        return backbone["norm.weight"].shape[0]
    return backbone["layer4.0.conv3.weight"].shape[0] if "layer4.0.conv3.weight" in backbone else 512


def _classifier(backbone: Tensors) -> Tensors:
    name = "head" if "norm.weight" in backbone else "fc"
    return _linear(name, 1000, _features(backbone))


def _optimizer_state() -> dict:
    group = {"lr": 0.1, "momentum": 0.9, "weight_decay": 1e-4, "params": [0, 1]}
    return {"state": {}, "param_groups": [group]}


def torchvision(backbone: Tensors, path: Path) -> list[str]:
    head = _classifier(backbone)
    torch.save({**backbone, **head}, path)
    return list(head)


def simclr_converted(backbone: Tensors, path: Path) -> list[str]:
    """tonylins/simclr-converter: torch.save({'state_dict': model.state_dict()}) of a torchvision ResNet."""
    head = _classifier(backbone)
    torch.save({"state_dict": {**backbone, **head}}, path)
    return list(head)


def bolts_simclr(backbone: Tensors, path: Path) -> list[str]:
    """Lightning Bolts SimCLR: a Lightning checkpoint; encoder (with fc), projection MLP, online evaluator."""
    d = _features(backbone)
    extra = _prefixed("encoder.", _classifier(backbone))
    extra |= _linear("projection.model.0", HEAD, d) | _batchnorm("projection.model.1", HEAD)
    extra |= _linear("projection.model.3", 128, HEAD, bias=False)
    extra |= _linear("non_linear_evaluator.block_forward.2", HEAD, d)
    extra |= _linear("non_linear_evaluator.block_forward.6", 1000, HEAD)
    state = {**_prefixed("encoder.", backbone), **extra}
    torch.save({"epoch": 799, "global_step": 500_000, "pytorch-lightning_version": "1.0.0",
                "state_dict": state, "optimizer_states": [_optimizer_state()],
                "lr_schedulers": [{"last_epoch": 799}],
                "hyper_parameters": {"gpus": 8, "dataset": "imagenet", "arch": "resnet50"}}, path)
    return list(extra)


def swav(backbone: Tensors, path: Path) -> list[str]:
    """SwAV: a flat DDP state dict (module.), with projection_head and prototypes."""
    d = _features(backbone)
    extra = _linear("module.projection_head.0", HEAD, d) | _batchnorm("module.projection_head.1", HEAD)
    extra |= _linear("module.projection_head.3", 128, HEAD)
    extra |= _linear("module.prototypes", 3000, 128, bias=False)
    torch.save({**_prefixed("module.", backbone), **extra}, path)
    return list(extra)


def dino(backbone: Tensors, path: Path) -> list[str]:
    """DINO's released backbone weights: a plain state dict, no head."""
    torch.save(dict(backbone), path)
    return []


def _dino_head(prefix: str, d: int) -> Tensors:
    head = _linear(f"{prefix}mlp.0", HEAD, d) | _linear(f"{prefix}mlp.2", HEAD, HEAD)
    head |= _linear(f"{prefix}mlp.4", 32, HEAD)
    head[f"{prefix}last_layer.weight_g"] = torch.ones(HEAD, 1)
    head[f"{prefix}last_layer.weight_v"] = torch.randn(HEAD, 32)
    return head


def dino_training(backbone: Tensors, path: Path, student: Tensors | None = None,
                  with_teacher: bool = True) -> list[str]:
    """DINO's checkpoint.pth: student (always DDP, module.), teacher (DDP only for ResNets, which have BN),
    optimizer, args (argparse.Namespace), dino_loss."""
    vit = "norm.weight" in backbone
    d = _features(backbone)
    student = backbone if student is None else student
    student_state = _prefixed("module.backbone.", student) | _dino_head("module.head.", d)
    teacher_prefix = "" if vit else "module."
    teacher_head = _dino_head(f"{teacher_prefix}head.", d)
    teacher_state = _prefixed(f"{teacher_prefix}backbone.", backbone) | teacher_head
    args = argparse.Namespace(arch="vit_small" if vit else "resnet50", patch_size=16, out_dim=65536,
                              norm_last_layer=True, lr=0.0005, epochs=100, data_path="/imagenet/train")
    checkpoint = {"student": student_state, "optimizer": _optimizer_state(), "epoch": 100, "args": args,
                  "dino_loss": {"center": torch.randn(1, 32)}, "fp16_scaler": None}
    if with_teacher:
        checkpoint["teacher"] = teacher_state
    torch.save(checkpoint, path)
    return list(teacher_head)


def mocov2(backbone: Tensors, path: Path) -> list[str]:
    """MoCo v2: {'state_dict': module.encoder_q.* (with MLP fc), module.encoder_k.*, queue, queue_ptr}."""
    d = _features(backbone)
    mlp = _linear("fc.0", d, d) | _linear("fc.2", 128, d)
    extra = _prefixed("module.encoder_q.", mlp) | _prefixed("module.encoder_k.", {**backbone, **mlp})
    extra |= {"module.queue": torch.randn(128, HEAD), "module.queue_ptr": torch.zeros(1, dtype=torch.long)}
    state = {**_prefixed("module.encoder_q.", backbone), **extra}
    torch.save({"epoch": 800, "arch": "resnet50", "state_dict": state, "optimizer": _optimizer_state()}, path)
    return list(extra)


def mocov3(backbone: Tensors, path: Path) -> list[str]:
    """MoCo v3: {'state_dict': module.base_encoder.* (projector as fc/head), module.momentum_encoder.*,
    module.predictor.*}; ViT checkpoints say arch 'vit_small'."""
    vit = "norm.weight" in backbone
    d = _features(backbone)
    projector_name = "head" if vit else "fc"
    projector = _linear(f"{projector_name}.0", HEAD, d, bias=False) | _batchnorm(f"{projector_name}.1", HEAD)
    projector |= _linear(f"{projector_name}.3", 32, HEAD, bias=False)
    projector |= _batchnorm(f"{projector_name}.4", 32, affine=False)
    predictor = _linear("0", HEAD, 32, bias=False) | _batchnorm("1", HEAD)
    predictor |= _linear("3", 32, HEAD, bias=False)
    extra = _prefixed("module.base_encoder.", projector)
    extra |= _prefixed("module.momentum_encoder.", {**backbone, **projector})
    extra |= _prefixed("module.predictor.", predictor)
    state = {**_prefixed("module.base_encoder.", backbone), **extra}
    torch.save({"epoch": 300, "arch": "vit_small" if vit else "resnet50", "state_dict": state,
                "optimizer": _optimizer_state(), "scaler": {"scale": 65536.0}}, path)
    return list(extra)


def byol_converted(backbone: Tensors, path: Path) -> list[str]:
    """BYOL converted from JAX: torchvision names with fc, and no BatchNorm num_batches_tracked counters."""
    head = _classifier(backbone)
    state = {k: v for k, v in backbone.items() if not k.endswith("num_batches_tracked")}
    torch.save({**state, **head}, path)
    return list(head)


def barlowtwins(backbone: Tensors, path: Path) -> list[str]:
    """Barlow Twins' released ResNet-50: the torchvision backbone's state dict, fc removed."""
    torch.save(dict(backbone), path)
    return []


def lightly(backbone: Tensors, path: Path) -> list[str]:
    """A lightly LightningModule checkpoint: backbone (ViTs wrapped as backbone.vit.), projection head and a
    momentum copy (backbone_momentum.)."""
    prefix = "backbone.vit." if "norm.weight" in backbone else "backbone."
    extra = _linear("projection_head.layers.0", HEAD, _features(backbone))
    extra |= _prefixed(prefix.replace("backbone.", "backbone_momentum.", 1), backbone)
    state = {**_prefixed(prefix, backbone), **extra}
    torch.save({"epoch": 10, "global_step": 100, "pytorch-lightning_version": "2.4.0", "state_dict": state,
                "optimizer_states": [_optimizer_state()]}, path)
    return list(extra)


def safetensors_flat(backbone: Tensors, path: Path) -> list[str]:
    save_file({k: v.contiguous() for k, v in backbone.items()}, str(path))
    return []


WRITERS: dict[str, Callable[[Tensors, Path], list[str]]] = {
    "torchvision": torchvision, "simclr_converted": simclr_converted, "bolts_simclr": bolts_simclr,
    "swav": swav, "dino": dino, "mocov2": mocov2, "mocov3": mocov3, "byol_converted": byol_converted,
    "barlowtwins": barlowtwins,
}
