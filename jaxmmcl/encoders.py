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
# Hidden widths are computed padded to a multiple of this many float32 elements (64 bytes).
# GPU matrix-product kernels want 16-byte aligned rows: at the paper's width 750 (rows of
# 3,000 bytes) XLA fell back to align-1 TF32 kernels at a quarter of the H200's TF32 peak, and
# padding to 752 made the paper-size step 1.8x faster there (benchmarks/RESULTS.md); on the
# CPU it measured no slower. Widths that are multiples already compute exactly as before.
PADDED_MULTIPLE = 16


def padded_width(width: int) -> int:
    """``width`` rounded up to a multiple of :data:`PADDED_MULTIPLE`."""
    return -(-width // PADDED_MULTIPLE) * PADDED_MULTIPLE


class PaddedDense(nn.Module):
    """``nn.Dense`` with the same parameters and initialisation, computed on zero-padded sizes.

    The parameters are ``kernel`` ``(in_features, features)`` and ``bias`` ``(features,)``, as
    ``nn.Dense`` makes them. The input may carry zero columns beyond ``in_features``; the kernel
    is padded with zero rows to match (so those columns, whatever they hold, add nothing) and,
    when ``pad_output``, with zero columns up to :func:`padded_width`. The padding is inside the
    computation: gradients reach the true parameters only, and the model is the unpadded one.
    """

    features: int
    in_features: int
    pad_output: bool

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (self.in_features, self.features)
        )
        bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
        extra_out = padded_width(self.features) - self.features if self.pad_output else 0
        extra_in = x.shape[-1] - self.in_features
        if extra_in or extra_out:
            kernel = jnp.pad(kernel, ((0, extra_in), (0, extra_out)))
            bias = jnp.pad(bias, (0, extra_out))
        return x @ kernel + bias


class MLPEncoder(nn.Module):
    """``d -> widths[0] -> ... -> widths[-1] -> encoding_size``, biases on.

    The parameter tree is that of ``nn.Dense`` layers (``Dense_0``, ``Dense_1``, ...); the
    hidden activations are computed padded with zero columns (:class:`PaddedDense`).
    """

    widths: Sequence[int]
    encoding_size: int

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_features = x.shape[-1]
        for i, width in enumerate(self.widths):
            layer = PaddedDense(width, in_features, pad_output=True, name=f"Dense_{i}")
            x = nn.leaky_relu(layer(x), NEGATIVE_SLOPE)
            in_features = width
        last = f"Dense_{len(self.widths)}"
        return PaddedDense(self.encoding_size, in_features, pad_output=False, name=last)(x)


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
