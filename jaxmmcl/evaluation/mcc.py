"""Mean correlation coefficient (MCC) between true and recovered latent components.

The usual identifiability score: correlate every true component with every predicted one,
match components one to one so that the summed absolute correlation is largest, and average the
matched absolute correlations. It is invariant to permutations and sign flips (and, for
``"spearman"``, to any strictly monotone map of each component).

The correlation matrix is computed in JAX (jittable: :func:`correlation_matrix`); the matching
uses ``scipy.optimize.linear_sum_assignment`` on the host, since the matrices are tiny (tens of
components) and an exact assignment in JAX would be far more code for no measurable gain.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.stats import rankdata
from scipy.optimize import linear_sum_assignment

METHODS = ("pearson", "spearman")


@functools.partial(jax.jit, static_argnames=("method",))
def correlation_matrix(
    z_true: jnp.ndarray, z_pred: jnp.ndarray, method: str = "pearson"
) -> jnp.ndarray:
    """Correlations between the columns of two sample matrices.

    Args:
      z_true: shape ``(n, d_true)``.
      z_pred: shape ``(n, d_pred)``.
      method: ``"pearson"``, or ``"spearman"`` (Pearson on ranks, ties sharing their average
        rank, as ``scipy.stats.spearmanr``).

    Returns:
      Shape ``(d_true, d_pred)``. Entries of a constant column are 0 (no association), unlike
      NumPy and SciPy, which return NaN.
    """
    if method == "spearman":
        z_true = jax.vmap(rankdata, in_axes=1, out_axes=1)(z_true)
        z_pred = jax.vmap(rankdata, in_axes=1, out_axes=1)(z_pred)

    def standardise(z):
        z = z - jnp.mean(z, axis=0)
        norm = jnp.sqrt(jnp.sum(z * z, axis=0))
        return z / jnp.where(norm == 0, 1.0, norm)

    return standardise(z_true).T @ standardise(z_pred)


def mcc(z_true, z_pred, *, method: str = "pearson") -> float:
    """Mean absolute correlation of optimally matched components.

    With ``d_true != d_pred`` the ``min(d_true, d_pred)`` best-matched pairs are averaged.

    Args:
      z_true: true latents, shape ``(n, d_true)``.
      z_pred: recovered latents, shape ``(n, d_pred)``.
      method: ``"pearson"`` or ``"spearman"``.

    Returns:
      A float in ``[0, 1]``; NaN when either input contains a non-finite value (e.g. the
      encodings of a diverged run).

    Raises:
      ValueError: unknown method, arrays that are not 2-d, empty, or differ in sample count.
    """
    if method not in METHODS:
        raise ValueError(f"method: expected one of {METHODS}, got {method!r}")
    shapes = {"z_true": np.shape(z_true), "z_pred": np.shape(z_pred)}
    for name, shape in shapes.items():
        if len(shape) != 2 or 0 in shape:
            raise ValueError(f"{name}: expected a non-empty (n, d) array, got shape {shape}")
    if shapes["z_true"][0] != shapes["z_pred"][0]:
        raise ValueError(
            f"z_true has {shapes['z_true'][0]} samples but z_pred has {shapes['z_pred'][0]}"
        )
    corr = np.abs(np.asarray(correlation_matrix(jnp.asarray(z_true), jnp.asarray(z_pred), method)))
    if not np.all(np.isfinite(corr)):
        return float("nan")
    rows, cols = linear_sum_assignment(-corr)
    return float(np.mean(corr[rows, cols]))
