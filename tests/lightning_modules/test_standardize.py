"""Feature standardisation: statistics as scikit-learn's StandardScaler computes them, merged exactly over
batches and ranks, and no NaN from a constant dimension."""

from __future__ import annotations

import numpy as np
import torch
from sklearn.preprocessing import StandardScaler

from medtransfer.lightning_modules.standardize import FeatureStandardizer, Moments


def features(n: int = 257, dim: int = 6, seed: int = 0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    return torch.from_numpy(rng.normal(loc=3.0, scale=0.01, size=(n, dim)).astype(np.float32))


def test_statistics_and_output_equal_scikit_learns_standard_scaler():
    x = features()
    standardizer = FeatureStandardizer(x.shape[1])
    standardizer.set_statistics(Moments(x.shape[1]).update(x))
    scaler = StandardScaler().fit(x.double().numpy())
    np.testing.assert_allclose(standardizer.mean.numpy(), scaler.mean_, rtol=1e-6)
    np.testing.assert_allclose(standardizer.std.numpy(), scaler.scale_, rtol=1e-5)
    np.testing.assert_allclose(standardizer(x).numpy(), scaler.transform(x.double().numpy()), atol=2e-3)


def test_batches_and_ranks_merge_to_the_one_pass_statistics():
    x = features()
    whole = Moments(x.shape[1]).update(x)
    batched = Moments(x.shape[1])
    for start in range(0, len(x), 50):
        batched.update(x[start : start + 50])
    # two "ranks" holding rows r, r + 2, ...: merged from what they would exchange
    ranks = [Moments(x.shape[1]).update(x[rank::2]).as_tensor() for rank in range(2)]
    merged = Moments.from_tensors(ranks)
    for moments in (batched, merged):
        assert float(moments.count) == len(x)
        torch.testing.assert_close(moments.mean, whole.mean, rtol=1e-12, atol=0)
        torch.testing.assert_close(moments.m2, whole.m2, rtol=1e-9, atol=0)


def test_a_constant_dimension_becomes_zero_not_nan():
    x = features()
    x[:, 2] = 7.25  # a dead ReLU unit, or a dimension float16 flattened
    standardizer = FeatureStandardizer(x.shape[1])
    standardizer.set_statistics(Moments(x.shape[1]).update(x))
    out = standardizer(x)
    assert torch.isfinite(out).all()
    assert torch.equal(out[:, 2], torch.zeros(len(x)))
    assert standardizer.describe()["constant_dims"] == 1


def test_identity_statistics_leave_features_unchanged():
    x = features()
    standardizer = FeatureStandardizer(x.shape[1])
    standardizer.set_identity()
    assert bool(standardizer.fitted)
    assert torch.equal(standardizer(x), x)
