"""The contrastive objective on one fresh batch: simulation -> views -> encoders -> loss.

Training minimises it (:mod:`jaxmmcl.training`) and the evaluation reports it on held-out
batches as the validation loss (:mod:`jaxmmcl.evaluation.protocol`).
"""

from __future__ import annotations

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
    hs = encode(params, xs, static)
    loss = LOSSES[static.train.loss]
    return loss.apply(
        tuple(h[:n] for h in hs), tuple(h[n:] for h in hs), hyper.temperature, static.structure
    )
