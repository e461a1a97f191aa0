"""The encoders: padded computation, unpadded model (oracle: plain ``nn.Dense`` layers)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmmcl.encoders import NEGATIVE_SLOPE, MLPEncoder, padded_width


class ReferenceMLP(nn.Module):
    """The encoder written plainly: ``nn.Dense`` layers at their true widths."""

    widths: tuple[int, ...]
    encoding_size: int

    @nn.compact
    def __call__(self, x):
        for width in self.widths:
            x = nn.leaky_relu(nn.Dense(width)(x), NEGATIVE_SLOPE)
        return nn.Dense(self.encoding_size)(x)


def test_padded_width_rounds_up_to_the_multiple():
    assert [padded_width(w) for w in (1, 15, 16, 17, 150, 750, 768)] == [
        16, 16, 16, 32, 160, 752, 768,
    ]  # fmt: skip


@pytest.mark.parametrize("widths", [(150, 750, 750, 150), (32, 128, 32), (7,)])
def test_padded_encoder_is_the_plain_mlp(widths):
    """Same parameters from the same key, same outputs and gradients as plain Dense layers:
    the padding changes how the products are computed, not the model."""
    d, k = 15, 5
    x = jax.random.normal(jax.random.key(1), (64, d))
    ours, reference = MLPEncoder(widths, k), ReferenceMLP(widths, k)
    params = ours.init(jax.random.key(0), x[:1])
    ref_params = reference.init(jax.random.key(0), x[:1])
    assert jax.tree.structure(params) == jax.tree.structure(ref_params)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(ref_params), strict=True):
        np.testing.assert_array_equal(a, b)

    out = ours.apply(params, x)
    assert out.shape == (64, k)
    np.testing.assert_allclose(out, reference.apply(params, x), rtol=1e-5, atol=1e-6)

    def loss(module):
        return lambda p: jnp.sum(jnp.sin(module.apply(p, x)))

    grads, ref_grads = jax.grad(loss(ours))(params), jax.grad(loss(reference))(params)
    for a, b in zip(jax.tree.leaves(grads), jax.tree.leaves(ref_grads), strict=True):
        assert a.shape == b.shape
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_aligned_widths_compute_without_padding():
    """Widths that are multiples of the padding (the CPU scale's 32 and 128) add no pad."""
    module = MLPEncoder((32, 128, 128, 32), 2)
    params = module.init(jax.random.key(0), jnp.zeros((1, 6)))
    assert "pad" not in str(jax.make_jaxpr(module.apply)(params, jnp.zeros((8, 6))))
    padded = MLPEncoder((30, 128), 2)
    params = padded.init(jax.random.key(0), jnp.zeros((1, 6)))
    assert "pad" in str(jax.make_jaxpr(padded.apply)(params, jnp.zeros((8, 6))))
