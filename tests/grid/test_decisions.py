"""Beside each cell's primary metric, the balanced accuracy of its runs' test decisions; runs whose decisions
are degenerate (one class for every test sample, or constant probabilities) are flagged, and their cell is
marked and never bold."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score

from medtransfer.grid.decisions import Decisions, decisions_of, recorded_decision
from medtransfer.grid.report import write_report
from medtransfer.outputs.predictions import Predictions
from medtransfer.outputs.results import write_json_atomic
from medtransfer.outputs.scoring import Decision
from medtransfer.task import Task

from .bench_helpers import results_document
from .test_report_statistics import binary_predictions, config, row_of, write_run

BINARY = Task("binary", ("normal", "lesion"))


def majority_predictions(seed: int) -> Predictions:
    """A model that orders the test images well but puts every probability under 0.26: it decides 'normal'
    for all of them (the smoke grid's finetune at the small fraction)."""
    predictions = binary_predictions(3.0, 20 + seed)
    predictions.probs = (0.25 * predictions.probs).astype(np.float32)
    return predictions


def test_a_run_that_decides_one_class_is_flagged_and_never_bold(tmp_path):
    for seed in range(3):
        write_run(tmp_path / f"supervised-{seed}", "supervised", seed, binary_predictions(1.0, seed))
        write_run(tmp_path / f"majority-{seed}", "majority", seed, majority_predictions(seed))
    summary = write_report(tmp_path, baseline="supervised", resamples=100).summary.read_text()

    majority, supervised = row_of(summary, "majority")[1], row_of(summary, "supervised")[1]
    # majority's AUROC is far the higher, yet it decides nothing: marked, not bold; chance balanced accuracy
    assert not majority.startswith("**") and majority.endswith("; bal. acc 50.00 ⚠1")
    assert supervised.startswith("**")
    expected = np.mean([balanced_accuracy_score(p.labels, p.probs >= 0.5)
                        for p in (binary_predictions(1.0, seed) for seed in range(3))])
    assert supervised.endswith(f"; bal. acc {100 * expected:.2f}")
    assert ("- ⚠1 majority, SyntheticMedical · 100%: degenerate decisions in 3 of 3 runs (seeds 0, 1, 2: it "
            "decides 'normal' for every test sample (threshold 0.5)); not ranked") in summary
    assert row_of(summary, "majority ⚠ − supervised")[-1] == "better"  # the AUROCs differ all the same

    with open(tmp_path / "report" / "results.csv") as handle:
        rows = {(r["backbone"], r["seed"]): r for r in csv.DictReader(handle)}
    assert float(rows[("majority", "0")]["balanced_accuracy"]) == 0.5
    assert rows[("majority", "0")]["degenerate"].startswith("it decides 'normal' for every test sample")
    assert rows[("supervised", "0")]["degenerate"] == ""


def test_constant_probabilities_are_flagged():
    labels = np.array([0, 1, 0, 1])
    predictions = Predictions(BINARY, list("abcd"), np.array([0.6, 0.6, 0.60001, 0.6], np.float32), labels)
    assert decisions_of(predictions, None) == Decisions(
        0.5, "its probabilities are constant (spread below 0.0001 over the test set)")


def test_binary_decisions_use_the_threshold_results_json_records(tmp_path):
    labels = np.array([0, 0, 0, 1, 1])
    predictions = Predictions(BINARY, list("abcde"), np.array([0.1, 0.2, 0.3, 0.3, 0.4], np.float32), labels)
    # at 0.5: all 'normal' (balanced accuracy 0.5); at 0.3 (reached: decided lesion): 2 of 3 normal and 2 of
    # 2 lesions right
    assert decisions_of(predictions, None) == Decisions(
        0.5, "it decides 'normal' for every test sample (threshold 0.5)")
    chosen = Decision(np.array([0.3]), "youden", 5).describe(BINARY)  # as medtransfer predict records it
    recorded = recorded_decision({"extra": {"decision": chosen}})
    assert recorded == {"lesion": 0.3}
    assert decisions_of(predictions, recorded) == Decisions(pytest.approx((2 / 3 + 1) / 2), None)

    predictions.write_csv(tmp_path / "test_predictions.csv")
    document = results_document(config("chosen", 0), {"auroc": 5.5 / 6}, extra={"decision": chosen},
                                backbones=["chosen"], predictions={"test": "test_predictions.csv"})
    write_json_atomic(tmp_path / "results.json", document)
    summary = write_report(tmp_path, resamples=10).summary.read_text()
    assert row_of(summary, "chosen")[1].endswith(f"; bal. acc {100 * (2 / 3 + 1) / 2:.2f}")


def test_multiclass_decisions_are_the_most_probable_class():
    task = Task("multiclass", ("g0", "g1", "g2"))
    labels = np.array([0, 0, 1, 1, 2, 2])
    probs = np.eye(3)[[0, 1, 1, 1, 1, 2]] * 0.8 + 0.2 / 3
    found = decisions_of(Predictions(task, list("abcdef"), probs.astype(np.float32), labels), None)
    assert found == Decisions(pytest.approx((0.5 + 1 + 0.5) / 3), None)
    assert found.balanced_accuracy == pytest.approx(balanced_accuracy_score(labels, probs.argmax(axis=1)))
    one_class = (np.tile([0.2, 0.5, 0.3], (6, 1)) + np.linspace(0, 0.01, 6)[:, None]).astype(np.float32)
    assert decisions_of(Predictions(task, list("abcdef"), one_class, labels), None) == Decisions(
        pytest.approx(1 / 3), "it decides 'g1' for every test sample (most probable class)")


def test_multilabel_decisions_are_each_label_over_its_threshold():
    task = Task("multilabel", ("effusion", "nodule"))
    labels = np.array([[1, 0], [0, 0], [1, 1], [0, 1]])
    probs = np.array([[0.9, 0.1], [0.2, 0.2], [0.4, 0.7], [0.1, 0.3]], np.float32)
    # effusion: 1 of 2 positives and 2 of 2 negatives right; nodule: 1 of 2 and 2 of 2
    found = decisions_of(Predictions(task, list("abcd"), probs, labels), None)
    assert found == Decisions(pytest.approx(0.75), None)
    rare = np.array([[0.3, 0.1], [0.2, 0.2], [0.4, 0.2], [0.1, 0.3]], np.float32)
    assert decisions_of(Predictions(task, list("abcd"), rare, labels), None) == Decisions(
        0.5, "it decides no label for every test sample (threshold 0.5)")


def test_runs_without_labelled_test_predictions_have_no_decisions(tmp_path):
    assert decisions_of(Predictions(BINARY, ["a"], np.array([0.7], np.float32)), None) is None
    write_json_atomic(tmp_path / "results.json", results_document(config("a", 0), {"auroc": 0.5}))
    summary = write_report(tmp_path, resamples=10).summary.read_text()
    assert row_of(summary, "test_resnet")[1] == "**50.00** (n=1) (no CI: no test predictions in results.json)"
