"""A frozen backbone never moves during a fit (BatchNorm statistics included), and each set of weights gets
the preprocessing it was trained with (SimCLR v1 converted: [0, 1] inputs, no mean/std)."""

from __future__ import annotations

import pytorch_lightning as pl
import torch

from medtransfer.backbones import REGISTRY, create_backbone
from medtransfer.datamodules import SyntheticMedical
from medtransfer.lightning_modules import LinearProbe

from .source_layouts import WRITERS


def test_frozen_backbone_batchnorm_statistics_do_not_change_during_fit(references, tmp_path):
    entry = REGISTRY["resnet50.swav_in1k"]
    reference, small = references.for_entry(entry)
    path = tmp_path / entry.file_name
    WRITERS["swav"](reference.state_dict(), path)
    data = SyntheticMedical(num_train=32, num_val=16, num_test=16, native_size=32, image_size=32,
                            batch_size=16)
    probe = LinearProbe(backbone=entry.name, checkpoint=str(path), backbone_kwargs=small, feature_cache=False,
                        task=data.task, lr=0.1)
    before = {k: v.clone() for k, v in probe.backbone.state_dict().items()}
    head_before = probe.head.weight.detach().clone()
    modes = []

    class RecordMode(pl.Callback):
        def on_train_batch_start(self, trainer, module, batch, batch_idx):
            modes.append(module.backbone.training)

    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, callbacks=[RecordMode()],
                         default_root_dir=tmp_path)
    probe.train()  # what a training loop does to the whole model; the frozen backbone must ignore it
    trainer.fit(probe, datamodule=probe.attach_data(data))

    assert modes and not any(modes), "the frozen backbone must stay in eval mode while the head trains"
    after = probe.backbone.state_dict()
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert not moved, f"frozen backbone tensors changed during fit: {moved[:5]}"
    assert any("running_mean" in k for k in before)  # BatchNorm statistics were among those checked
    assert not any(p.requires_grad for p in probe.backbone.parameters())
    assert not torch.equal(head_before, probe.head.weight)  # the head did train


def test_simclr_v1_gets_unnormalised_inputs_and_the_others_imagenet_statistics(references, images, tmp_path):
    reference, small = references.for_entry(REGISTRY["resnet50.simclr_in1k"])
    simclr_file, torchvision_file = tmp_path / "resnet50-1x.pth", tmp_path / "resnet50-0676ba61.pth"
    WRITERS["simclr_converted"](reference.state_dict(), simclr_file)
    WRITERS["torchvision"](reference.state_dict(), torchvision_file)
    simclr = create_backbone("resnet50.simclr_in1k", checkpoint=str(simclr_file), **small).eval()
    supervised = create_backbone("resnet50.tv_in1k", checkpoint=str(torchvision_file), **small).eval()

    assert simclr.preprocessing.mean == (0.0, 0.0, 0.0) and simclr.preprocessing.std == (1.0, 1.0, 1.0)
    torch.testing.assert_close(simclr.normalise(images), images.float() / 255)
    imagenet = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1), torch.tensor([0.229, 0.224, 0.225])
    torch.testing.assert_close(supervised.normalise(images),
                               (images.float() / 255 - imagenet[0]) / imagenet[1].view(1, 3, 1, 1))
    others = {name: e.preprocessing for name, e in REGISTRY.items() if name != "resnet50.simclr_in1k"}
    assert all(p.mean == (0.485, 0.456, 0.406) for p in others.values())

    # same weights, different preprocessing: different embeddings, same fingerprint
    assert simclr.fingerprint == supervised.fingerprint
    with torch.no_grad():
        assert not torch.allclose(simclr(images), supervised(images))
