"""Cross-validated kernel ridge against scikit-learn's GridSearchCV(KernelRidge).

All data sets share n_fit = 91 (folds of 31, 30, 30: uneven, as KFold) and n_test = 60 so that
few programs are compiled.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score
from sklearn.model_selection import GridSearchCV

from jaxmmcl.evaluation.kernel_ridge import (
    ALPHAS,
    GAMMAS,
    kernel_ridge_r2,
    kernel_ridge_r2_grid,
    kernel_ridge_select,
)

N_FIT, N_TEST = 91, 60


def _data(kind: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    k = 1 if kind == "one_dim" else 3
    x = rng.standard_normal((N_FIT + N_TEST, k))
    if kind in ("nonlinear", "one_dim"):
        y = np.stack([np.sin(2 * x[:, 0]), x[:, 0] ** 2 - np.cos(x[:, -1])], 1)
        y += 0.1 * rng.standard_normal(y.shape)
    elif kind == "constant":
        # An exactly representable mean, so that scikit-learn's R^2 is exactly 0, not noise.
        y = np.full((N_FIT + N_TEST, 2), 2.5)
    else:  # independent of x
        y = rng.standard_normal((N_FIT + N_TEST, 2))
    return x[:N_FIT], y[:N_FIT], x[N_FIT:], y[N_FIT:]


def _sklearn(x_fit, y_fit, x_test, y_test):
    grid = {"alpha": ALPHAS, "gamma": GAMMAS}
    search = GridSearchCV(KernelRidge(kernel="rbf"), grid, cv=3).fit(x_fit, y_fit)
    return r2_score(y_test, search.predict(x_test)), search


def test_grid_order_is_alpha_outer_gamma_inner():
    from sklearn.model_selection import ParameterGrid

    params = list(ParameterGrid({"gamma": GAMMAS, "alpha": ALPHAS}))
    assert [(p["alpha"], p["gamma"]) for p in params] == [(a, g) for a in ALPHAS for g in GAMMAS]


@pytest.mark.parametrize("kind", ["nonlinear", "one_dim", "constant", "independent"])
def test_single_block_equals_sklearn(kind):
    x_fit, y_fit, x_test, y_test = _data(kind)
    ref, search = _sklearn(x_fit, y_fit, x_test, y_test)
    r2, alpha, gamma = kernel_ridge_select(x_fit, y_fit, x_test, y_test)
    assert (alpha, gamma) == (search.best_params_["alpha"], search.best_params_["gamma"])
    assert r2 == pytest.approx(ref, abs=1e-4)
    assert kernel_ridge_r2(x_fit, y_fit, x_test, y_test) == r2
    cv = kernel_ridge_r2_grid(x_fit[None], y_fit[None], x_test[None], y_test[None], (2,)).cv_score
    np.testing.assert_allclose(cv[0, 0], search.cv_results_["mean_test_score"], atol=1e-8)
    if kind == "nonlinear":
        linear = r2_score(y_test, LinearRegression().fit(x_fit, y_fit).predict(x_test))
        assert r2 > linear + 0.3


def test_float32_input_and_x64_left_off():
    x_fit, y_fit, x_test, y_test = _data("nonlinear")
    ref, _ = _sklearn(x_fit, y_fit, x_test, y_test)
    as32 = (jnp.asarray(a, jnp.float32) for a in (x_fit, y_fit, x_test, y_test))
    assert kernel_ridge_r2(*as32) == pytest.approx(ref, abs=1e-4)
    assert not jax.config.jax_enable_x64
    assert jnp.zeros(1).dtype == jnp.float32


def _runs(seed=1):
    """Three runs of 1-d encodings, targets in blocks of sizes (2, 2, 2); run 1 diverged."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((3, N_FIT + N_TEST, 1))
    noise = rng.standard_normal((3, N_FIT + N_TEST, 6))
    y = np.concatenate(
        [np.sin(2 * x), x**2, np.cos(3 * x), np.zeros_like(x), np.zeros((3, N_FIT + N_TEST, 2))], -1
    )
    y += np.array([0.1, 0.1, 0.3, 1, 1, 1]) * noise
    x[1, 5, 0] = np.nan  # a diverged training run
    return x[:, :N_FIT], y[:, :N_FIT], x[:, N_FIT:], y[:, N_FIT:]


SIZES = (2, 2, 2)


@pytest.fixture(scope="module")
def grid_result():
    return kernel_ridge_r2_grid(*_runs(), SIZES)


