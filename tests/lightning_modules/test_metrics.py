"""Losses and metric values against examples worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from medtransfer.lightning_modules.metrics import (
    DefinedBinaryAUROC,
    binary_auroc_rows,
    build_calibration_metrics,
    build_metrics,
    build_per_class_auroc,
    calibration_values,
    metric_targets,
    probabilities,
    sample_losses,
    task_loss,
)
from medtransfer.task import Task

BINARY = Task("binary", ("normal", "lesion"))
GRADES = Task("multiclass", ("g0", "g1", "g2"), ordinal=True, primary_metric="kappa")
FINDINGS = Task("multilabel", ("spot", "ring", "stripe"))


def values(task: Task, probs, targets) -> dict[str, float]:
    metrics = build_metrics(task)
    metrics.update(torch.tensor(probs), metric_targets(task, torch.tensor(targets)))
    return {name: float(value) for name, value in metrics.compute().items()}


def test_binary_auroc_accuracy_f1():
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of 4 pairs ranked right -> AUROC 0.75.
    # At 0.5 only 0.8 is called positive: acc 3/4; precision 1, recall 1/2 -> F1 2/3.
    got = values(BINARY, [0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])
    assert got == pytest.approx({"auroc": 0.75, "acc": 0.75, "f1": 2 / 3})


def test_binary_auroc_is_nan_not_zero_when_one_class_is_missing():
    assert math.isnan(values(BINARY, [0.2, 0.8], [1, 1])["auroc"])


def test_multiclass_macro_auroc_accuracy():
    probs = [[0.7, 0.2, 0.1], [0.2, 0.5, 0.3], [0.3, 0.4, 0.3], [0.1, 0.3, 0.6]]
    # one-vs-rest: class 0 and 1 perfectly ranked; class 2: positives 0.3, 0.6 vs negatives 0.1, 0.3
    # -> (1 + 0.5 + 1 + 1) / 4 = 0.875; macro (1 + 1 + 0.875) / 3. argmax right for 3 of 4.
    got = values(Task("multiclass", ("a", "b", "c")), probs, [0, 1, 2, 2])
    assert got["auroc"] == pytest.approx((1 + 1 + 0.875) / 3)
    assert got["acc"] == pytest.approx(0.75)
    assert "kappa" not in got


def test_macro_auroc_leaves_out_an_absent_class():
    probs = [[0.7, 0.2, 0.1], [0.2, 0.7, 0.1], [0.6, 0.3, 0.1], [0.3, 0.6, 0.1]]
    assert values(Task("multiclass", ("a", "b", "c")), probs, [0, 1, 0, 1])["auroc"] == pytest.approx(1.0)


def test_quadratic_weighted_kappa_by_hand():
    # confusion (rows true, cols predicted): [[1,1,0],[0,2,0],[1,0,1]], N=6, weights (i-j)^2/4.
    # observed sum w*O = 0.25 + 1 = 1.25; expected E = row x col / N with rows [2,2,2], cols [2,3,1]:
    # sum w*E = 0.5833 + 0.25 + 0.9167 = 1.75; kappa = 1 - 1.25 / 1.75 = 2/7.
    predicted = [0, 1, 1, 1, 2, 0]
    probs = torch.nn.functional.one_hot(torch.tensor(predicted), 3).float().tolist()
    assert values(GRADES, probs, [0, 0, 1, 1, 2, 2])["kappa"] == pytest.approx(2 / 7, abs=1e-6)


def test_multilabel_macro_and_per_class_auroc():
    probs = [[0.9, 0.2, 0.6], [0.8, 0.7, 0.4], [0.3, 0.6, 0.5], [0.1, 0.4, 0.7]]
    targets = [[1, 0, 1], [0, 1, 0], [1, 0, 0], [0, 1, 1]]
    # spot: pos 0.9, 0.3 vs neg 0.8, 0.1 -> 3/4; ring: pos 0.7, 0.4 vs neg 0.2, 0.6 -> 3/4; stripe: 4/4
    assert values(FINDINGS, probs, targets)["auroc"] == pytest.approx((0.75 + 0.75 + 1) / 3)
    per_class = build_per_class_auroc(FINDINGS)
    per_class.update(torch.tensor(probs), torch.tensor(targets))
    assert per_class.compute().tolist() == pytest.approx([0.75, 0.75, 1.0])
    assert build_per_class_auroc(BINARY) is None


def test_losses_by_hand():
    # BCE of logits 2 (label 1) and -1 (label 0): mean(log(1 + e^-2), log(1 + e^-1))
    expected = (math.log1p(math.exp(-2)) + math.log1p(math.exp(-1))) / 2
    bce = float(task_loss(BINARY, torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 0])))
    assert bce == pytest.approx(expected)
    # CE of logits [2, 0, 0] for class 0: -log(e^2 / (e^2 + 2)) = log(1 + 2 e^-2)
    ce = float(task_loss(GRADES, torch.tensor([[2.0, 0.0, 0.0]]), torch.tensor([0])))
    assert ce == pytest.approx(math.log1p(2 * math.exp(-2)))
    # multilabel BCE averages over every (sample, label): logits 0 give log 2 whatever the labels
    ml = float(task_loss(FINDINGS, torch.zeros(2, 3), torch.tensor([[1.0, 0, 1], [0, 0, 1]])))
    assert ml == pytest.approx(math.log(2))


def test_probabilities_per_kind():
    assert probabilities(BINARY, torch.tensor([[0.0]])).tolist() == [0.5]
    assert probabilities(GRADES, torch.zeros(1, 3)).tolist() == [[pytest.approx(1 / 3)] * 3]
    assert probabilities(FINDINGS, torch.zeros(1, 3)).tolist() == [[0.5] * 3]
    assert probabilities(BINARY, torch.tensor([[0.0]], dtype=torch.bfloat16)).dtype == torch.float32


def calibration(task: Task, probs, targets) -> dict[str, float]:
    metrics = build_calibration_metrics(task)
    metrics.update(torch.tensor(probs), metric_targets(task, torch.tensor(targets)))
    return calibration_values(task, metrics.compute())


def test_calibration_by_hand():
    # binary, 10 bins of the positive-class probability: {0.05, 0.05} observed 1/2, {0.95} observed 1
    # ECE = |0.5 - 0.05| * 2/3 + |1 - 0.95| * 1/3 = 0.3166...; Brier = (0.05^2 + 0.95^2 + 0.05^2) / 3
    binary = calibration(BINARY, [0.05, 0.05, 0.95], [0, 1, 1])
    assert binary["ece"] == pytest.approx(0.45 * 2 / 3 + 0.05 / 3, abs=1e-6)
    assert binary["brier"] == pytest.approx((0.05**2 + 0.95**2 + 0.05**2) / 3)
    # multiclass: top-class confidence 0.6, right once and wrong once: ECE 0.1; Brier per sample sums classes
    grades = calibration(GRADES, [[0.6, 0.3, 0.1], [0.1, 0.6, 0.3]], [0, 0])
    assert grades["ece"] == pytest.approx(abs(0.5 - 0.6), abs=1e-6)
    assert grades["brier"] == pytest.approx(((0.4**2 + 0.3**2 + 0.1**2) + (0.9**2 + 0.6**2 + 0.3**2)) / 2)
    # multilabel: one ECE per label, their mean is ece
    findings = calibration(FINDINGS, [[0.9, 0.2, 0.5], [0.9, 0.2, 0.5]], [[1, 0, 1], [1, 1, 0]])
    assert findings["ece/spot"] == pytest.approx(0.1, abs=1e-6)
    assert findings["ece/ring"] == pytest.approx(0.3, abs=1e-6)
    assert findings["ece/stripe"] == pytest.approx(0.0, abs=1e-6)
    assert findings["ece"] == pytest.approx(0.4 / 3, abs=1e-6)


def test_sample_losses_average_to_the_task_loss():
    torch.manual_seed(0)
    for task, labels in [(BINARY, torch.tensor([1, 0, 1])), (GRADES, torch.tensor([0, 2, 1])),
                         (FINDINGS, torch.tensor([[1.0, 0, 1], [0, 0, 1], [1, 1, 1]]))]:
        logits = torch.randn(3, task.num_outputs)
        losses = sample_losses(task, logits, labels)
        assert losses.shape == (3,)
        assert float(losses.mean()) == pytest.approx(float(task_loss(task, logits, labels)), abs=1e-6)


@pytest.mark.parametrize("levels", [None, 7])  # continuous scores, and scores with many ties
def test_binary_auroc_of_every_row_at_once_is_scikit_learns_and_torchmetrics(levels):
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    generator = torch.Generator().manual_seed(0)
    targets = torch.randint(0, 2, (300,), generator=generator)
    scores = torch.rand(6, 300, generator=generator) + 0.3 * targets  # six heads, some signal
    if levels:
        scores = (scores * levels).round() / levels
    got = binary_auroc_rows(scores, targets)
    for row, value in zip(scores, got, strict=True):
        expected = sklearn_metrics.roc_auc_score(targets.numpy(), row.numpy())
        assert float(value) == pytest.approx(expected, abs=1e-9)
        metric = DefinedBinaryAUROC()
        metric.update(row, targets)
        assert float(value) == pytest.approx(float(metric.compute()), abs=1e-6)


def test_binary_auroc_of_every_row_is_nan_when_one_class_is_missing():
    assert torch.isnan(binary_auroc_rows(torch.rand(3, 10), torch.ones(10))).all()


def test_binary_auroc_of_every_row_refuses_targets_other_than_0_and_1():
    with pytest.raises(ValueError, match=r"targets of 0 and 1, got the values \[1, 2\]"):
        binary_auroc_rows(torch.rand(2, 4), torch.tensor([1, 2, 1, 2]))
