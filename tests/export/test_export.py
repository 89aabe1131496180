"""``medtransfer export``: the exported ONNX (run by onnxruntime) and TorchScript models compute the
checkpoint's probabilities from uint8 images, for a CNN, a ViT and a multi-backbone DVME; the model card holds
the task, the run's metrics with intervals, the weights' licence and the checkpoint's sha256."""

from __future__ import annotations

import errno
import hashlib
import json
import re
from contextlib import nullcontext

import numpy as np
import pytest
import torch

from medtransfer.cli import main
from medtransfer.export import DeployedModel, load_trained_model
from medtransfer.lightning_modules import DVME, KNN, Finetune, LinearProbe, LinearSweep
from medtransfer.lightning_modules.metrics import probabilities
from tests.faults.harness import failing_writes, read_only

from .checkpoints import SIZE, tiny_data, train_checkpoint

onnxruntime = pytest.importorskip("onnxruntime")


def checkpoint_probabilities(model, images: torch.Tensor) -> np.ndarray:
    """What the checkpoint's model computes for ``images``, through the same path as ``predict``."""
    with torch.no_grad():
        probs = probabilities(model.task, model.logits({"image": images}))
    probs = probs.numpy()
    return np.stack([1 - probs, probs], axis=1) if model.task.kind == "binary" else probs


def images(batch: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (batch, 3, SIZE, SIZE), dtype=torch.uint8, generator=generator)


@pytest.fixture(scope="module")
def cnn_checkpoint(tmp_path_factory):
    """A binary test_resnet finetuned for two steps, in ``<run>/checkpoints/last.ckpt``."""
    data = tiny_data("binary")
    folder = tmp_path_factory.mktemp("cnn") / "checkpoints"
    return train_checkpoint(folder, Finetune(backbone="test_resnet", task=data.task), data)


def vit_checkpoint(folder):
    data = tiny_data("multilabel")
    return train_checkpoint(folder, Finetune(backbone="test_vit", backbone_kwargs={"img_size": SIZE},
                                             task=data.task), data)


@pytest.mark.parametrize("kind", ["cnn", "vit"])
def test_onnx_and_torchscript_exports_match_the_checkpoint(tmp_path, kind, cnn_checkpoint, capsys):
    checkpoint = cnn_checkpoint if kind == "cnn" else vit_checkpoint(tmp_path)
    model, _ = load_trained_model(checkpoint)
    batch = images(5, seed=7)
    expected = checkpoint_probabilities(model, batch)

    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(checkpoint), "--output", str(tmp_path / "model.onnx")])
    assert exit_info.value.code == 0
    session = onnxruntime.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"])
    inputs = session.get_inputs()
    assert [i.name for i in inputs] == ["image"] and inputs[0].type == "tensor(uint8)"
    exported = session.run(None, {"image": batch.numpy()})[0]
    assert exported.shape == (5, model.task.num_classes)
    np.testing.assert_allclose(exported, expected, atol=1e-4, rtol=0)

    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(checkpoint), "--format", "torchscript", "--verify", "false",
              "--output", str(tmp_path / "model.pt")])  # compared below
    with torch.no_grad():
        scripted = torch.jit.load(str(tmp_path / "model.pt"))(batch).numpy()
    np.testing.assert_allclose(scripted, expected, atol=1e-4, rtol=0)
    assert "verified: max |exported - checkpoint|" in capsys.readouterr().out


