"""The contrastive losses against direct NumPy computations of their formulas (the spec's
symmetrised InfoNCE, multiview-crl's LpSimCLR loss over subsets, optax's NT-Xent), and the
contract every registered loss meets."""

from __future__ import annotations

import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from scipy.special import logsumexp

from jaxmmcl import losses
from jaxmmcl.config import (
    ConfigError,
    SimulationConfig,
    StaticConfig,
    TrainConfig,
    run_config_from_dict,
)
from jaxmmcl.losses import (
    BLOCK_ROWS,
    LOSSES,
    nt_xent,
    pairwise_sq_dists,
    row_logsumexp,
    subsets_info_nce,
)
from jaxmmcl.structure import structure_of


def symmetric_info_nce(h1, h2, h1n, h2n, tau):
    return losses.symmetric_info_nce((h1, h2), (h1n, h2n), tau)


def reference_loss(h1, h2, h1n, h2n, tau):
    def one(a, b, an):
        n = len(a)
        pos = ((a - b) ** 2).sum(-1)
        neg = ((a[:, None, :] - an[None, :, :]) ** 2).sum(-1)
        logits = -np.concatenate([neg, pos[:, None]], axis=1) / tau
        return np.mean(pos / tau + logsumexp(logits, axis=1) - np.log(n + 1))

    return 0.5 * (one(h1, h2, h1n) + one(h2, h1, h2n))


@pytest.mark.parametrize("tau", [1.0, 0.3])
@pytest.mark.parametrize("shape", [(7, 3), (64, 5)])
def test_loss_matches_numpy(shape, tau):
    rng = np.random.default_rng(0)
    h1, h2, h1n, h2n = (rng.normal(size=shape) for _ in range(4))
    got = symmetric_info_nce(*(x.astype(np.float32) for x in (h1, h2, h1n, h2n)), tau)
    np.testing.assert_allclose(got, reference_loss(h1, h2, h1n, h2n, tau), rtol=1e-5)


def test_pairwise_distances_match_broadcasting():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(9, 4)), rng.normal(size=(6, 4))
    expected = ((a[:, None] - b[None]) ** 2).sum(-1)
    np.testing.assert_allclose(pairwise_sq_dists(a, b), expected, rtol=1e-5, atol=1e-5)


# 600 rows: two full blocks of BLOCK_ROWS and a padded third.
BLOCKED_ROWS = 600


def test_blocked_loss_matches_numpy(monkeypatch):
    assert 2 * BLOCK_ROWS < BLOCKED_ROWS < 3 * BLOCK_ROWS
    monkeypatch.setattr(losses, "PLAIN_MATRIX_BYTES", 0)  # every batch is computed in blocks
    rng = np.random.default_rng(4)
    h1, h2, h1n, h2n = (rng.normal(size=(BLOCKED_ROWS, 5)) for _ in range(4))
    got = symmetric_info_nce(*(x.astype(np.float32) for x in (h1, h2, h1n, h2n)), 0.3)
    np.testing.assert_allclose(got, reference_loss(h1, h2, h1n, h2n, 0.3), rtol=1e-5)


def test_blocked_gradients_equal_autodiff_of_the_plain_formula(monkeypatch):
    """The hand-written backward pass of the blocked loss against autodiff through the plain
    formula, for every input and tau."""
    rng = np.random.default_rng(2)
    inputs = [rng.normal(size=(BLOCKED_ROWS, 5)).astype(np.float32) for _ in range(4)]
    grad = jax.grad(symmetric_info_nce, argnums=(0, 1, 2, 3, 4))
    monkeypatch.setattr(losses, "PLAIN_MATRIX_BYTES", 0)
    blocked = grad(*inputs, np.float32(0.4))
    monkeypatch.setattr(losses, "PLAIN_MATRIX_BYTES", 2**62)
    plain = grad(*inputs, np.float32(0.4))
    for got, want in zip(blocked, plain, strict=True):
        np.testing.assert_allclose(got, want, rtol=2e-4, atol=1e-6)


