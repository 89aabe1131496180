"""scikit-learn as the reference linear probe: the same standardisation, regularisation path and validation
selection as ``LinearProbe``'s exact solver, scored with scikit-learn's own metrics."""

from __future__ import annotations

import warnings

import numpy as np
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import cohen_kappa_score, log_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler


def store_arrays(backbone, data, features_dir) -> dict:
    """(float64 features, labels) per split of the stores a probe used: the label fraction's rows for
    train."""
    from medtransfer.features import store_for

    arrays = {}
    for split in ("train", "val", "test"):
        store = store_for(backbone, data, split, features_dir)
        rows = store.rows_of(data.split_source(split).ids)
        arrays[split] = (np.asarray(store.features[rows], dtype=np.float64), np.asarray(store.labels[rows]))
    return arrays


def primary_metric(kind: str, labels: np.ndarray, probs: np.ndarray) -> float:
    """AUROC (binary; macro over labels for multilabel) or quadratic weighted kappa (ordinal multiclass)."""
    if kind == "binary":
        return float(roc_auc_score(labels, probs))
    if kind == "multiclass":
        return float(cohen_kappa_score(labels, probs.argmax(axis=1), weights="quadratic"))
    return float(np.mean([roc_auc_score(labels[:, j], probs[:, j]) for j in range(labels.shape[1])]))


def _loss(kind: str, labels: np.ndarray, probs: np.ndarray) -> float:
    if kind == "multilabel":
        return float(np.mean([log_loss(labels[:, j], probs[:, j], labels=[0, 1])
                              for j in range(labels.shape[1])]))
    if kind == "binary":
        return float(log_loss(labels, probs, labels=[0, 1]))
    return float(log_loss(labels, probs, labels=list(range(probs.shape[1]))))


def sklearn_probe(kind: str, train: tuple, val: tuple, test: tuple, l2_values, tol: float = 1e-4,
                  max_iter: int = 1000) -> dict:
    """Fit ``LogisticRegression(C=1 / (l2 * n))`` on standardised training features for every ``l2``
    (strongest first, warm-started), select on validation by the primary metric (ties: lower loss), and
    return the selected l2, every point's validation score and the selected model's test score."""
    scaler = StandardScaler().fit(train[0])
    x_train, x_val, x_test = (scaler.transform(x) for x in (train[0], val[0], test[0]))
    n = len(x_train)
    labels = train[1]
    columns = range(labels.shape[1]) if kind == "multilabel" else [None]
    models = {j: LogisticRegression(C=1.0, tol=tol, max_iter=max_iter, warm_start=True) for j in columns}

    def predict(x):
        if kind == "multilabel":
            return np.stack([models[j].predict_proba(x)[:, 1] for j in columns], axis=1)
        probs = models[None].predict_proba(x)
        return probs[:, 1] if kind == "binary" else probs

    points = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for l2 in sorted((float(v) for v in l2_values), reverse=True):
            for j, model in models.items():
                model.set_params(C=1.0 / (l2 * n))
                model.fit(x_train, labels if j is None else labels[:, j])
            val_probs = predict(x_val)
            points[l2] = (primary_metric(kind, val[1], val_probs), _loss(kind, val[1], val_probs),
                          primary_metric(kind, test[1], predict(x_test)))
    ordered = [float(v) for v in l2_values]
    best = max(ordered, key=lambda v: (points[v][0], -points[v][1]))
    return {"l2": best, "val": [points[v][0] for v in ordered], "test": points[best][2]}
