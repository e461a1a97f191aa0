"""The symmetrised InfoNCE loss against a direct NumPy computation of the spec's formula."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp

from jaxmmcl.losses import pairwise_sq_dists, symmetric_info_nce


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
