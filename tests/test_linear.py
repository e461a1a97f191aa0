"""Linear R^2 against scikit-learn's LinearRegression and r2_score."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score as sk_r2_score
from sklearn.preprocessing import StandardScaler

from jaxmmcl.evaluation.linear import fit_linear, linear_r2, r2_score, standardise


def _reference(x_fit, y_fit, x_test, y_test):
    return sk_r2_score(y_test, LinearRegression().fit(x_fit, y_fit).predict(x_test))


def _data(seed, k, t, n_fit=120, n_test=80):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n_fit + n_test, k))
    y = x @ rng.standard_normal((k, t)) + np.sin(x[:, :1]) + 0.5 * rng.standard_normal((1, t))
    y += 0.3 * rng.standard_normal(y.shape)
    return x[:n_fit], y[:n_fit], x[n_fit:], y[n_fit:]


@pytest.mark.parametrize(("k", "t"), [(5, 3), (1, 2), (3, 1)])
def test_linear_r2_equals_sklearn(k, t):
    data = _data(k + t, k, t)
    assert float(linear_r2(*data)) == pytest.approx(_reference(*data), abs=1e-4)


def test_one_dimensional_target():
    x_fit, y_fit, x_test, y_test = _data(0, 2, 1)
    ref = _reference(x_fit, y_fit[:, 0], x_test, y_test[:, 0])
    assert float(linear_r2(x_fit, y_fit[:, 0], x_test, y_test[:, 0])) == pytest.approx(ref, 1e-4)


def test_constant_target():
    x_fit, _, x_test, _ = _data(1, 3, 1)
    # 2.5 has an exact mean, so scikit-learn's R^2 is exactly 1 (predicted exactly).
    y_fit, y_test = np.full((len(x_fit), 2), 2.5), np.full((len(x_test), 2), 2.5)
    assert float(linear_r2(x_fit, y_fit, x_test, y_test)) == _reference(
        x_fit, y_fit, x_test, y_test
    )


def test_constant_target_predicted_wrongly_scores_zero():
    y = np.full((10, 1), 2.5)
    assert float(r2_score(y, y + 0.1)[0]) == sk_r2_score(y, y + 0.1) == 0.0


def test_r2_score_per_column():
    _, _, _, y = _data(2, 2, 3)
    pred = y + np.random.default_rng(0).standard_normal(y.shape)
    expected = sk_r2_score(y, pred, multioutput="raw_values")
    np.testing.assert_allclose(r2_score(y, pred), expected, atol=1e-5)


def test_fit_linear_equals_sklearn_coefficients():
    x_fit, y_fit, _, _ = _data(3, 4, 2)
    w, b = fit_linear(x_fit, y_fit)
    ref = LinearRegression().fit(x_fit, y_fit)
    np.testing.assert_allclose(w, ref.coef_.T, atol=1e-4)
    np.testing.assert_allclose(b, ref.intercept_, atol=1e-4)


def test_linear_r2_vmaps_over_runs():
    runs = [_data(s, 3, 2) for s in range(3)]
    stacked = [np.stack(a) for a in zip(*runs, strict=True)]
    got = jax.jit(jax.vmap(linear_r2))(*stacked)
    np.testing.assert_allclose(got, [_reference(*run) for run in runs], atol=1e-4)


def test_standardise_equals_sklearn_standard_scaler():
    """Fit-set statistics applied to both sets, over a leading run axis; a zero column (an
    encoding padded to a wider size) stays zero, as StandardScaler leaves constant columns."""
    rng = np.random.default_rng(0)
    x_fit = rng.standard_normal((2, 50, 4)) * [3.0, 0.5, 1.0, 0.0] + [1.0, -2.0, 0.0, 0.0]
    x_test = rng.standard_normal((2, 30, 4)) * [3.0, 0.5, 1.0, 0.0]
    fit, test = standardise(x_fit, x_test)
    for r in range(2):
        scaler = StandardScaler().fit(x_fit[r])
        np.testing.assert_allclose(fit[r], scaler.transform(x_fit[r]), atol=1e-6)
        np.testing.assert_allclose(test[r], scaler.transform(x_test[r]), atol=1e-6)
    assert np.all(np.asarray(test)[..., 3] == 0.0)
