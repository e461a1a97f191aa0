"""Where a run's randomness comes from: three keys derived from its seed alone."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def run_keys(seed: jnp.ndarray | int) -> tuple[jax.Array, jax.Array, jax.Array]:
    """The run's (simulation, training, evaluation) keys, all derived from its seed alone, so
    that a run's result never depends on the runs it is trained or scored with."""
    key = jax.random.key(seed)
    return tuple(jax.random.fold_in(key, i) for i in range(3))


def data_key(seed: jnp.ndarray | int) -> jax.Array:
    """The key of the run's fixed training set and of its epochs' orders
    (``simulation.n_train``), derived from its seed alone, apart from :func:`run_keys`."""
    return jax.random.fold_in(jax.random.key(seed), 3)
