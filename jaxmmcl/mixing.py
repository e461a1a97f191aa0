"""Mixing functions (mechanisms) x = f(z): fixed per simulation, invertible, never trained.

``"mlp"``: the paper's invertible MLP, ``n_layers`` square linear maps without bias with
LeakyReLU(0.2) between them (none after the last). ``"linear"``: the same maps without the
nonlinearity. Both are invertible (:func:`invert_mixing`).

Every weight matrix has entries uniform in [-1, 1], columns scaled to unit L2 norm, and is
redrawn until its condition number is at most :func:`condition_threshold` (the 0.1 % quantile
of the condition numbers of 25,000 such matrices).
"""

from __future__ import annotations

import functools

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


def apply_mixing(weights: jnp.ndarray, z: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Applies a mechanism to latents ``z`` of shape ``(n, dim)``; returns ``(n, dim)``.

    ``weights`` is ``(n_layers, dim, dim)``; layer l maps ``x`` to ``x @ weights[l].T``.
    """
    x = z
    for layer in range(weights.shape[0]):
        x = x @ weights[layer].T
        if kind == "mlp" and layer < weights.shape[0] - 1:
            x = jax.nn.leaky_relu(x, NEGATIVE_SLOPE)
    return x


def invert_mixing(weights: jnp.ndarray, x: jnp.ndarray, kind: str) -> jnp.ndarray:
    """Inverse of :func:`apply_mixing`: recovers ``z`` from ``x``."""
    z = x
    for layer in reversed(range(weights.shape[0])):
        if kind == "mlp" and layer < weights.shape[0] - 1:
            z = jnp.where(z >= 0, z, z / NEGATIVE_SLOPE)
        z = jnp.linalg.solve(weights[layer], z.T).T
    return z
