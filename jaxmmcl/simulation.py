"""One simulation: latent parameters plus the two mechanisms, and paired observations from it.

A :class:`Simulation` is drawn once per run from the run's key; training batches and the
evaluation samples all come from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxmmcl.config import HyperArrays, SimulationConfig
from jaxmmcl.latents import LatentParams, Latents, init_latent_params, sample_latents
from jaxmmcl.mixing import apply_mixing, init_mixings


@struct.dataclass
class Simulation:
    """Per-simulation parameters.

    Attributes:
      latents: the latent distribution's parameters.
      mixing1, mixing2: the mechanisms' weights, ``(n_layers, d, d)`` each; equal arrays in the
        multi-view setting (f1 = f2).
    """

    latents: LatentParams
    mixing1: jnp.ndarray
    mixing2: jnp.ndarray


def init_simulation(key: jax.Array, sim: SimulationConfig, hyper: HyperArrays) -> Simulation:
    """Draws a simulation (latent parameters and mechanisms) from ``key``."""
    k_lat, k_mix = jax.random.split(key)
    mixings = init_mixings(k_mix, sim.dim, sim.mixing_layers, 1 if sim.shared_mixing else 2)
    return Simulation(init_latent_params(k_lat, sim, hyper), mixings[0], mixings[-1])


def sample_pairs(
    key: jax.Array, simulation: Simulation, sim: SimulationConfig, n: int
) -> tuple[jnp.ndarray, jnp.ndarray, Latents]:
    """Draws ``n`` observation pairs.

    Returns:
      ``(x1, x2, latents)`` with ``x1 = f1(c, s, m1)`` and ``x2 = f2(c, s_tilde, m2)`` of shape
      ``(n, d)`` each, and the latents that generated them.
    """
    latents = sample_latents(key, simulation.latents, n)
    x1 = apply_mixing(simulation.mixing1, latents.z1, sim.mixing)
    x2 = apply_mixing(simulation.mixing2, latents.z2, sim.mixing)
    return x1, x2, latents


def sample_intervened_pairs(
    key: jax.Array, simulation: Simulation, sim: SimulationConfig, n: int
) -> tuple[jnp.ndarray, jnp.ndarray, Latents, jnp.ndarray]:
    """Draws ``n`` pairs whose content is permuted across the set in both modalities.

    The official permuted-content test (``main_mlp.py --permuted-content``): with one random
    permutation ``perm`` of the ``n`` samples (the same for every content component and for
    both modalities), ``c_perm = c[perm]``, ``x1 = f1(c_perm, s, m1)`` and
    ``x2 = f2(c_perm, s_tilde, m2)``. The inputs carry the permuted content, while s, s_tilde,
    m1 and m2 stay as drawn (under causal dependence they still depend on the original c).

    Returns:
      ``(x1, x2, latents, c_perm)``: observations ``(n, d)`` each, the latents as drawn
      (``latents.c`` is the original content) and the permuted content ``(n, n_c)`` the inputs
      carry.
    """
    k_latents, k_perm = jax.random.split(key)
    latents = sample_latents(k_latents, simulation.latents, n)
    c_perm = latents.c[jax.random.permutation(k_perm, n)]
    z1 = jnp.concatenate([c_perm, latents.s, latents.m1], axis=-1)
    z2 = jnp.concatenate([c_perm, latents.s_tilde, latents.m2], axis=-1)
    x1 = apply_mixing(simulation.mixing1, z1, sim.mixing)
    x2 = apply_mixing(simulation.mixing2, z2, sim.mixing)
    return x1, x2, latents, c_perm