def test_the_model_card_holds_task_metrics_licence_and_checksum(cnn_checkpoint, tmp_path):
    checkpoint = cnn_checkpoint
    results = {"checkpoint": str(checkpoint), "metrics": {"test": {"auroc": 0.8, "acc": 0.75}},
               "intervals": {"test": {"method": "percentile bootstrap", "confidence": 0.95, "resamples": 1000,
                                      "samples": 8, "metrics": {"auroc": {"low": 0.6, "high": 0.95}}}},
               "data": {"name": "SyntheticMedical"}}
    (checkpoint.parent.parent / "results.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(checkpoint), "--output_kind", "logits", "--format", "torchscript",
              "--verify", "false", "--output", str(tmp_path / "model.pt")])
    card = json.loads((tmp_path / "model.pt.card.json").read_text())
    assert card["task"]["class_names"] == ["normal", "lesion"]
    assert card["input"]["dtype"] == "uint8" and card["input"]["shape"] == ["batch", 3, SIZE, SIZE]
    assert card["output"]["kind"] == "logits" and card["output"]["columns"] == ["logit of lesion"]
    assert card["checkpoint"]["sha256"] == hashlib.sha256(checkpoint.read_bytes()).hexdigest()
    evaluation = card["evaluation"]
    assert evaluation["measured_on_this_checkpoint"] is True
    assert evaluation["metrics"]["auroc"] == {"value": 0.8, "low": 0.6, "high": 0.95}
    assert card["data"] == {"dataset": "SyntheticMedical", "image_size": SIZE, "augmentation": "natural",
                            "grey": False}
    backbone = card["model"]["backbones"][0]
    assert backbone["name"] == "test_resnet" and backbone["weights"]["licence"].startswith("unknown")
    markdown = (tmp_path / "model.pt.card.md").read_text()
    assert "| auroc | 0.8000 | [0.6000, 0.9500] |" in markdown and card["checkpoint"]["sha256"] in markdown


def test_registry_weights_name_their_licence():
    from medtransfer.export.card import weights_licence

    assert weights_licence("resnet50.swav_in1k")["licence"] == "CC-BY-NC-4.0"


