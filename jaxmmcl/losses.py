"""Contrastive losses of K views: the registry :data:`LOSSES` (``train.loss``).

The paper's symmetrised InfoNCE uses the negative squared Euclidean distance as similarity.

Each direction needs, per row i, a log-sum-exp over a row of the ``batch x batch`` distance
matrix. Computed plainly, that matrix and its gradient are stored (151 MB each at the paper's
batch of 6144) and streamed through memory several times. On CPU devices, batches whose matrix
outgrows the cache go through :func:`row_logsumexp` instead: row blocks that stay in cache,
recomputed in the backward pass, with the gradient written out by hand.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jaxmmcl.structure import Structure

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
    hs: Sequence[jnp.ndarray], negs: Sequence[jnp.ndarray], temperature: jnp.ndarray
) -> jnp.ndarray:
    """The paper's symmetrised InfoNCE, over every pair of views.

    For views i != j, ``L_ij = info_nce(h_i, h_j, neg_i)``: view i's encodings, their positives
    in view j, negatives from an independent batch through view i's encoder. The loss is the
    mean of ``L_ij`` over the ordered pairs: with two views ``(L12 + L21) / 2``.

    Args:
      hs: one ``(n, k)`` encoding array per view (the positive pairs).
      negs: one ``(n, k)`` array per view: an independent batch, encoded.
      temperature: tau > 0 (a scalar).
    """
    pairs = [
        info_nce(hs[i], hs[j], negs[i], temperature) + info_nce(hs[j], hs[i], negs[j], temperature)
        for i, j in itertools.combinations(range(len(hs)), 2)
    ]
    return functools.reduce(jnp.add, pairs) * (0.5 / len(pairs))


def nt_xent(h1: jnp.ndarray, h2: jnp.ndarray, temperature: jnp.ndarray) -> jnp.ndarray:
    """Symmetrised NT-Xent (SimCLR) of two views: cosine similarities of all ``2n`` encodings.

    For each of the ``2n`` encodings (``h1`` rows, then ``h2`` rows, both ``(n, k)``) the
    positive is its pair in the other view and the negatives are the other ``2n - 2``
    encodings of both views; the loss is the mean over all ``2n`` anchors of the
    cross-entropy of the positive among them, similarities divided by ``temperature``.

    Returns:
      A scalar.
    """
    z = jnp.concatenate([h1, h2])
    z = z / jnp.maximum(jnp.linalg.norm(z, axis=-1, keepdims=True), 1e-8)
    sim = (z @ z.T) / temperature
    n2 = z.shape[0]
    sim = jnp.where(jnp.eye(n2, dtype=bool), -jnp.inf, sim)
    positive = (jnp.arange(n2) + n2 // 2) % n2
    return jnp.mean(jax.nn.logsumexp(sim, axis=1) - sim[jnp.arange(n2), positive])


def pairwise_nt_xent(
    hs: Sequence[jnp.ndarray], negs: Sequence[jnp.ndarray], temperature: jnp.ndarray
) -> jnp.ndarray:
    """:func:`nt_xent` averaged over every pair of views; negatives come from the batch itself
    (``negs`` is not used)."""
    del negs
    pairs = [
        nt_xent(hs[i], hs[j], temperature) for i, j in itertools.combinations(range(len(hs)), 2)
    ]
    return functools.reduce(jnp.add, pairs) * (1.0 / len(pairs))


def view_subsets(n_views: int) -> list[tuple[int, ...]]:
    """Every subset of at least two of ``n_views`` views, by size, then lexicographically:
    for three views ``(0, 1), (0, 2), (1, 2), (0, 1, 2)`` (multiview-crl's ``--subsets``)."""
    return [s for r in range(2, n_views + 1) for s in itertools.combinations(range(n_views), r)]


def subset_chunks(n_views: int, size: int) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """``(subset, dims)`` for every subset of :func:`view_subsets`: the encoding's ``size``
    dimensions split into as many consecutive, nearly equal chunks (``numpy.array_split``),
    one per subset, as multiview-crl's ``--selection concat`` assigns each subset's content."""
    subsets = view_subsets(n_views)
    if size < len(subsets):
        raise ValueError(f"encodings of {size} dimensions cannot hold {len(subsets)} subsets")
    chunks = np.array_split(np.arange(size), len(subsets))
    return [(s, tuple(int(d) for d in c)) for s, c in zip(subsets, chunks, strict=True)]


def subsets_nt_xent(hs: Sequence[jnp.ndarray], temperature: jnp.ndarray) -> jnp.ndarray:
    """Multiview-crl's multimodal loss: for every subset S of views (:func:`subset_chunks`),
    :func:`nt_xent` of every pair of its views on S's chunk of the encoding, summed over the
    pairs and the subsets. With two views it is :func:`nt_xent` of the whole encodings.

    Args:
      hs: one ``(n, k)`` encoding array per view (rows are positive tuples).
      temperature: tau > 0 (a scalar).
    """
    total = []
    for subset, dims in subset_chunks(len(hs), hs[0].shape[-1]):
        cut = [hs[v][:, list(dims)] for v in subset]
        total += [nt_xent(a, b, temperature) for a, b in itertools.combinations(cut, 2)]
    return functools.reduce(jnp.add, total)


def lp_info_nce(
    hs: Sequence[jnp.ndarray], negs: Sequence[jnp.ndarray], temperature: jnp.ndarray, p: float
) -> jnp.ndarray:
    """cl-ica's Lp-InfoNCE (``LpSimCLRLoss(p, pow=True)``), symmetrised over pairs of views as
    :func:`symmetric_info_nce`: the distance is ``||a - b||_p^p`` in place of the squared
    Euclidean one (with ``p = 2``, the paper's InfoNCE). It matches a conditional with density
    ``exp(-||z_tilde - z||_p^p / lambda)``: p = 1 the Laplace, p = 2 the normal.

    The negatives' distances are an ``(n, m, k)`` array: use it at moderate batches.
    """

    def one(a, b, neg):
        pos = jnp.sum(jnp.abs(a - b) ** p, axis=-1)
        dist = jnp.sum(jnp.abs(a[:, None, :] - neg[None, :, :]) ** p, axis=-1)
        log_sum_exp = jnp.logaddexp(
            jax.nn.logsumexp(-dist / temperature, axis=1), -pos / temperature
        )
        return jnp.mean(pos / temperature + log_sum_exp - jnp.log(neg.shape[0] + 1))

    pairs = [
        one(hs[i], hs[j], negs[i]) + one(hs[j], hs[i], negs[j])
        for i, j in itertools.combinations(range(len(hs)), 2)
    ]
    return functools.reduce(jnp.add, pairs) * (0.5 / len(pairs))


def anisotropic_info_nce(
    hs: Sequence[jnp.ndarray],
    negs: Sequence[jnp.ndarray],
    temperature: jnp.ndarray,
    precision: jnp.ndarray,
) -> jnp.ndarray:
    """AnInfoNCE (Rusak et al., AISTATS 2025): :func:`symmetric_info_nce` with the similarity
    ``-(a - b)^T diag(precision) (a - b) / (2 tau)`` in place of ``-||a - b||^2 / tau``.

    Scaling every encoding by ``sqrt(precision / 2)`` turns this distance into the plain
    squared one, so the loss is :func:`symmetric_info_nce` of the scaled encodings at
    temperature ``tau``; with ``precision = 2`` in every component it is the paper's InfoNCE.

    Args:
      hs, negs: as :func:`symmetric_info_nce`, every encoding of size k.
      temperature: tau > 0 (a scalar).
      precision: ``(k,)`` positive, the diagonal ``Lambda`` (learned: :data:`LOSSES`).
    """
    scale = jnp.sqrt(0.5 * precision)
    return symmetric_info_nce([h * scale for h in hs], [h * scale for h in negs], temperature)


def init_precision(key: jax.Array, size: int) -> dict:
    """AnInfoNCE's learned parameter, as the official code starts it: ``{"raw_precision":
    0.1 N(0, I)}`` of shape ``(size,)``; the precision is ``softplus(raw_precision)``."""
    return {"raw_precision": 0.1 * jax.random.normal(key, (size,))}


def _aninfonce(hs, negs, temperature, static, params):
    del static
    precision = jax.nn.softplus(params["raw_precision"])
    return anisotropic_info_nce(hs, negs, temperature, precision)


def subsets_info_nce(
    hs: Sequence[jnp.ndarray],
    negs: Sequence[jnp.ndarray],
    temperature: jnp.ndarray,
    structure: Structure,
) -> jnp.ndarray:
    """Multiview-crl's contrastive loss over subsets of views (Yao et al., ICLR 2024).

    For every subset S of at least two views that shares content
    (:meth:`jaxmmcl.structure.Structure.subsets`), each view's encoding is cut to the
    dimensions at the positions of S's content in that view's inputs (their "known content
    indices", so an encoding has its view's size). With those cuts ``z_k`` (positives) and
    ``z3_k`` (an independent batch), ``pos_a = sum_k ||z_k,a - z_k+1,a||^2`` over consecutive
    views of S and ``neg_ab = sum_k ||z_k,a - z3_k,b||^2``, the subset's loss is
    ``mean_a [pos_a / tau + logmeanexp_b(-[neg_a1 .. neg_an, pos_a] / tau)]``, their
    ``LpSimCLRLoss`` with p = 2; the loss is the sum over subsets.
    """
    total = []
    for subset in structure.subsets():
        z = [hs[v][:, list(structure.content_dims(subset, v))] for v in subset]
        z3 = [negs[v][:, list(structure.content_dims(subset, v))] for v in subset]
        neg = functools.reduce(
            jnp.add, [pairwise_sq_dists(a, b) for a, b in zip(z, z3, strict=True)]
        )
        pos = functools.reduce(
            jnp.add, [jnp.sum((a - b) ** 2, axis=-1) for a, b in itertools.pairwise(z)]
        )
        log_sum_exp = jnp.logaddexp(
            jax.nn.logsumexp(-neg / temperature, axis=1), -pos / temperature
        )
        total.append(jnp.mean(pos / temperature + log_sum_exp - jnp.log(neg.shape[1] + 1)))
    return functools.reduce(jnp.add, total)


class Loss(NamedTuple):
    """A contrastive loss of K views' encodings.

    Attributes:
      apply: ``(hs, negs, temperature, static, params) -> scalar``: ``hs`` one ``(n, k_v)``
        encoding array per view (rows are positive tuples), ``negs`` the same for an
        independent batch, ``temperature`` the traced ``train.temperature``, ``static`` the
        run's :class:`jaxmmcl.config.StaticConfig` (its structure, ``train.loss_p``),
        ``params`` the loss's own trained parameters (None without ``init``).
      init: ``(key, encoding_size) -> params``, for a loss with trained parameters (trained
        with the encoders, at ``train.loss_learning_rate``); None for none.
      needs_view_sized_encodings: the loss indexes encodings by positions of the view's
        inputs, so every encoding must have its view's dimension.
      needs_equal_encodings: every view's encoding must have one size.
      uses_exponent: it reads ``train.loss_p`` (the config refuses one set in vain).
      min_encoding_size: ``n_views -> size``: the smallest encoding it takes.
    """

    apply: Callable[..., jnp.ndarray]
    init: Callable[[jax.Array, int], dict] | None = None
    needs_view_sized_encodings: bool = False
    needs_equal_encodings: bool = False
    uses_exponent: bool = False
    min_encoding_size: Callable[[int], int] = lambda n_views: 1


LOSSES: dict[str, Loss] = {
    "infonce": Loss(
        lambda hs, negs, t, static, params: symmetric_info_nce(hs, negs, t),
        needs_equal_encodings=True,
    ),
    "lp_infonce": Loss(
        lambda hs, negs, t, static, params: lp_info_nce(hs, negs, t, static.train.loss_p),
        needs_equal_encodings=True,
        uses_exponent=True,
    ),
    "aninfonce": Loss(_aninfonce, init=init_precision, needs_equal_encodings=True),
    "ntxent": Loss(
        lambda hs, negs, t, static, params: pairwise_nt_xent(hs, negs, t),
        needs_equal_encodings=True,
    ),
    "subsets_ntxent": Loss(
        lambda hs, negs, t, static, params: subsets_nt_xent(hs, t),
        needs_equal_encodings=True,
        min_encoding_size=lambda n_views: len(view_subsets(n_views)),
    ),
    "subsets": Loss(
        lambda hs, negs, t, static, params: subsets_info_nce(hs, negs, t, static.structure),
        needs_view_sized_encodings=True,
    ),
}
"""``train.loss`` -> its :class:`Loss`: ``"infonce"`` (the paper's, negative squared Euclidean
distances, over pairs of views), ``"lp_infonce"`` (cl-ica's Lp-InfoNCE with the exponent
``train.loss_p``: :func:`lp_info_nce`), ``"aninfonce"`` (Rusak et al.'s: a learned diagonal
precision in the distance, :func:`anisotropic_info_nce`), ``"ntxent"`` (SimCLR's cosine
similarities, as the image/text experiment), ``"subsets_ntxent"`` (multiview-crl's multimodal
loss: NT-Xent of every pair of views of every subset on that subset's chunk of the encodings,
:func:`subsets_nt_xent`), ``"subsets"`` (multiview-crl's numerical loss, over subsets of views
on their content)."""
