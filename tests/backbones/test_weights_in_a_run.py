"""Named weights loaded by a run from YAML: results.json records exactly the weights held."""

from __future__ import annotations

import json

import yaml

from medtransfer.backbones.backbone import state_dict_fingerprint
from medtransfer.cli import main
from tests.backbones.source_layouts import WRITERS


def test_a_run_by_name_from_yaml_loads_the_real_size_checkpoint(full_resnet50, tmp_path, tiny_cli):
    """A linear probe from YAML with ``backbone: resnet50.swav_in1k`` and a checkpoint in SwAV's released
    layout (real ResNet-50): results.json carries the fingerprint of exactly those weights."""
    checkpoint = tmp_path / "swav_800ep_pretrain.pth.tar"
    WRITERS["swav"](full_resnet50.state_dict(), checkpoint)
    config = tmp_path / "swav_finetune.yaml"
    config.write_text(yaml.safe_dump({"model": {
        "class_path": "medtransfer.lightning_modules.LinearProbe",
        "init_args": {"backbone": "resnet50.swav_in1k", "checkpoint": str(checkpoint),
                      "feature_cache": False},
    }}))
    runs = tmp_path / "runs"
    main(["fit", *tiny_cli(runs, num_train=16, num_val=8, num_test=8, name="swav"), "--config", str(config),
          "--trainer.limit_train_batches", "1"])
    results = json.loads(next((runs / "swav").glob("version_*/results.json")).read_text())
    (backbone,) = results["model"]["backbones"]
    assert backbone["name"] == "resnet50.swav_in1k"
    assert backbone["fingerprint"] == state_dict_fingerprint(full_resnet50.state_dict())
    assert backbone["embed_dim"] == 2048
