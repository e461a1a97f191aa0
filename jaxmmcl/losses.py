"""The symmetrised InfoNCE loss with negative squared Euclidean distance as similarity.

Each direction needs, per row i, a log-sum-exp over a row of the ``batch x batch`` distance
matrix. Computed plainly, that matrix and its gradient are stored (151 MB each at the paper's
batch of 6144) and streamed through memory several times. On CPU devices, batches whose matrix
outgrows the cache go through :func:`row_logsumexp` instead: row blocks that stay in cache,
recomputed in the backward pass, with the gradient written out by hand.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

# Rows per block of :func:`row_logsumexp`: a 256 x 6144 float32 block is 6.3 MB, inside the
# last-level cache of the CPUs we run on (32 MB).
BLOCK_ROWS = 256
# Distance matrices up to this size (float32 bytes; batch 2896) take the plain formula: they fit
# the cache whole, and blocking them measured slightly slower (batch 1024).
PLAIN_MATRIX_BYTES = 32 * 2**20


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
      A scalar. On CPU devices, batches whose distance matrix outgrows the cache are computed
      by :func:`row_logsumexp` (the same value, up to rounding).
    """
    pos = jnp.sum((h1 - h2) ** 2, axis=-1)
    n_neg = h1_neg.shape[0]
    blocked = 4 * h1.shape[0] * n_neg > PLAIN_MATRIX_BYTES and h1.shape[0] > BLOCK_ROWS
    # Accelerators keep the plain formula: it is the one measured on them (benchmarks/RESULTS.md).
    if blocked and jax.default_backend() == "cpu":
        # -||a - b||^2 / tau = -||a / sqrt(tau) - b / sqrt(tau)||^2: scaling the inputs keeps
        # the temperature's gradient with autodiff, outside the hand-written backward pass.
        scale = jax.lax.rsqrt(temperature)
        log_sum_exp = row_logsumexp(h1 * scale, h1_neg * scale, pos / temperature)
    else:
        neg = pairwise_sq_dists(h1, h1_neg)
        # logsumexp over [neg_i1..neg_iN, pos_i] without materialising the (n, n + 1) array.
        log_sum_exp = jnp.logaddexp(
            jax.nn.logsumexp(-neg / temperature, axis=1), -pos / temperature
        )
    return jnp.mean(pos / temperature + log_sum_exp - jnp.log(n_neg + 1))


def _row_blocks(x: jnp.ndarray, block: int) -> jnp.ndarray:
    """``x`` ``(n, ...)`` zero-padded to a multiple of ``block`` rows, as ``(n / block, block,
    ...)``."""
    extra = -x.shape[0] % block
    x = jnp.pad(x, [(0, extra)] + [(0, 0)] * (x.ndim - 1))
    return x.reshape(x.shape[0] // block, block, *x.shape[1:])


@functools.partial(jax.custom_vjp, nondiff_argnums=(3,))
def row_logsumexp(
    a: jnp.ndarray, b: jnp.ndarray, p: jnp.ndarray, block: int = BLOCK_ROWS
) -> jnp.ndarray:
    """``log(sum_j exp(-||a_i - b_j||^2) + exp(-p_i))`` for every row i, block by block.

    Equal to the plain formula of :func:`info_nce` at temperature 1, but never holds more than
    ``block`` rows of the ``(n, m)`` distance matrix: the forward pass maps over row blocks,
    and the backward pass recomputes each block and accumulates the gradients
    ``d/da_i = -2 sum_j w_ij (a_i - b_j)`` and ``d/db_j = -2 sum_i w_ij (b_j - a_i)``, with
    ``w_ij = g_i exp(-||a_i - b_j||^2 - L_i)`` for the cotangent g and the result L.

    Args:
      a: ``(n, k)``; b: ``(m, k)``; p: ``(n,)``.
      block: rows per block (static).

    Returns:
      ``(n,)``.
    """
    return _row_logsumexp_fwd(a, b, p, block)[0]


def _row_logsumexp_fwd(a, b, p, block):
    def one_block(rows):
        a_rows, p_rows = rows
        return jnp.logaddexp(jax.nn.logsumexp(-pairwise_sq_dists(a_rows, b), axis=1), -p_rows)

    out = jax.lax.map(one_block, (_row_blocks(a, block), _row_blocks(p, block)))
    out = out.reshape(-1)[: a.shape[0]]
    return out, (a, b, p, out)


def _row_logsumexp_bwd(block, residuals, g):
    a, b, p, out = residuals

    def one_block(grad_b, rows):
        # Padded rows carry g = 0, so their weights, and what they add to grad_b, are zero.
        a_rows, p_rows, out_rows, g_rows = rows
        w = g_rows[:, None] * jnp.exp(-pairwise_sq_dists(a_rows, b) - out_rows[:, None])
        grad_a = -2.0 * (a_rows * jnp.sum(w, axis=1)[:, None] - w @ b)
        grad_b = grad_b - 2.0 * (b * jnp.sum(w, axis=0)[:, None] - w.T @ a_rows)
        grad_p = -g_rows * jnp.exp(-p_rows - out_rows)
        return grad_b, (grad_a, grad_p)

    rows = tuple(_row_blocks(x, block) for x in (a, p, out, g))
    grad_b, (grad_a, grad_p) = jax.lax.scan(one_block, jnp.zeros_like(b), rows)
    n = a.shape[0]
    return grad_a.reshape(-1, a.shape[1])[:n], grad_b, grad_p.reshape(-1)[:n]


row_logsumexp.defvjp(_row_logsumexp_fwd, _row_logsumexp_bwd)


def symmetric_info_nce(
    h1: jnp.ndarray,
    h2: jnp.ndarray,
    h1_neg: jnp.ndarray,
    h2_neg: jnp.ndarray,
    temperature: jnp.ndarray,
) -> jnp.ndarray:
    """``(L12 + L21) / 2``: L21 swaps the modalities and takes negatives from ``h2_neg``."""
    return 0.5 * (info_nce(h1, h2, h1_neg, temperature) + info_nce(h2, h1, h2_neg, temperature))
