"""The trained encoders g1, ..., gK: MLPs with LeakyReLU(0.01) between layers, one per view.

Encoder parameters are a dict ``{"g1": ...}`` for a shared encoder (every view's encoder is g1)
or ``{"g1": ..., "gK": ...}`` for one encoder per view (a loss with trained parameters adds
``"loss"``, which the encoders ignore).

Output normalisation (``model.normalize``, :data:`NORMALIZATIONS`, cl-ica's
``output_normalization``): ``"none"`` (the paper's); ``"sphere"``, every encoding divided by
its L2 norm; ``"box"``, ``sigmoid`` of every component (into ``(0, 1)``); and their learnable
versions, ``"learnable_sphere"`` (a trained radius, cl-ica's ``RescaleLayer``) and
``"learnable_box"`` (a trained bound per component, cl-ica's ``SoftclipLayer``), both starting
at 1 and trained with the encoder as its parameter ``output_scale``.

Initialisation (``model.init``): ``"torch"`` (the default) is PyTorch's default for
``nn.Linear``, which the official encoders use: weights and biases uniform in
``[-1/sqrt(fan_in), 1/sqrt(fan_in)]`` (weight variance ``1 / (3 fan_in)``). ``"lecun"`` is
Flax's default for ``nn.Dense``: LeCun-normal weights (variance ``1 / fan_in``, three times the
reference's) and zero biases.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

if TYPE_CHECKING:
    from jaxmmcl.config import StaticConfig

NEGATIVE_SLOPE = 0.01
# Hidden widths are computed padded to a multiple of this many float32 elements (64 bytes).
# GPU matrix-product kernels want 16-byte aligned rows: at the paper's width 750 (rows of
# 3,000 bytes) XLA fell back to align-1 TF32 kernels at a quarter of the H200's TF32 peak, and
# padding to 752 made the paper-size step 1.8x faster there (benchmarks/RESULTS.md); on the
# CPU it measured no slower. Widths that are multiples already compute exactly as before.
PADDED_MULTIPLE = 16


INITS = ("torch", "lecun")


class Normalization(NamedTuple):
    """How an encoder's output is put into its space.

    Attributes:
      apply: ``(h, scale) -> h``: ``h`` ``(n, k)``; ``scale`` the trained ``output_scale``
        (``(1,)`` or ``(k,)``), or None for a fixed normalisation.
      scale_size: ``k -> size`` of the trained ``output_scale`` (started at ones); None for a
        fixed normalisation.
    """

    apply: Callable[[jnp.ndarray, jnp.ndarray | None], jnp.ndarray]
    scale_size: Callable[[int], int] | None = None


def _to_sphere(h, scale):
    h = h / jnp.linalg.norm(h, axis=-1, keepdims=True)
    return h if scale is None else h * scale


def _to_box(h, scale):
    h = jax.nn.sigmoid(h)
    return h if scale is None else h * scale


NORMALIZATIONS: dict[str, Normalization] = {
    "none": Normalization(lambda h, scale: h),
    "sphere": Normalization(_to_sphere),
    "learnable_sphere": Normalization(_to_sphere, lambda k: 1),
    "box": Normalization(_to_box),
    "learnable_box": Normalization(_to_box, lambda k: k),
}
"""``model.normalize`` -> its :class:`Normalization` (module docstring)."""


def padded_width(width: int) -> int:
    """``width`` rounded up to a multiple of :data:`PADDED_MULTIPLE`."""
    return -(-width // PADDED_MULTIPLE) * PADDED_MULTIPLE


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """PyTorch's default ``nn.Linear`` initialiser for weights and biases of a layer with
    ``fan_in`` inputs: uniform in ``[-1/sqrt(fan_in), 1/sqrt(fan_in)]``."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def initializers(init: str, fan_in: int) -> tuple[nn.initializers.Initializer, ...]:
    """``(kernel_init, bias_init)`` of a dense layer with ``fan_in`` inputs (module docstring)."""
    if init == "torch":
        return torch_uniform(fan_in), torch_uniform(fan_in)
    if init == "lecun":
        return nn.initializers.lecun_normal(), nn.initializers.zeros_init()
    raise ValueError(f"model.init: expected one of {', '.join(INITS)}, got {init!r}")


