"""The evaluation protocol: block bookkeeping and scores against scikit-learn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from jaxmmcl.evaluation.linear import block_means
from jaxmmcl.evaluation.protocol import EvalSamples, linear_scores, mlp_scores


def synthetic_samples(n=400, seed=0):
    """Targets (c: 2, s: 2, m1: 1); h1 sees c linearly, h2 sees c nonlinearly."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(2 * n, 5)).astype(np.float32)
    c = y[:, :2]
    h1 = np.concatenate([c @ np.array([[1.0, 0.5], [-0.3, 2.0]]), rng.normal(size=(2 * n, 1))], 1)
    h2 = np.concatenate([np.tanh(c) + c**3 / 5, rng.normal(size=(2 * n, 1))], 1)
    h = np.stack([h1, h2]).astype(np.float32)
    return EvalSamples(jnp.asarray(h[:, :n]), jnp.asarray(h[:, n:]), y[:n], y[n:]), (2, 2, 1)


def test_block_means():
    per_column = jnp.asarray([[1.0, 3.0, 5.0, 7.0, 9.0]])
    np.testing.assert_allclose(block_means(per_column, (2, 2, 1)), [[2.0, 6.0, 9.0]])


def test_linear_scores_match_sklearn_per_block():
    samples, sizes = synthetic_samples()
    got = np.asarray(linear_scores(samples, sizes))
    bounds = np.cumsum((0, *sizes))
    for e in range(2):
        model = LinearRegression().fit(samples.h_fit[e], samples.y_fit)
        pred = model.predict(samples.h_test[e])
        for b in range(3):
            cols = slice(bounds[b], bounds[b + 1])
            np.testing.assert_allclose(
                got[e, b], r2_score(samples.y_test[:, cols], pred[:, cols]), atol=1e-4
            )
    assert got[0, 0] > 0.99 and abs(got[0, 1]) < 0.05


def test_mlp_regressor_finds_the_nonlinear_content():
    samples, sizes = synthetic_samples()
    got = np.asarray(mlp_scores(jax.random.key(0), samples, sizes, steps=500))
    linear = np.asarray(linear_scores(samples, sizes))
    assert got[1, 0] > 0.95 and got[1, 0] > linear[1, 0] + 0.02
    # Independent blocks: nothing to find (a small negative R^2 is overfitting on 400 samples).
    assert -0.3 < got[0, 1] < 0.1 and -0.3 < got[1, 2] < 0.1


def test_kernel_ridge_scores_match_sklearn_grid_search_per_block():
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV

    from jaxmmcl.evaluation.kernel_ridge import ALPHAS, GAMMAS
    from jaxmmcl.evaluation.protocol import kernel_ridge_scores

    samples, sizes = synthetic_samples(n=120)
    stacked = jax.tree.map(lambda x: jnp.stack([x, x[..., ::-1, :]]), samples)
    got = kernel_ridge_scores(stacked, sizes)
    assert got.shape == (2, 2, 3)
    bounds = np.cumsum((0, *sizes))
    for b in range(3):
        cols = slice(bounds[b], bounds[b + 1])
        search = GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": ALPHAS, "gamma": GAMMAS}, cv=3)
        search.fit(np.asarray(samples.h_fit[1], np.float64), samples.y_fit[:, cols])
        expected = r2_score(samples.y_test[:, cols], search.predict(samples.h_test[1]))
        np.testing.assert_allclose(got[0, 1, b], expected, atol=1e-4)
    assert got[0, 1, 0] > 0.95