def test_a_frozen_multi_backbone_dvme_exports(tmp_path):
    data = tiny_data("multiclass")
    torch.manual_seed(0)  # frozen random backbones are not in checkpoints: export rebuilds them from seed 0
    model = DVME(backbones=["test_resnet", "test_resnet"], proj_dim=16, heads=2, feature_cache=False,
                 task=data.task)
    checkpoint = train_checkpoint(tmp_path, model, data)
    with pytest.raises(SystemExit):
        main(["export", "--ckpt_path", str(checkpoint), "--output", str(tmp_path / "dvme.onnx")])
    loaded, _ = load_trained_model(checkpoint)
    batch = images(4, seed=3)
    session = onnxruntime.InferenceSession(str(tmp_path / "dvme.onnx"), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(session.run(None, {"image": batch.numpy()})[0],
                               checkpoint_probabilities(loaded, batch), atol=1e-4, rtol=0)


@pytest.mark.parametrize("head", [LinearProbe, LinearSweep])
def test_a_linear_head_on_feature_stores_exports_with_its_standardisation(tmp_path, head):
    data = tiny_data("binary")
    torch.manual_seed(0)
    model = head(backbone="test_resnet", features_dir=str(tmp_path / "features"), task=data.task)
    checkpoint = train_checkpoint(tmp_path, model, data)
    loaded, _ = load_trained_model(checkpoint)
    assert all(bool(s.fitted) for s in loaded.standardizers)
    deployed = DeployedModel(loaded)
    batch = images(4, seed=5)
    with torch.no_grad():
        exported = deployed(batch).numpy()
    np.testing.assert_allclose(exported, checkpoint_probabilities(loaded, batch), atol=1e-6)


def test_help_names_underscore_flags_and_no_fit_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert exit_info.value.code == 0 and "Takes no fit options" in out
    assert "--ckpt_path" in out and "--output_kind" in out and "--output-kind" not in out


def test_knn_is_refused_with_a_reason(tmp_path, capsys):
    data = tiny_data("binary")
    model = KNN(backbone="test_resnet", features_dir=str(tmp_path / "features"), task=data.task)
    path = tmp_path / "knn.ckpt"
    torch.save({"hyper_parameters": {**model.hparams, "_class_path": "medtransfer.lightning_modules.KNN"},
                "state_dict": model.state_dict()}, path)
    with pytest.raises(SystemExit) as exit_info:
        main(["export", "--ckpt_path", str(path)])
    assert exit_info.value.code == 2
    assert "kNN evaluation" in capsys.readouterr().err


def export_refused(argv: list[str], capsys) -> str:
    """The one-line message of an export that exits 2, checked to carry no traceback."""
    with pytest.raises(SystemExit) as exit_info:
        main(["export", *argv])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    return err


@pytest.mark.parametrize("refusal", ["file as parent", "name too long", "card name too long",
                                     "folder in the way", "read-only", "disk full"])
def test_an_export_that_cannot_be_written_is_a_named_error_before_any_work(cnn_checkpoint, tmp_path, capsys,
                                                                          refusal):
    out = tmp_path / "out"
    out.mkdir()
    (out / "file.txt").write_text("a file, not a folder")
    (out / "model.onnx").mkdir()
    output, refused, says = {
        "file as parent": (out / "file.txt" / "model.pt", nullcontext(), "file.txt is a file, not a folder"),
        "name too long": (out / f"{'m' * 300}.pt", nullcontext(), "File name too long; a name in the path"),
        "card name too long": (out / f"{'m' * 246}.pt", nullcontext(), r"card\.json: File name too long"),
        "folder in the way": (out / "model.onnx", nullcontext(), "a folder of that name is in the way"),
        "read-only": (out / "model.pt", read_only(out), "read-only|no permission"),
        "disk full": (out / "model.pt", failing_writes(errno.ENOSPC, out), "the disk is full"),
    }[refusal]
    with refused:
        err = export_refused(["--ckpt_path", str(cnn_checkpoint), "--format", "torchscript", "--output",
                              str(output)], capsys)
    assert re.search(f"cannot write .*({says})", err), err
    assert sorted(p.name for p in out.iterdir()) == ["file.txt", "model.onnx"]  # nothing exported


def test_the_model_card_holds_no_absolute_path_of_this_machine(tmp_path, tmp_path_factory):
    """Checkpoint, results.json, the data root it names, the backbone's weights file and the export: within
    the card's folder or the one above they are relative to the card, elsewhere named without their folder."""
    weights = tmp_path / "weights" / "test_resnet.pth"
    weights.parent.mkdir()
    torch.save(Finetune(backbone="test_resnet", task=tiny_data().task).backbone.model.state_dict(), weights)
    data = tiny_data()
    run = tmp_path / "run"
    model = Finetune(backbone="test_resnet", checkpoint=str(weights), task=data.task)
    checkpoint = train_checkpoint(run / "checkpoints", model, data)
    results = {"checkpoint": str(checkpoint), "metrics": {"test": {"auroc": 0.7}},
               "data": {"name": "ImageFolder", "root": str(tmp_path / "data" / "scans")}}
    (run / "results.json").write_text(json.dumps(results))
    beside = checkpoint.with_suffix(".pt")
    elsewhere = tmp_path / "exports" / "model.pt"
    for output in (beside, elsewhere):
        with pytest.raises(SystemExit):
            main(["export", "--ckpt_path", str(checkpoint), "--format", "torchscript", "--verify", "false",
                  "--output", str(output)])
    machine = str(tmp_path_factory.getbasetemp())
    cards = {}
    for output in (beside, elsewhere):
        text = output.with_name(output.name + ".card.json").read_text()
        markdown = output.with_name(output.name + ".card.md").read_text()
        assert machine not in text and machine not in markdown
        assert not re.search(r'"/|\(/| /tmp', text + markdown)  # no absolute path at all
        cards[output] = json.loads(text)
    near, far = cards[beside], cards[elsewhere]
    assert (near["checkpoint"]["path"], near["export"]["file"]) == ("last.ckpt", "last.pt")
    assert (near["evaluation"]["results"], near["evaluation"]["measured_on_checkpoint"]) == (
        "../results.json", "last.ckpt")
    assert near["evaluation"]["measured_on_this_checkpoint"] is True
    assert near["model"]["hyperparameters"]["checkpoint"] == "test_resnet.pth"
    assert near["evaluation"]["data"]["root"] == "scans"
    assert (far["checkpoint"]["path"], far["export"]["file"], far["evaluation"]["results"]) == (
        "../run/checkpoints/last.ckpt", "model.pt", "../run/results.json")
    assert near["checkpoint"]["sha256"] == far["checkpoint"]["sha256"]
