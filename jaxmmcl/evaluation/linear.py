"""Coefficient of determination and ordinary least squares, in JAX.

All functions are pure, jittable and vmappable over a leading run axis.
"""

from __future__ import annotations

import itertools

import jax.numpy as jnp
import numpy as np


def _column_mean(a: jnp.ndarray) -> jnp.ndarray:
    """Column means, exact for constant columns.

    XLA's mean is not exact even when every entry is equal (it may multiply by a rounded
    ``1 / n``), which would turn a constant target into noise: a nonzero SS_tot and predictions
    off by one ulp, where scikit-learn sees SS_tot == 0 and predicts the constant exactly.
    """
    constant = jnp.all(a == a[:1], axis=0)
    return jnp.where(constant, a[0], jnp.mean(a, axis=0))


def r2_score(y_true: jnp.ndarray, y_pred: jnp.ndarray) -> jnp.ndarray:
    """R^2 per output column, as scikit-learn's ``r2_score(..., multioutput="raw_values")``.

    Args:
      y_true: targets, shape ``(n, t)``.
      y_pred: predictions, shape ``(n, t)``.

    Returns:
      Shape ``(t,)``: ``1 - SS_res / SS_tot`` per column. A constant column scores 1.0 when
      predicted exactly and 0.0 otherwise (scikit-learn's convention).
    """
    ss_res = jnp.sum((y_true - y_pred) ** 2, axis=0)
    ss_tot = jnp.sum((y_true - _column_mean(y_true)) ** 2, axis=0)
    constant = ss_tot == 0
    safe_tot = jnp.where(constant, 1.0, ss_tot)
    return jnp.where(constant, jnp.where(ss_res == 0, 1.0, 0.0), 1.0 - ss_res / safe_tot)


def standardise(x_fit: jnp.ndarray, x_test: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Centres and scales both sets by the fit set's column statistics, as scikit-learn's
    ``StandardScaler`` fitted on ``x_fit``.

    Args:
      x_fit: ``(..., n_fit, k)``.
      x_test: ``(..., n_test, k)``.

    Returns:
      Both sets minus the fit set's column means, divided by its column standard deviations
      (ddof 0). A constant column is only centred, so a zero column stays zero.
    """
    mean = jnp.mean(x_fit, axis=-2, keepdims=True)
    std = jnp.std(x_fit, axis=-2, keepdims=True)
    # A product with the reciprocal, not a division: XLA rewrites a division by a broadcast
    # into one in some programs and not in others (it did for a one-device mesh), and the two
    # round differently; spelled out, every program computes the same.
    scale = 1.0 / jnp.where(std > 0, std, 1.0)
    return (x_fit - mean) * scale, (x_test - mean) * scale


def fit_linear(x: jnp.ndarray, y: jnp.ndarray) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Least squares with intercept: minimises ``||x @ w + b - y||^2``.

    Args:
      x: inputs, shape ``(n, k)``.
      y: targets, shape ``(n, t)``.

    Returns:
      ``(w, b)`` with shapes ``(k, t)`` and ``(t,)``; the minimum-norm solution when ``x`` is
      rank deficient (as scikit-learn's LinearRegression).
    """
    x_mean, y_mean = _column_mean(x), _column_mean(y)
    w, *_ = jnp.linalg.lstsq(x - x_mean, y - y_mean)
    return w, y_mean - x_mean @ w


def linear_r2(
    x_fit: jnp.ndarray, y_fit: jnp.ndarray, x_test: jnp.ndarray, y_test: jnp.ndarray
) -> jnp.ndarray:
    """R^2 on the test set of least squares with intercept fitted on the fit set.

    Equal to scikit-learn's ``r2_score(y_test, LinearRegression().fit(x_fit, y_fit)
    .predict(x_test))`` (uniform average over the target columns).

    Args:
      x_fit, y_fit: shapes ``(n_fit, k)`` and ``(n_fit, t)`` (or ``(n_fit,)``).
      x_test, y_test: shapes ``(n_test, k)`` and ``(n_test, t)`` (or ``(n_test,)``).

    Returns:
      A scalar.
    """
    y_fit, y_test = jnp.atleast_1d(y_fit), jnp.atleast_1d(y_test)
    if y_fit.ndim == 1:
        y_fit, y_test = y_fit[:, None], y_test[:, None]
    w, b = fit_linear(x_fit, y_fit)
    return jnp.mean(r2_score(y_test, x_test @ w + b))


def block_means(per_column: jnp.ndarray, sizes: tuple[int, ...]) -> jnp.ndarray:
    """Averages ``(..., t)`` per-column scores over consecutive blocks: ``(..., len(sizes))``.

    Slices rather than an averaging matrix, so a NaN column cannot leak into other blocks.
    """
    bounds = np.cumsum((0, *sizes))
    return jnp.stack(
        [jnp.mean(per_column[..., lo:hi], axis=-1) for lo, hi in itertools.pairwise(bounds)],
        axis=-1,
    )