class PaddedDense(nn.Module):
    """A dense layer ``x @ kernel + bias`` computed on zero-padded sizes.

    The parameters are ``kernel`` ``(in_features, features)`` and ``bias`` ``(features,)``, as
    ``nn.Dense`` makes them, initialised by ``init_scheme`` (:func:`initializers`). The input may
    carry zero columns beyond ``in_features``; the kernel is padded with zero rows to match (so
    those columns, whatever they hold, add nothing) and, when ``pad_output``, with zero columns
    up to :func:`padded_width`. The padding is inside the
    computation: gradients reach the true parameters only, and the model is the unpadded one.
    """

    features: int
    in_features: int
    pad_output: bool
    init_scheme: str = "torch"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        kernel_init, bias_init = initializers(self.init_scheme, self.in_features)
        kernel = self.param("kernel", kernel_init, (self.in_features, self.features))
        bias = self.param("bias", bias_init, (self.features,))
        extra_out = padded_width(self.features) - self.features if self.pad_output else 0
        extra_in = x.shape[-1] - self.in_features
        if extra_in or extra_out:
            kernel = jnp.pad(kernel, ((0, extra_in), (0, extra_out)))
            bias = jnp.pad(bias, (0, extra_out))
        return x @ kernel + bias


class MLPEncoder(nn.Module):
    """``d -> widths[0] -> ... -> widths[-1] -> encoding_size``, biases on, then the output
    normalisation ``normalize`` (:data:`NORMALIZATIONS`).

    The parameter tree is that of ``nn.Dense`` layers (``Dense_0``, ``Dense_1``, ...), and
    ``output_scale`` for a learnable normalisation; the hidden activations are computed padded
    with zero columns (:class:`PaddedDense`).
    """

    widths: Sequence[int]
    encoding_size: int
    init_scheme: str = "torch"
    normalize: str = "none"

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        in_features = x.shape[-1]
        for i, width in enumerate(self.widths):
            layer = PaddedDense(width, in_features, True, self.init_scheme, name=f"Dense_{i}")
            x = nn.leaky_relu(layer(x), NEGATIVE_SLOPE)
            in_features = width
        last = PaddedDense(
            self.encoding_size,
            in_features,
            False,
            self.init_scheme,
            name=f"Dense_{len(self.widths)}",
        )
        normalization = NORMALIZATIONS[self.normalize]
        scale = None
        if normalization.scale_size is not None:
            size = normalization.scale_size(self.encoding_size)
            scale = self.param("output_scale", nn.initializers.ones_init(), (size,))
        return normalization.apply(last(x), scale)


def encoder_module(static: StaticConfig, view: int = 0) -> MLPEncoder:
    """The encoder architecture of view ``view`` (its widths, encoding size, initialisation
    and output normalisation)."""
    return MLPEncoder(
        static.widths(view), static.encoding_size(view), static.model.init, static.model.normalize
    )


def encoder_names(static: StaticConfig) -> tuple[str, ...]:
    """The parameter keys: ``("g1",)`` for a shared encoder, else ``("g1", ..., "gK")``."""
    k = 1 if static.model.shared_encoder else static.structure.n_views
    return tuple(f"g{v + 1}" for v in range(k))


def init_encoders(key: jax.Array, static: StaticConfig) -> dict:
    """Initial parameters of every view's encoder (one, when shared): ``{"g1": ..., ...}``.

    Encoder k takes the k-th of ``structure.n_views`` keys split from ``key``.
    """
    keys = jax.random.split(key, static.structure.n_views)
    return {
        name: encoder_module(static, v).init(
            keys[v], jnp.zeros((1, static.view_dim(v)), jnp.float32)
        )
        for v, name in enumerate(encoder_names(static))
    }


def encode(params: dict, xs: tuple[jnp.ndarray, ...], static: StaticConfig) -> tuple:
    """Applies each view's encoder to its observations (``(n, d_k)`` each); returns one
    ``(n, encoding_size_k)`` array per view.

    With a shared encoder all views go through one matrix product of K times the rows, which
    keeps the matmuls large.
    """
    chex.assert_equal(len(xs), static.structure.n_views)
    for v, x in enumerate(xs):
        chex.assert_shape(x, (None, static.view_dim(v)))
    if static.model.shared_encoder:
        h = encoder_module(static).apply(params["g1"], jnp.concatenate(xs))
        bounds = np.cumsum([0, *(x.shape[0] for x in xs)])
        hs = tuple(h[lo:hi] for lo, hi in itertools.pairwise(bounds))
    else:
        hs = tuple(
            encoder_module(static, v).apply(params[f"g{v + 1}"], x) for v, x in enumerate(xs)
        )
    return hs
