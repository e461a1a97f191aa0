"""The symmetrised InfoNCE loss with negative squared Euclidean distance as similarity."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def pairwise_sq_dists(a: jnp.ndarray, b: jnp.ndarray) -> jnp.ndarray:
    """``||a_i - b_j||^2`` for ``a`` ``(n, k)`` and ``b`` ``(m, k)``; returns ``(n, m)``.

    Uses ``|a|^2 + |b|^2 - 2 a b^T`` so the cost is one matrix product, never an
    ``(n, m, k)`` tensor.
    """
    sq_a = jnp.sum(a * a, axis=-1)
    sq_b = jnp.sum(b * b, axis=-1)
    return sq_a[:, None] + sq_b[None, :] - 2.0 * (a @ b.T)


def info_nce(
    h1: jnp.ndarray, h2: jnp.ndarray, h1_neg: jnp.ndarray, temperature: jnp.ndarray
) -> jnp.ndarray:
    """One direction of the loss, L12.

    ``mean_i [ pos_i / tau + logmeanexp_j(-[neg_i1, ..., neg_iN, pos_i] / tau) ]`` with
    ``pos_i = ||h1_i - h2_i||^2`` and ``neg_ij = ||h1_i - h1_neg_j||^2``.

    Args:
      h1, h2: positive pairs, ``(n, k)`` each.
      h1_neg: encodings of an independent batch by the same encoder as ``h1``, ``(n, k)``.
      temperature: tau > 0 (a scalar).

    Returns:
      A scalar.
    """
    pos = jnp.sum((h1 - h2) ** 2, axis=-1)
    neg = pairwise_sq_dists(h1, h1_neg)
    # logsumexp over [neg_i1..neg_iN, pos_i] without materialising the (n, n + 1) concatenation.
    log_sum_exp = jnp.logaddexp(jax.nn.logsumexp(-neg / temperature, axis=1), -pos / temperature)
    log_mean_exp = log_sum_exp - jnp.log(neg.shape[1] + 1)
    return jnp.mean(pos / temperature + log_mean_exp)


def symmetric_info_nce(
    h1: jnp.ndarray,
    h2: jnp.ndarray,
    h1_neg: jnp.ndarray,
    h2_neg: jnp.ndarray,
    temperature: jnp.ndarray,
) -> jnp.ndarray:
    """``(L12 + L21) / 2``: L21 swaps the modalities and takes negatives from ``h2_neg``."""
    return 0.5 * (info_nce(h1, h2, h1_neg, temperature) + info_nce(h2, h1, h2_neg, temperature))
