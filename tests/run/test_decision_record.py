"""A run that tests a binary or multilabel task records in results.json the decision thresholds chosen on the
validation split with the weights it tested (``extra.decision``); the grid's report decides at them.
Multiclass runs record none; a run without a labelled validation split records why, and still finishes."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from pytorch_lightning.utilities.exceptions import MisconfigurationException
from sklearn.metrics import balanced_accuracy_score

from medtransfer import run
from medtransfer.cli import main
from medtransfer.datamodules import SyntheticMedical
from medtransfer.errors import ConfigValueError
from medtransfer.export import load_trained_model
from medtransfer.grid.decisions import decisions_of, recorded_decision
from medtransfer.lightning_modules import KNN, Finetune, LinearProbe
from medtransfer.lightning_modules.metrics import probabilities
from medtransfer.outputs.predictions import read_predictions
from medtransfer.outputs.scoring import Decision
from medtransfer.outputs.thresholds import choose_thresholds
from medtransfer.run import RunOptions

SIZE = 32


def tiny_data(kind: str = "binary") -> SyntheticMedical:
    return SyntheticMedical(kind=kind, num_train=48, num_val=24, num_test=25, native_size=SIZE,
                            image_size=SIZE, batch_size=16)


def quiet_trainer(tmp_path: Path, name: str, max_epochs: int = 1):
    return run.default_trainer(name, save_dir=tmp_path / "runs", max_epochs=max_epochs, log_every_n_steps=1,
                               enable_progress_bar=False, enable_model_summary=False,
                               default_root_dir=tmp_path)


def expected_decision(model, batches, rule: str = "youden") -> dict:
    """What results.json should record: ``rule``'s thresholds on the model's validation probabilities,
    computed here from the validation ``batches`` without the run's code."""
    model.eval()
    with torch.no_grad():
        probs = np.concatenate([probabilities(model.task, model.logits(b)).numpy() for b in batches])
    labels = np.concatenate([b["label"].numpy() for b in batches])
    thresholds, undefined = choose_thresholds(model.task.kind, labels, probs, rule)
    names = model.task.class_names[1:] if model.task.kind == "binary" else model.task.class_names
    return Decision(thresholds, rule, len(labels), [names[i] for i in undefined]).describe(model.task)


def assert_same_decision(recorded: dict, expected: dict) -> None:
    assert recorded["rule"] == expected["rule"]
    assert recorded["validation_samples"] == expected["validation_samples"]
    assert recorded["left_at_0.5"] == expected["left_at_0.5"]
    assert recorded["thresholds"] == pytest.approx(expected["thresholds"], abs=1e-6)


def image_batches(kind: str = "binary") -> list[dict]:
    data = tiny_data(kind)
    data.setup("validate")
    return list(data.eval_dataloader("val"))


def test_a_binary_fit_records_youden_thresholds_of_its_best_checkpoint_and_test_repeats_them(tiny_cli,
                                                                                              tmp_path):
    args = tiny_cli(tmp_path / "runs", max_epochs=2)
    main(["fit", *args])
    results = json.loads(next((tmp_path / "runs").rglob("results.json")).read_text())
    decision = results["extra"]["decision"]
    assert decision["rule"] == "youden" and set(decision["thresholds"]) == {"lesion"}
    model, _ = load_trained_model(results["checkpoint"])  # the best checkpoint, which the test scored
    assert_same_decision(decision, expected_decision(model, image_batches()))

    # the report's balanced accuracy decides the test images at the recorded threshold
    run_dir = Path(results["checkpoint"]).parents[1]
    predictions = read_predictions(run_dir / "test_predictions.csv", model.task)
    recorded = recorded_decision(results)
    found = decisions_of(predictions, recorded)
    assert found.balanced_accuracy == pytest.approx(
        balanced_accuracy_score(predictions.labels, predictions.probs >= recorded["lesion"]))

    # `medtransfer test` of that checkpoint chooses the same thresholds
    main(["test", *args, "--ckpt_path", results["checkpoint"]])
    tested = json.loads((run_dir.parent / "version_1" / "results.json").read_text())
    assert_same_decision(tested["extra"]["decision"], decision)


def test_a_linear_probe_on_feature_stores_chooses_on_the_validation_store(tmp_path):
    data = tiny_data()
    probe = LinearProbe(backbone="test_resnet", task=data.task, features_dir=str(tmp_path / "features"))
    result = run.fit(model=probe, data=data, trainer=quiet_trainer(tmp_path, "probe"),
                     options=RunOptions(decision_rule="f1"))
    validation = list(probe.attached_data().split_batches("val"))
    assert "features" in validation[0]
    assert_same_decision(result.results["extra"]["decision"], expected_decision(probe, validation, "f1"))


def test_knn_records_multilabel_thresholds_and_multiclass_none(tmp_path):
    data = tiny_data("multilabel")
    knn = KNN(backbone="test_resnet", k=5, task=data.task, features_dir=str(tmp_path / "features"))
    result = run.test(model=knn, data=data, trainer=quiet_trainer(tmp_path, "knn"))
    decision = result.results["extra"]["decision"]
    assert set(decision["thresholds"]) == set(data.task.class_names)
    assert_same_decision(decision, expected_decision(knn, list(knn.attached_data().split_batches("val"))))

    data = tiny_data("multiclass")
    knn = KNN(backbone="test_resnet", k=5, task=data.task, features_dir=str(tmp_path / "features"))
    result = run.test(model=knn, data=data, trainer=quiet_trainer(tmp_path, "knn"))
    assert "decision" not in result.results["extra"] and result.results["metrics"]["test"]


class UnlabelledValidation(SyntheticMedical):
    def val_dataloader(self):
        return [{k: v for k, v in batch.items() if k != "label"} for batch in super().val_dataloader()]


class NoValidation(SyntheticMedical):
    def val_dataloader(self):
        raise MisconfigurationException("`val_dataloader` must be implemented to be used with the Lightning "
                                        "Trainer")


@pytest.mark.parametrize(("data_class", "reason"), [
    (UnlabelledValidation, "the validation split has no labels"),
    (NoValidation, "`val_dataloader` must be implemented to be used with the Lightning Trainer"),
])
def test_a_run_without_a_labelled_validation_split_records_why_and_finishes(tmp_path, caplog, data_class,
                                                                           reason):
    data = data_class(num_train=16, num_val=8, num_test=8, native_size=SIZE, image_size=SIZE, batch_size=8)
    model = Finetune(backbone="test_resnet", task=data.task)
    with caplog.at_level(logging.WARNING, logger="medtransfer.run.decision"):
        result = run.test(model=model, data=data, trainer=quiet_trainer(tmp_path, "unlabelled"),
                          options=RunOptions(allow_untrained=True))
    assert result.status == "finished" and result.results["metrics"]["test"]
    assert result.results["extra"]["decision"] == {"rule": None, "reason": reason}
    assert reason in caplog.text
    assert recorded_decision(result.results) is None  # the report decides at 0.5


def test_an_unknown_rule_is_refused():
    with pytest.raises(ConfigValueError, match="decision_rule='accuracy'"):
        RunOptions(decision_rule="accuracy")
