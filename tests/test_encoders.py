"""The encoders: padded computation, unpadded model (oracle: plain ``nn.Dense`` layers), and
PyTorch's default initialisation."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmmcl.encoders import NEGATIVE_SLOPE, MLPEncoder, initializers, padded_width


class ReferenceMLP(nn.Module):
    """The encoder written plainly: ``nn.Dense`` layers at their true widths."""

    widths: tuple[int, ...]
    encoding_size: int

    @nn.compact
    def __call__(self, x):
        def dense(x, width):
            kernel_init, bias_init = initializers("torch", x.shape[-1])
            return nn.Dense(width, kernel_init=kernel_init, bias_init=bias_init)(x)

        for width in self.widths:
            x = nn.leaky_relu(dense(x, width), NEGATIVE_SLOPE)
        return dense(x, self.encoding_size)


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


@pytest.mark.parametrize("fan_in", [6, 300])
def test_initialisation_is_pytorchs_nn_linear_default(fan_in):
    """Weights and biases uniform in +-1/sqrt(fan_in): PyTorch's nn.Linear default (the
    official encoders'). A uniform's variance is bound^2 / 3, a third of LeCun-normal's
    1 / fan_in; the test tells them apart and catches zero biases."""
    module = MLPEncoder((400, 400), 3)
    params = module.init(jax.random.key(0), jnp.zeros((1, fan_in)))["params"]
    first = params["Dense_0"]
    bound = 1.0 / np.sqrt(fan_in)
    for values in (np.asarray(first["kernel"]).ravel(), np.asarray(first["bias"])):
        assert np.all(np.abs(values) <= bound) and np.max(np.abs(values)) > 0.95 * bound
        # 400+ draws: the sample variance is within 20 % of bound^2 / 3 (about 5 sigma).
        np.testing.assert_allclose(np.var(values), bound**2 / 3, rtol=0.2)
    hidden = np.asarray(params["Dense_1"]["kernel"])
    np.testing.assert_allclose(np.var(hidden), 1 / (3 * 400), rtol=0.05)
    lecun = MLPEncoder((400, 400), 3, init_scheme="lecun").init(
        jax.random.key(0), jnp.zeros((1, 300))
    )
    lecun = lecun["params"]
    np.testing.assert_allclose(np.var(lecun["Dense_1"]["kernel"]), 1 / 400, rtol=0.05)
    assert not np.any(lecun["Dense_1"]["bias"])
