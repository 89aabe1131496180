"""The exact solver against scikit-learn's LogisticRegression on the same features and penalties."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import StandardScaler

from medtransfer.backbones import create_backbone
from medtransfer.lightning_modules.linear_probe import DEFAULT_L2
from medtransfer.lightning_modules.logistic_path import PathSolver, data_loss, logistic_path

L2_VALUES = [1e-3, 1e-2, 1e-1, 1.0]
MEDMNIST = Path(__file__).resolve().parents[3] / "shared" / "data" / "medmnist"
PNEUMONIA = MEDMNIST / "pneumoniamnist.npz"


def gaussian_classes(kind: str, n: int = 300, dim: int = 20, seed: int = 0):
    """Standardised features whose classes (labels) shift the mean along random directions, with overlap."""
    rng = np.random.default_rng(seed)
    if kind == "multilabel":
        labels = (rng.random((n, 3)) < 0.4).astype(np.float32)
        features = rng.normal(size=(n, dim)) + labels @ rng.normal(size=(3, dim))
    else:
        classes = 2 if kind == "binary" else 4
        labels = rng.integers(0, classes, n)
        features = rng.normal(size=(n, dim)) + rng.normal(size=(classes, dim))[labels] * 0.8
    return StandardScaler().fit_transform(features).astype(np.float32), labels


def nearly_separable(n: int = 200, n_val: int = 400, dim: int = 512, seed: int = 1):
    """Standardised ReLU features of a rank-16 Gaussian plus noise, shifted weakly by the class: more
    dimensions than samples, so the training classes separate and the weakly penalised objective falls to
    a few thousandths, as on a random-init network's embeddings of a small store. Training and validation
    (features, labels), standardised with the training statistics."""
    rng = np.random.default_rng(seed)
    total = n + n_val
    labels = rng.integers(0, 2, total)
    features = rng.normal(size=(total, 16)) @ rng.normal(size=(16, dim)) + 0.5 * rng.normal(size=(total, dim))
    features = np.maximum(features + 0.3 * np.outer(labels - 0.5, rng.normal(size=dim)), 0)
    features = (features - features[:n].mean(0)) / features[:n].std(0)
    return features[:n].astype(np.float32), labels[:n], features[n:], labels[n:]


def sklearn_coefficients(kind: str, features, labels, l2: float, tol: float):
    """(weight outputs x D, bias outputs) of scikit-learn's fit with the same objective."""
    c = 1.0 / (l2 * len(features))
    features = features.astype(np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        if kind == "multilabel":
            fits = [LogisticRegression(C=c, tol=tol, max_iter=5000).fit(features, labels[:, j])
                    for j in range(labels.shape[1])]
            return np.concatenate([f.coef_ for f in fits]), np.concatenate([f.intercept_ for f in fits])
        fit = LogisticRegression(C=c, tol=tol, max_iter=5000).fit(features, labels)
        return fit.coef_, fit.intercept_


@pytest.mark.parametrize("kind", ["binary", "multiclass", "multilabel"])
def test_every_point_of_the_path_is_scikit_learns_solution(kind):
    features, labels = gaussian_classes(kind)
    outputs = {"binary": 1, "multiclass": 4, "multilabel": 3}[kind]
    path = logistic_path(torch.from_numpy(features), torch.from_numpy(labels), kind, outputs, L2_VALUES,
                         tol=1e-6)
    assert [p.l2 for p in path] == L2_VALUES  # in the order asked, though solved strongest first
    x, y = torch.from_numpy(features).double(), torch.from_numpy(labels)
    for point in path:
        weight, bias = sklearn_coefficients(kind, features, labels, point.l2, tol=1e-8)
        assert point.converged and point.gradient <= 1e-6
        # the same minimum: objectives equal, coefficients within what the gradient tolerance allows
        theirs = float(data_loss(kind, x @ torch.from_numpy(weight).T + torch.from_numpy(bias), y)
                       + 0.5 * point.l2 * (weight**2).sum())
        assert point.objective == pytest.approx(theirs, rel=1e-7)
        np.testing.assert_allclose(point.weight.numpy(), weight, atol=1e-3 * max(1, np.abs(weight).max()))
        np.testing.assert_allclose(point.bias.numpy(), bias, atol=1e-3 * max(1, np.abs(bias).max()))


def test_the_objective_is_the_mean_loss_plus_half_the_penalised_squared_weights():
    features, labels = gaussian_classes("binary", n=50, dim=4)
    (point,) = logistic_path(torch.from_numpy(features), torch.from_numpy(labels), "binary", 1, [0.3])
    x = torch.from_numpy(features).double()
    loss = data_loss("binary", point.logits(x), torch.from_numpy(labels))
    assert point.objective == pytest.approx(float(loss + 0.15 * point.weight.pow(2).sum()), rel=1e-6)


def test_multilabel_losses_add_up_over_the_labels():
    logits = torch.tensor([[0.0, 2.0], [1.0, -1.0]])
    labels = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    per_label = [data_loss("binary", logits[:, j], labels[:, j]) for j in range(2)]
    assert float(data_loss("multilabel", logits, labels)) == pytest.approx(float(sum(per_label)))


def test_warm_starts_make_the_weakly_regularised_points_cheaper():
    features, labels = gaussian_classes("multiclass", n=400, dim=40)
    x, y = torch.from_numpy(features), torch.from_numpy(labels)
    weakest = 1e-4
    cold = logistic_path(x, y, "multiclass", 4, [weakest], tol=1e-6)[0]
    warm = logistic_path(x, y, "multiclass", 4, [weakest, 1e-3, 1e-2, 1e-1], tol=1e-6)[0]
    assert warm.converged and cold.converged and warm.iterations < cold.iterations
    torch.testing.assert_close(warm.weight, cold.weight, atol=1e-2, rtol=0)  # within tol / l2


def test_a_solve_that_runs_out_of_iterations_says_so():
    features, labels = gaussian_classes("multiclass")
    (point,) = logistic_path(torch.from_numpy(features), torch.from_numpy(labels), "multiclass", 4, [1e-4],
                             max_iter=3)
    assert not point.converged and point.iterations <= 3 and point.gradient > 1e-4


def test_bad_penalties_are_refused():
    features, labels = gaussian_classes("binary", n=20, dim=3)
    for bad in ([], [0.1, 0.0], [-1.0]):
        with pytest.raises(ValueError, match="l2 values must be positive"):
            logistic_path(torch.from_numpy(features), torch.from_numpy(labels), "binary", 1, bad)


def assert_path_is_scikit_learns(features, labels, val_features, val_labels):
    """Every point of the default path against scikit-learn's solution at tol 1e-8: the validation AUROC
    within 0.002, the weights within 2% of scikit-learn's largest (each point has one minimum:
    the penalty makes the objective strictly convex)."""
    path = logistic_path(torch.from_numpy(features), torch.from_numpy(labels), "binary", 1, DEFAULT_L2)
    assert path[0].objective < 0.01  # the weak end is in the tiny-objective regime
    for point in path:
        weight, bias = sklearn_coefficients("binary", features, labels, point.l2, tol=1e-8)
        ours = roc_auc_score(val_labels, point.logits(torch.from_numpy(val_features)).numpy().ravel())
        theirs = roc_auc_score(val_labels, val_features @ weight.ravel() + bias)
        assert point.converged and abs(ours - theirs) <= 0.002, (point.l2, ours, theirs)
        np.testing.assert_allclose(point.weight.numpy(), weight, rtol=0, atol=0.02 * np.abs(weight).max())


def test_the_weak_end_of_a_nearly_separable_path_is_scikit_learns_solution():
    """A fixed gradient bound of 1e-4 is met far from the optimum when the objective is a few thousandths:
    the weakest penalties stopped up to 0.0065 validation AUROC from scikit-learn's solution here. Relative to
    the objective, the bound holds every point to it."""
    assert_path_is_scikit_learns(*nearly_separable())


@pytest.mark.skipif(not PNEUMONIA.is_file(), reason=f"no {PNEUMONIA}")
def test_the_path_is_scikit_learns_solution_on_real_embeddings(one_thread):
    """546 PneumoniaMNIST training images (BreastMNIST's size) embedded by a random-init ResNet-18 at 28 px:
    the weak end stopped up to 0.0115 validation AUROC (the whole validation split) from scikit-learn's
    solution with a fixed bound."""
    data = np.load(PNEUMONIA)
    rows = np.random.default_rng(0).choice(len(data["train_images"]), 546, replace=False)
    torch.manual_seed(0)
    backbone = create_backbone("resnet18").eval()

    def embed(images: np.ndarray) -> np.ndarray:
        with torch.no_grad():
            grey = torch.from_numpy(images)[:, None].repeat(1, 3, 1, 1)
            return torch.cat([backbone(batch) for batch in grey.split(256)]).double().numpy()

    train, val = embed(data["train_images"][rows]), embed(data["val_images"])
    scaler = StandardScaler().fit(train)
    labels, val_labels = data["train_labels"][rows].ravel(), data["val_labels"].ravel()
    assert_path_is_scikit_learns(scaler.transform(train).astype(np.float32), labels, scaler.transform(val),
                                 val_labels)


@pytest.mark.parametrize(("kind", "outputs", "threads"), [("binary", 1, 1), ("multiclass", 4, 1),
                                                          ("multilabel", 14, 2)])
def test_the_solve_takes_one_thread_for_few_outputs_and_gives_the_count_back(monkeypatch, kind, outputs,
                                                                            threads):
    """Matrix-vector products run on one thread: a second one would only spin (docs/protocols.md)."""
    seen = []
    real_solve = PathSolver.solve

    def solve(self, l2, max_iter):
        seen.append(torch.get_num_threads())
        return real_solve(self, l2, max_iter)

    monkeypatch.setattr(PathSolver, "solve", solve)
    rng = np.random.default_rng(0)
    features = torch.from_numpy(rng.normal(size=(60, 8)).astype(np.float32))
    labels = (torch.from_numpy((rng.random((60, outputs)) < 0.4).astype(np.float32)) if kind == "multilabel"
              else torch.from_numpy(rng.integers(0, max(outputs, 2), 60)))
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        logistic_path(features, labels, kind, outputs, [1e-2, 1e-1])
        assert seen == [threads, threads] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)
