"""results.json: the document's fields and the atomic write."""

from __future__ import annotations

import json

import pytest

from medtransfer import __version__
from medtransfer.outputs.results import SCHEMA, build_results, write_json_atomic


def document() -> dict:
    return build_results(
        verb="fit", metrics={"test": {"auroc": 0.9, "loss": float("nan")}}, task={"kind": "binary"},
        data={"name": "SyntheticMedical", "train_fraction": 0.1}, model={"name": "Finetune", "backbones": []},
        seed=3, config={"trainer": {"max_epochs": 1}}, wall_time_s=1.23456, extra={"importance": [0.5, 0.5]},
        checkpoint="runs/x/checkpoints/best.ckpt",
    )


def test_document_fields():
    results = document()
    assert results["schema"] == SCHEMA and results["medtransfer_version"] == __version__
    assert results["verb"] == "fit" and results["seed"] == 3 and results["wall_time_s"] == 1.235
    assert results["checkpoint"] == "runs/x/checkpoints/best.ckpt"
    assert results["extra"] == {"importance": [0.5, 0.5]}
    assert results["data"]["train_fraction"] == 0.1 and results["config"]["trainer"]["max_epochs"] == 1
    # a run that did not test has no predictions file and no intervals, under the same keys
    assert results["predictions"] == {} and results["intervals"] == {}


def test_test_statistics_are_stored_under_their_own_keys():
    results = build_results(
        verb="test", metrics={"test": {"auroc": 0.9}}, task={"kind": "binary"}, data={}, model={}, seed=0,
        config={}, wall_time_s=1.0, predictions={"test": "test_predictions.csv"},
        intervals={"test": {"metrics": {"auroc": {"low": 0.85, "high": 0.94}}}},
    )
    assert results["metrics"] == {"test": {"auroc": 0.9}}  # the meaning of metrics is unchanged
    assert results["predictions"]["test"] == "test_predictions.csv"
    assert results["intervals"]["test"]["metrics"]["auroc"]["low"] == 0.85


def test_write_is_atomic_and_round_trips(tmp_path):
    path = write_json_atomic(tmp_path / "run" / "results.json", document())
    loaded = json.loads(path.read_text())
    assert loaded["metrics"]["test"]["auroc"] == 0.9
    assert list(path.parent.iterdir()) == [path]  # no temporary file left behind


def test_a_failed_write_leaves_the_old_file(tmp_path):
    path = write_json_atomic(tmp_path / "results.json", {"a": 1})
    circular: dict = {}
    circular["self"] = circular
    with pytest.raises(ValueError, match="Circular"):
        write_json_atomic(path, circular)
    assert json.loads(path.read_text()) == {"a": 1}
    assert list(tmp_path.iterdir()) == [path]