def test_row_logsumexp_matches_scipy_and_its_gradient_autodiff():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(40, 3))
    p, weights = rng.uniform(0, 4, size=50), rng.normal(size=50)
    neg = ((a[:, None] - b[None]) ** 2).sum(-1)
    expected = logsumexp(-np.concatenate([neg, p[:, None]], axis=1), axis=1)
    args = [x.astype(np.float32) for x in (a, b, p)]
    np.testing.assert_allclose(row_logsumexp(*args, 16), expected, rtol=1e-5)

    def plain(a, b, p):
        neg = pairwise_sq_dists(a, b)
        return jax.numpy.logaddexp(jax.nn.logsumexp(-neg, axis=1), -p) @ weights

    got = jax.grad(lambda *x: row_logsumexp(*x, 16) @ weights, argnums=(0, 1, 2))(*args)
    want = jax.grad(plain, argnums=(0, 1, 2))(*args)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-6)


def test_cpu_takes_the_blocked_path_only_for_matrices_beyond_the_cache():
    def loss_jaxpr(n):
        h = jax.ShapeDtypeStruct((n, 5), np.float32)
        return str(jax.make_jaxpr(symmetric_info_nce)(h, h, h, h, np.float32(1.0)))

    assert jax.default_backend() == "cpu"
    assert "custom_vjp" in loss_jaxpr(6144)  # the paper's batch: 151 MB per matrix
    assert "custom_vjp" not in loss_jaxpr(1024)  # 4 MB: the plain formula


def test_k_view_info_nce_is_the_mean_over_ordered_pairs_of_views():
    rng = np.random.default_rng(5)
    hs = [rng.normal(size=(9, 3)) for _ in range(3)]
    negs = [rng.normal(size=(9, 3)) for _ in range(3)]
    got = losses.symmetric_info_nce(
        tuple(np.float32(h) for h in hs), tuple(np.float32(h) for h in negs), 0.5
    )
    pairs = [
        reference_loss(hs[i], hs[j], negs[i], negs[j], 0.5)
        for i, j in itertools.combinations(range(3), 2)
    ]
    np.testing.assert_allclose(got, np.mean(pairs), rtol=1e-5)


def test_nt_xent_equals_optax():
    rng = np.random.default_rng(6)
    h1, h2 = (rng.normal(size=(12, 4)).astype(np.float32) for _ in range(2))
    labels = np.concatenate([np.arange(12), np.arange(12)])
    want = optax.losses.ntxent(np.concatenate([h1, h2]), labels, 0.5)
    np.testing.assert_allclose(nt_xent(h1, h2, 0.5), want, rtol=1e-5)


VIEWS = [[0, 1, 2, 3, 4], [0, 1, 2, 4, 5], [0, 1, 2, 3, 5], [0, 1, 3, 4, 5]]


def test_subsets_loss_is_multiview_crls_lpsimclr_summed_over_subsets():
    """Oracle: their UnifiedCLLoss(LpSimCLRLoss()) with ground-truth content indices, in NumPy
    (positives between consecutive views of a subset, negatives summed over its views)."""
    structure = structure_of(SimulationConfig(structure="subsets", views=VIEWS))
    rng = np.random.default_rng(7)
    hs = [rng.normal(size=(10, 5)) for _ in VIEWS]
    negs = [rng.normal(size=(10, 5)) for _ in VIEWS]
    expected = 0.0
    subsets = [s for r in range(2, 5) for s in itertools.combinations(range(4), r)]
    for subset in subsets:
        content = sorted(set.intersection(*(set(VIEWS[k]) for k in subset)))
        if not content:
            continue
        z = [hs[k][:, [VIEWS[k].index(c) for c in content]] for k in subset]
        z3 = [negs[k][:, [VIEWS[k].index(c) for c in content]] for k in subset]
        neg = sum(((a[:, None] - b[None]) ** 2).sum(-1) for a, b in zip(z, z3, strict=True))
        pos = sum(((a - b) ** 2).sum(-1) for a, b in itertools.pairwise(z))
        logits = -np.concatenate([neg, pos[:, None]], axis=1)
        expected += np.mean(pos + logsumexp(logits, axis=1) - np.log(logits.shape[1]))
    got = subsets_info_nce(
        tuple(np.float32(h) for h in hs), tuple(np.float32(h) for h in negs), 1.0, structure
    )
    assert len(structure.subsets()) == 11
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_finite_and_falls_as_positive_pairs_align(name):
    """The contract of a registered loss: finite, and its derivative with respect to the
    distance between positives is positive (pulling positive pairs together lowers it)."""
    static = StaticConfig(
        SimulationConfig(structure="subsets", views=VIEWS), train=TrainConfig(loss="subsets")
    )
    rng = np.random.default_rng(8)
    # The views' size (5) for a loss that needs it, else room for a chunk per subset of views.
    k = 5 if LOSSES[name].needs_view_sized_encodings else 12
    base = jnp.asarray(rng.normal(size=(16, k)), jnp.float32)
    noise = [jnp.asarray(rng.normal(size=(16, k)), jnp.float32) for _ in VIEWS]
    negs = tuple(jnp.asarray(rng.normal(size=(16, k)), jnp.float32) for _ in VIEWS)
    init = LOSSES[name].init
    params = None if init is None else init(jax.random.key(0), k)

    def loss(spread):
        hs = tuple(base + spread * n for n in noise)
        return LOSSES[name].apply(hs, negs, jnp.float32(1.0), static, params)

    value, slope = jax.value_and_grad(loss)(jnp.float32(0.5))
    assert np.isfinite(value) and slope > 0
    assert loss(jnp.float32(0.0)) < value


