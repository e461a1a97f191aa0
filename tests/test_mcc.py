"""Mean correlation coefficient against a direct NumPy/SciPy reference."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment
from scipy.stats import spearmanr

from jaxmmcl.evaluation.mcc import correlation_matrix, mcc


def _reference(z_true, z_pred, method):
    d = z_true.shape[1]
    if method == "pearson":
        corr = np.corrcoef(z_true.T, z_pred.T)[:d, d:]
    else:
        corr = spearmanr(z_true, z_pred).statistic[:d, d:]
    corr = np.abs(corr)
    rows, cols = linear_sum_assignment(-corr)
    return corr[rows, cols].mean()


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_permuted_sign_flipped_copy_scores_one(method):
    z = np.random.default_rng(0).standard_normal((300, 5))
    pred = -2.0 * z[:, [3, 0, 4, 1, 2]] * np.array([1, -1, 1, -1, 1]) + 0.5
    if method == "spearman":  # any strictly monotone map per component
        pred = np.exp(pred)
    assert mcc(z, pred, method=method) == pytest.approx(1.0, abs=1e-6)


@pytest.mark.parametrize("method", ["pearson", "spearman"])
@pytest.mark.parametrize("d_pred", [3, 6])
def test_equals_scipy_reference(method, d_pred):
    rng = np.random.default_rng(d_pred)
    z = rng.standard_normal((400, 4))
    pred = rng.standard_normal((400, d_pred))
    pred[:, : min(4, d_pred)] += 0.7 * np.tanh(z[:, : min(4, d_pred)][:, ::-1])
    assert mcc(z, pred, method=method) == pytest.approx(_reference(z, pred, method), abs=1e-5)


def test_spearman_ties_use_average_ranks():
    rng = np.random.default_rng(5)
    z = rng.integers(0, 4, (200, 3)).astype(np.float32)  # many ties
    pred = z + rng.integers(0, 3, (200, 3))
    expected = spearmanr(z, pred).statistic[:3, 3:]
    np.testing.assert_allclose(correlation_matrix(z, pred, "spearman"), expected, atol=1e-5)


def test_constant_column_counts_as_uncorrelated():
    z = np.random.default_rng(6).standard_normal((100, 2))
    pred = np.stack([z[:, 1], np.ones(100)], 1)
    assert mcc(z, pred) == pytest.approx(0.5, abs=1e-6)


def test_non_finite_gives_nan():
    z = np.random.default_rng(7).standard_normal((50, 2))
    pred = z.copy()
    pred[3, 1] = np.nan
    assert np.isnan(mcc(z, pred))


@pytest.mark.parametrize(
    ("z_true", "z_pred", "kwargs", "message"),
    [
        (np.zeros((5, 2)), np.zeros((6, 2)), {}, "z_true has 5 samples but z_pred has 6"),
        (np.zeros((5,)), np.zeros((5, 2)), {}, "z_true"),
        (np.zeros((5, 2)), np.zeros((5, 0)), {}, "z_pred"),
        (np.zeros((5, 2)), np.zeros((5, 2)), {"method": "kendall"}, "kendall"),
    ],
)
def test_bad_input_raises(z_true, z_pred, kwargs, message):
    with pytest.raises(ValueError, match=message):
        mcc(z_true, z_pred, **kwargs)
