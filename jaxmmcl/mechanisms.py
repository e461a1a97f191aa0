"""Mechanisms (mixing functions) x = f(z): drawn once per simulation, never trained.

Every mechanism is ``n_layers`` square linear maps without bias, ``nn.Linear``-style (a layer
computes ``x @ W.T``), with an elementwise activation between them (none after the last). Every
weight matrix has entries uniform in [-1, 1], columns scaled to unit L2 norm, and is redrawn
until its condition number is at most :func:`condition_threshold` (the 0.1 % quantile of the
condition numbers of 25,000 such matrices): the construction of Hyvarinen et al. that the
paper's and cl-ica's code use.

A mechanism is a :class:`Mechanism` in :data:`MECHANISMS`, selected by ``simulation.mixing``:
its activation and that activation's inverse (None for a mechanism that is not invertible). A
new family is one entry: the paper's LeakyReLU(0.2) MLP ``"mlp"``, ``"linear"`` (no
activation), cl-ica's ``"elu"``, ``"smooth_leaky_relu"`` (``0.2 x + 0.8 softplus(x)``) and
``"softplus"``, and the control ``"drop"``: the MLP applied after the first input component is
set to zero, so that component is lost; the theory says it cannot be recovered (with the
paper's structure, the first content dimension).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

NEGATIVE_SLOPE = 0.2
_THRESHOLD_SAMPLES = 25_000
_THRESHOLD_QUANTILE = 0.001
# Candidates drawn per rejection round. With acceptance probability 0.1 %, 2048 candidates
# accept at least one with probability 87 %, so the loop rarely needs a second round.
_CANDIDATES = 2048


def _random_matrices(key: jax.Array, count: int, dim: int) -> jnp.ndarray:
    w = jax.random.uniform(key, (count, dim, dim), minval=-1.0, maxval=1.0)
    return w / jnp.linalg.norm(w, axis=1, keepdims=True)


def _condition_numbers(w: jnp.ndarray) -> jnp.ndarray:
    sv = jnp.linalg.svd(w, compute_uv=False)
    return sv[..., 0] / sv[..., -1]


@functools.cache
def condition_threshold(dim: int) -> float:
    """The 0.1 % quantile of the condition numbers of 25,000 random column-normalised matrices.

    A deterministic function of ``dim`` (NumPy generator seeded with ``dim``), computed on the
    host once per dimension so that it is a constant of the compiled programs.
    """
    w = np.random.default_rng(dim).uniform(-1.0, 1.0, (_THRESHOLD_SAMPLES, dim, dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    conds = np.sort(np.linalg.cond(w))
    return float(conds[int(_THRESHOLD_SAMPLES * _THRESHOLD_QUANTILE)])


def sample_conditioned_matrix(key: jax.Array, dim: int, threshold: float) -> jnp.ndarray:
    """Rejection-samples one ``(dim, dim)`` matrix with condition number <= ``threshold``."""

    def draw(key):
        key, sub = jax.random.split(key)
        w = _random_matrices(sub, _CANDIDATES, dim)
        ok = _condition_numbers(w) <= threshold
        return key, w[jnp.argmax(ok)], jnp.any(ok)

    def body(carry):
        key, _, _ = carry
        return draw(key)

    _, w, _ = jax.lax.while_loop(lambda carry: ~carry[2], body, draw(key))
    return w


def init_mixings(key: jax.Array, dim: int, n_layers: int, count: int) -> jnp.ndarray:
    """Draws the weights of ``count`` independent mechanisms: ``(count, n_layers, dim, dim)``.

    All matrices are rejection-sampled in one vmapped loop, which compiles once however many
    mechanisms and layers there are.
    """
    threshold = condition_threshold(dim)
    keys = jax.random.split(key, count * n_layers)
    weights = jax.vmap(lambda k: sample_conditioned_matrix(k, dim, threshold))(keys)
    return weights.reshape(count, n_layers, dim, dim)


Activation = Callable[[jnp.ndarray], jnp.ndarray]


def _smooth_leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
    return 0.2 * x + 0.8 * jax.nn.softplus(x)


def _smooth_leaky_relu_inverse(y: jnp.ndarray) -> jnp.ndarray:
    # Strictly increasing with slope in [0.2, 1]: Newton's method from y converges; 40 steps
    # reach float32 precision on every input we draw.
    def step(x, _):
        return x - (_smooth_leaky_relu(x) - y) / (0.2 + 0.8 * jax.nn.sigmoid(x)), None

    x, _ = jax.lax.scan(step, y, None, length=40)
    return x


class Mechanism(NamedTuple):
    """A mechanism family: the activation between its layers and its inverse.

    Attributes:
      activation: elementwise, after every layer but the last.
      inverse: the activation's inverse; None when the mechanism is not invertible.
      drop_first: the first input component is set to zero before the first layer (the
        non-invertible control).
    """

    activation: Activation | None
    inverse: Activation | None
    drop_first: bool = False

    @property
    def invertible(self) -> bool:
        return self.inverse is not None or (self.activation is None and not self.drop_first)


def _leaky_relu(x: jnp.ndarray) -> jnp.ndarray:
    return jax.nn.leaky_relu(x, NEGATIVE_SLOPE)


def _leaky_relu_inverse(y: jnp.ndarray) -> jnp.ndarray:
    return jnp.where(y >= 0, y, y / NEGATIVE_SLOPE)


MECHANISMS: dict[str, Mechanism] = {
    "mlp": Mechanism(_leaky_relu, _leaky_relu_inverse),
    "linear": Mechanism(None, None),
    "elu": Mechanism(jax.nn.elu, lambda y: jnp.where(y > 0, y, jnp.log1p(y))),
    "smooth_leaky_relu": Mechanism(_smooth_leaky_relu, _smooth_leaky_relu_inverse),
    "softplus": Mechanism(jax.nn.softplus, lambda y: y + jnp.log(-jnp.expm1(-y))),
    "drop": Mechanism(_leaky_relu, None, drop_first=True),
}
"""``simulation.mixing`` -> its :class:`Mechanism`."""


def apply_mechanism(weights: jnp.ndarray, z: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Applies mechanism ``kind`` to latents ``z`` of shape ``(n, dim)``; returns ``(n, dim)``.

    ``weights`` is ``(n_layers, dim, dim)``; layer l maps ``x`` to ``x @ weights[l].T``.
    """
    mechanism = MECHANISMS[kind]
    x = z.at[:, 0].set(0.0) if mechanism.drop_first else z
    for layer in range(weights.shape[0]):
        x = x @ weights[layer].T
        if mechanism.activation is not None and layer < weights.shape[0] - 1:
            x = mechanism.activation(x)
    return x


def invert_mechanism(weights: jnp.ndarray, x: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Inverse of :func:`apply_mechanism`: recovers ``z`` from ``x``.

    Raises:
      ValueError: the mechanism is not invertible.
    """
    mechanism = MECHANISMS[kind]
    if not mechanism.invertible:
        raise ValueError(f"simulation.mixing: {kind!r} is not invertible")
    z = x
    for layer in reversed(range(weights.shape[0])):
        if mechanism.inverse is not None and layer < weights.shape[0] - 1:
            z = mechanism.inverse(z)
        z = jnp.linalg.solve(weights[layer], z.T).T
    return z
