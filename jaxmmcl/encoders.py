"""The trained encoders g1, g2: MLPs with LeakyReLU(0.01) between layers.

Encoder parameters are a dict ``{"g1": ...}`` for a shared encoder (g2 = g1) or
``{"g1": ..., "g2": ...}`` for one encoder per modality.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from jaxmmcl.config import StaticConfig

NEGATIVE_SLOPE = 0.01


class MLPEncoder(nn.Module):
    """``d -> widths[0] -> ... -> widths[-1] -> encoding_size``, biases on."""

    widths: Sequence[int]
    encoding_size: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        for width in self.widths:
            x = nn.leaky_relu(nn.Dense(width)(x), NEGATIVE_SLOPE)
        return nn.Dense(self.encoding_size)(x)


def encoder_module(static: StaticConfig) -> MLPEncoder:
    """The encoder architecture of a static config."""
    return MLPEncoder(widths=static.widths, encoding_size=static.encoding_size)


def init_encoders(key: jax.Array, static: StaticConfig) -> dict:
    """Initial parameters of g1 (and g2 unless the encoder is shared)."""
    module = encoder_module(static)
    dummy = jnp.zeros((1, static.simulation.dim))
    k1, k2 = jax.random.split(key)
    params = {"g1": module.init(k1, dummy)}
    if not static.model.shared_encoder:
        params["g2"] = module.init(k2, dummy)
    return params


def encode(
    params: dict, static: StaticConfig, x1: jnp.ndarray, x2: jnp.ndarray
) -> tuple[jnp.ndarray, jnp.ndarray]:
    """Applies g1 to ``x1`` and g2 to ``x2`` (both ``(n, d)``); returns two ``(n, k)`` arrays.

    With a shared encoder both inputs go through one matrix product of twice the rows, which
    keeps the matmuls large.
    """
    module = encoder_module(static)
    if static.model.shared_encoder:
        h = module.apply(params["g1"], jnp.concatenate([x1, x2]))
        return h[: x1.shape[0]], h[x1.shape[0] :]
    return module.apply(params["g1"], x1), module.apply(params["g2"], x2)
