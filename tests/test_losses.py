"""The symmetrised InfoNCE loss against a direct NumPy computation of the spec's formula."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from scipy.special import logsumexp

from jaxmmcl import losses
from jaxmmcl.losses import BLOCK_ROWS, pairwise_sq_dists, row_logsumexp, symmetric_info_nce


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
