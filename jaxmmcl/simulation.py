"""One simulation: latent parameters plus one mechanism per view, and observations from it.

A :class:`Simulation` is drawn once per run from the run's key; training batches and the
evaluation samples all come from it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxmmcl.config import HyperArrays, SimulationConfig
from jaxmmcl.latents import LatentParams, Latents, init_latent_params, sample_latents, view_latents
from jaxmmcl.mechanisms import apply_mechanism, init_mixings
from jaxmmcl.structure import Structure, structure_of

Views = tuple[jnp.ndarray, ...]
"""One ``(n, view_dim)`` array per view, in the structure's order."""


@struct.dataclass
class Simulation:
    """Per-simulation parameters.

    Attributes:
      latents: the latent distribution's parameters.
      mechanisms: one ``(n_layers, d, d)`` weight array per view; equal arrays when the
        mechanism is shared (the multi-view setting, f1 = f2).
    """

    latents: LatentParams
    mechanisms: tuple[jnp.ndarray, ...]

    @property
    def structure(self) -> Structure:
        return self.latents.structure


def init_simulation(key: jax.Array, sim: SimulationConfig, hyper: HyperArrays) -> Simulation:
    """Draws a simulation (latent parameters and mechanisms) from ``key``.

    Views of equal dimension draw their mechanisms in one vmapped rejection sampler (one draw
    for all when ``shared_mixing``); views of different dimensions each from their own key.
    """
    structure = structure_of(sim)
    k_lat, k_mix = jax.random.split(key)
    dims = [structure.view_dim(v) for v in range(structure.n_views)]
    if len(set(dims)) == 1:
        count = 1 if sim.shared_mixing else len(dims)
        drawn = init_mixings(k_mix, dims[0], sim.mixing_layers, count)
        mechanisms = tuple(drawn[min(v, count - 1)] for v in range(len(dims)))
    else:
        mechanisms = tuple(
            init_mixings(jax.random.fold_in(k_mix, v), d, sim.mixing_layers, 1)[0]
            for v, d in enumerate(dims)
        )
    return Simulation(init_latent_params(k_lat, sim, hyper), mechanisms)


def observe(
    simulation: Simulation, sim: SimulationConfig, latents: Latents
) -> tuple[jnp.ndarray, ...]:
    """Every view's observations of ``latents``: ``x_k = f_k(z_k)``."""
    structure = simulation.structure
    return tuple(
        apply_mechanism(weights, view_latents(latents, structure, v), sim.mixing)
        for v, weights in enumerate(simulation.mechanisms)
    )


def sample_views(
    key: jax.Array, simulation: Simulation, sim: SimulationConfig, n: int
) -> tuple[Views, Latents]:
    """Draws ``n`` samples of every view.

    Returns:
      ``(xs, latents)``: one ``(n, d_k)`` observation array per view, ``x_k = f_k(z_k)`` with
      ``z_k`` the factors view k observes (paper: ``x1 = f1(c, s, m1)``, ``x2 = f2(c, s_tilde,
      m2)``), and the latents that generated them.
    """
    latents = sample_latents(key, simulation.latents, n)
    return observe(simulation, sim, latents), latents


def sample_indexed_views(
    key: jax.Array, indices: jnp.ndarray, simulation: Simulation, sim: SimulationConfig
) -> Views:
    """The views of samples ``indices`` (``(m,)`` integers) of a fixed set drawn from ``key``.

    Sample i is drawn alone from ``fold_in(key, i)``, so a set of any size is defined without
    being stored, and an index gives the same sample (the same latents, the same views)
    wherever and whenever it is drawn. Returns one ``(m, d_k)`` array per view.
    """

    def one(i):
        return sample_latents(jax.random.fold_in(key, i), simulation.latents, 1)

    latents = jax.tree.map(lambda x: x[:, 0], jax.vmap(one)(indices))
    return observe(simulation, sim, latents)


def content_factors(structure: Structure) -> tuple[str, ...]:
    """The factors every view observes whole and unperturbed (the paper's content ``c``)."""
    return tuple(
        f.name
        for f in structure.scored()
        if all((f.name, None) in structure.views[v].inputs for v in range(structure.n_views))
    )


def sample_intervened_views(
    key: jax.Array, simulation: Simulation, sim: SimulationConfig, n: int
) -> tuple[Views, Latents, Latents]:
    """Draws ``n`` samples whose content is permuted across the set in every view.

    The official permuted-content test (``main_mlp.py --permuted-content``): with one random
    permutation ``perm`` of the ``n`` samples (the same for every content component and every
    view), each content factor ``c`` (:func:`content_factors`) is replaced by ``c[perm]``
    before mixing: ``x1 = f1(c_perm, s, m1)``, ``x2 = f2(c_perm, s_tilde, m2)``. The inputs
    carry the permuted content, while the other factors stay as drawn (under causal dependence
    they still depend on the original c).

    Returns:
      ``(xs, latents, permuted)``: observations, the latents as drawn (``latents["c"]`` is
      the original content) and content factor name -> the permuted values the inputs carry.
    """
    k_latents, k_perm = jax.random.split(key)
    latents = sample_latents(k_latents, simulation.latents, n)
    perm = jax.random.permutation(k_perm, n)
    permuted = {name: latents[name][perm] for name in content_factors(simulation.structure)}
    return observe(simulation, sim, latents | permuted), latents, permuted
