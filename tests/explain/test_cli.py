"""``--explain`` on the command line: ``medtransfer predict --explain`` writes a map per new image and names
it in predictions.csv; ``fit``/``test`` get the test-image maps."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import pytest

from medtransfer.cli import main
from medtransfer.explain import ExplanationError, ExplanationMaps, PredictionExplanations, add_explanations
from medtransfer.grid.fingerprint import group_fingerprint, run_fingerprint
from medtransfer.grid.resolve import ConfigResolver
from medtransfer.lightning_modules import Finetune
from tests.run.test_predict_new_images import write_images

from ..conftest import REPO, quiet_trainer_args
from ..export.checkpoints import tiny_data, train_checkpoint


def test_predict_explain_writes_a_map_per_image_beside_the_predictions(tmp_path):
    data = tiny_data("binary")
    checkpoint = train_checkpoint(tmp_path / "model", Finetune(backbone="test_resnet", task=data.task), data)
    write_images(tmp_path / "new", 3)
    main(["predict", "--ckpt_path", str(checkpoint), "--data", "NewImages", "--data.init_args.root",
          str(tmp_path / "new"), "--explain", *quiet_trainer_args(tmp_path / "runs", "explained", 1)])
    predictions = next((tmp_path / "runs").rglob("predictions.csv"))
    with open(predictions) as handle:
        rows = list(csv.DictReader(handle))
    assert [row["id"] for row in rows] == ["image0.png", "image2.png", "sub/image1.png"]
    assert rows[0]["explanation"] == "explanations/image0.png"
    assert rows[2]["explanation"].startswith("explanations/sub_image1.png-")  # a sub-folder id: made safe
    assert rows[2]["explanation"].endswith(".png")
    assert all((predictions.parent / row["explanation"]).is_file() for row in rows)


def test_explain_adds_the_callback_of_the_verb_once():
    trainer = SimpleNamespace(callbacks=[])
    add_explanations(trainer, "test")
    add_explanations(trainer, "test")
    assert [type(c) for c in trainer.callbacks] == [ExplanationMaps]
    add_explanations(trainer, "predict")
    assert isinstance(trainer.callbacks[-1], PredictionExplanations)
    with pytest.raises(ExplanationError, match="not for validate"):
        add_explanations(trainer, "validate")


def test_explain_leaves_a_runs_benchmark_fingerprint_alone():
    """Pictures are not what a run measures: a run with ``--explain``, one without, and a results.json
    written before the flag existed are the same run of a grid."""
    config = ConfigResolver().parse(["fit", "--config", str(REPO / "configs" / "quickstart.yaml")])
    explained = {**config, "explain": True}
    older = {key: value for key, value in config.items() if key != "explain"}
    assert run_fingerprint(explained) == run_fingerprint(config) == run_fingerprint(older)
    assert group_fingerprint(explained) == group_fingerprint(older)