def test_grid_equals_single_block_per_run(grid_result):
    x_fit, y_fit, x_test, y_test = _runs()
    assert grid_result.r2.shape == grid_result.alpha.shape == (3, len(SIZES))
    assert grid_result.cv_score.shape == (3, len(SIZES), len(ALPHAS) * len(GAMMAS))
    for r in (0, 2):
        for b in range(len(SIZES)):
            cols = slice(2 * b, 2 * b + 2)
            r2, alpha, gamma = kernel_ridge_select(
                x_fit[r], y_fit[r, :, cols], x_test[r], y_test[r, :, cols]
            )
            assert grid_result.r2[r, b] == pytest.approx(r2, abs=1e-10)
            assert (grid_result.alpha[r, b], grid_result.gamma[r, b]) == (alpha, gamma)


def test_grid_equals_sklearn_on_one_run(grid_result):
    x_fit, y_fit, x_test, y_test = _runs()
    for b in range(len(SIZES)):
        cols = slice(2 * b, 2 * b + 2)
        ref, search = _sklearn(x_fit[2], y_fit[2, :, cols], x_test[2], y_test[2, :, cols])
        assert grid_result.r2[2, b] == pytest.approx(ref, abs=1e-4)
        assert grid_result.alpha[2, b] == search.best_params_["alpha"]
        assert grid_result.gamma[2, b] == search.best_params_["gamma"]


def test_nan_run_is_isolated(grid_result):
    assert np.all(np.isnan(grid_result.r2[1]))
    assert np.all(np.isnan(grid_result.alpha[1])) and np.all(np.isnan(grid_result.gamma[1]))
    assert np.all(np.isfinite(grid_result.r2[[0, 2]]))


def test_vmapped_runs_equal_sequential(grid_result):
    # Under vmap the NaN run shares batched Choleskys with the others: it must not leak.
    result = kernel_ridge_r2_grid(*_runs(), SIZES, run_batch=3)
    np.testing.assert_allclose(result.r2, grid_result.r2, atol=1e-10)
    np.testing.assert_array_equal(result.alpha, grid_result.alpha)
    np.testing.assert_array_equal(result.gamma, grid_result.gamma)


def _bad(**changes):
    x_fit, y_fit, x_test, y_test = _runs()
    args = {"x_fit": x_fit, "y_fit": y_fit, "x_test": x_test, "y_test": y_test}
    args |= {k: v for k, v in changes.items() if k in args}
    options = {k: v for k, v in changes.items() if k not in args}
    options.setdefault("block_sizes", SIZES)
    return args, options


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"y_fit": np.zeros((3, N_FIT - 1, 6))}, f"x_fit has {N_FIT} samples but y_fit has 90"),
        ({"y_test": np.zeros((3, 7, 6))}, "x_test has 60 samples but y_test has 7"),
        ({"x_test": np.zeros((3, N_TEST, 4))}, "x_fit has 1 features but x_test has 4"),
        ({"x_fit": np.zeros((2, N_FIT, 1))}, "number of runs differs: x_fit 2"),
        ({"x_fit": np.zeros((3, 0, 1)), "y_fit": np.zeros((3, 0, 6))}, "empty array"),
        ({"x_fit": np.zeros((3, 5, 1)), "y_fit": np.zeros((3, 5, 6))}, "n_fit=5"),
        ({"block_sizes": (2, 2)}, "sum to 4 but the targets have 6"),
        ({"block_sizes": (6, 0)}, "block_sizes"),
        ({"alphas": (1.0, 0.0)}, "alphas"),
        ({"gammas": ()}, "gammas"),
        ({"n_folds": 1}, "n_folds"),
        ({"x_fit": np.zeros((N_FIT, 1))}, "x_fit: expected a 3-d array"),
    ],
)
def test_bad_input_raises(changes, message):
    args, options = _bad(**changes)
    with pytest.raises(ValueError, match=message):
        kernel_ridge_r2_grid(**args, **options)


def test_single_block_bad_input():
    x_fit, y_fit, x_test, y_test = _data("nonlinear")
    with pytest.raises(ValueError, match="x_fit has 91 samples but y_fit has 90"):
        kernel_ridge_r2(x_fit, y_fit[:-1], x_test, y_test)
    with pytest.raises(ValueError, match="n_fit=2"):
        kernel_ridge_r2(x_fit[:2], y_fit[:2], x_test, y_test)
