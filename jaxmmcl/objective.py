"""The contrastive objective on one batch: simulation -> views -> encoders -> loss.

Training minimises it (:mod:`jaxmmcl.training`) and the evaluation reports it on held-out
batches as the validation loss (:mod:`jaxmmcl.evaluation.protocol`).
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

from jaxmmcl.config import HyperArrays, StaticConfig
from jaxmmcl.encoders import encode
from jaxmmcl.losses import LOSSES
from jaxmmcl.simulation import Simulation, sample_views


def batch_loss(
    params: dict,
    key: jax.Array,
    simulation: Simulation,
    hyper: HyperArrays,
    static: StaticConfig,
    batch_size: int | None = None,
) -> jnp.ndarray:
    """The loss (``train.loss``) on one fresh batch: ``batch_size`` samples of every view
    (default ``train.batch_size``) and as many independent negatives, all drawn from ``key``."""
    n = static.train.batch_size if batch_size is None else batch_size
    xs, _ = sample_views(key, simulation, static.simulation, 2 * n)
    return views_loss(params, xs, hyper, static)


def views_loss(
    params: dict, xs: tuple[jnp.ndarray, ...], hyper: HyperArrays, static: StaticConfig
) -> jnp.ndarray:
    """The loss (``train.loss``) of given observations: every view's ``(2n, d_k)`` array, its
    first n rows the positive tuples, its last n an independent batch (the negatives).

    ``params`` holds the encoders and, for a loss with trained parameters, ``params["loss"]``.
    """
    n = xs[0].shape[0] // 2
    hs = encode(params, xs, static)
    positives, negatives = tuple(h[:n] for h in hs), tuple(h[n:] for h in hs)
    # The contract of a registered loss (jaxmmcl.losses.Loss); checked while tracing, free at
    # run time.
    chex.assert_rank([*positives, *negatives], 2)
    for pos, neg in zip(positives, negatives, strict=True):
        chex.assert_equal_shape([pos, neg])
    chex.assert_rank(hyper.temperature, 0)
    apply = LOSSES[static.train.loss].apply
    loss = apply(positives, negatives, hyper.temperature, static, params.get("loss"))
    chex.assert_rank(loss, 0)
    return loss