def _official_multimodal_loss(hs, subsets, tau):
    """Multiview-crl's ``infonce_loss`` (main_multimodal.py: cosine similarity, cross-entropy)
    in NumPy: per subset and content indices, per pair i < j of its views, the cross-entropy of
    ``[[S_ij, S_ii], [S_jj, S_ji]] / tau`` (self-similarities -inf) with targets ``arange(2d)``."""

    def cos(a, b):
        a = a / np.linalg.norm(a, axis=-1, keepdims=True)
        b = b / np.linalg.norm(b, axis=-1, keepdims=True)
        return a @ b.T

    total = 0.0
    for subset, dims in subsets:
        h = [hs[v][:, list(dims)] for v in subset]
        for i, j in itertools.combinations(range(len(h)), 2):
            sim = {(a, b): cos(h[a], h[b]) / tau for a in (i, j) for b in (i, j)}
            for a in (i, j):
                np.fill_diagonal(sim[a, a], -np.inf)
            scores = np.block([[sim[i, j], sim[i, i]], [sim[j, j], sim[j, i]]])
            d2 = scores.shape[0]
            total += np.mean(logsumexp(scores, axis=1) - scores[np.arange(d2), np.arange(d2)])
    return total


def test_subsets_ntxent_is_multiview_crls_multimodal_loss():
    rng = np.random.default_rng(3)
    hs = [rng.normal(size=(10, 9)).astype(np.float32) for _ in range(3)]
    subsets = [((0, 1), (0, 1, 2)), ((0, 2), (3, 4)), ((1, 2), (5, 6)), ((0, 1, 2), (7, 8))]
    assert losses.subset_chunks(3, 9) == subsets
    np.testing.assert_allclose(
        losses.subsets_nt_xent(hs, 0.5), _official_multimodal_loss(hs, subsets, 0.5), rtol=1e-5
    )
    # Two views: one subset, the whole encoding: NT-Xent.
    np.testing.assert_allclose(
        losses.subsets_nt_xent(hs[:2], 0.5), nt_xent(hs[0], hs[1], 0.5), rtol=1e-6
    )


class TestLossesWithAndWithoutJit(chex.TestCase):
    """The losses agree with their NumPy formulas traced under jit and run eagerly."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_info_nce_and_nt_xent(self):
        rng = np.random.default_rng(9)
        h1, h2, h1n, h2n = (rng.normal(size=(12, 4)).astype(np.float32) for _ in range(4))
        info = self.variant(symmetric_info_nce)(h1, h2, h1n, h2n, jnp.float32(0.5))
        np.testing.assert_allclose(info, reference_loss(h1, h2, h1n, h2n, 0.5), rtol=1e-5)
        ntx = self.variant(nt_xent)(h1, h2, jnp.float32(0.5))
        oracle = optax.losses.ntxent(
            jnp.concatenate([h1, h2]), jnp.concatenate([jnp.arange(12)] * 2), temperature=0.5
        )
        np.testing.assert_allclose(ntx, oracle, rtol=1e-5)


def test_subsets_ntxent_refuses_encodings_too_small_for_a_chunk_per_subset():
    values = {
        "simulation": {"structure": "subsets", "views": [[0, 1], [1, 2], [0, 2]]},
        "model": {"encoding_size": 3},
        "train": {"loss": "subsets_ntxent"},
    }
    with pytest.raises(ConfigError, match=r"encoding_size: .* at least 4 dimensions with train"):
        run_config_from_dict(values)
    run_config_from_dict(values | {"model": {"encoding_size": 4}})
