"""The latent variables of the numerical simulation.

Blocks: content ``c`` (n_c), style ``s`` (n_s), modality-specific ``m1``, ``m2`` (n_m each).
Modality 1 sees ``z1 = (c, s, m1)``, modality 2 sees ``z2 = (c, s_tilde, m2)`` with
``s_tilde = s + mask * eps``; each style component of each sample is perturbed independently with
probability ``p_change``.

Per-simulation parameters (:class:`LatentParams`: covariance factors, B, a) are drawn once from
the run's key by :func:`init_latent_params`, so every batch of a run, training and evaluation
alike, comes from the same distribution.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import struct

from jaxmmcl.config import HyperArrays, SimulationConfig

BLOCKS = ("c", "s", "s_tilde", "m1", "m2")


@struct.dataclass
class LatentParams:
    """Per-simulation parameters of the latent distribution.

    Each ``factor_*`` is a square matrix ``L`` with covariance ``L @ L.T``: the identity for
    independent blocks, a Wishart(df = size, scale = I) factor under statistical dependence.

    Attributes:
      factor_c: ``(n_c, n_c)``.
      factor_s: ``(n_s, n_s)``, for the exogenous style noise s0.
      factor_eps: ``(n_s, n_s)``, for the style perturbation eps.
      factor_m1, factor_m2: ``(n_m, n_m)``.
      b: ``(n_s, n_c)``, the causal content-to-style map, already scaled by causal_strength.
      a: ``(n_s,)``, the style offset (zero when causal_strength is 0).
      p_change: scalar, probability of perturbing each style component.
    """

    factor_c: jnp.ndarray
    factor_s: jnp.ndarray
    factor_eps: jnp.ndarray
    factor_m1: jnp.ndarray
    factor_m2: jnp.ndarray
    b: jnp.ndarray
    a: jnp.ndarray
    p_change: jnp.ndarray


@struct.dataclass
class Latents:
    """A batch of latents; every field has leading axis n (samples)."""

    c: jnp.ndarray
    s: jnp.ndarray
    s_tilde: jnp.ndarray
    m1: jnp.ndarray
    m2: jnp.ndarray

    @property
    def z1(self) -> jnp.ndarray:
        """Modality 1's latent (c, s, m1), shape ``(n, n_c + n_s + n_m)``."""
        return jnp.concatenate([self.c, self.s, self.m1], axis=-1)

    @property
    def z2(self) -> jnp.ndarray:
        """Modality 2's latent (c, s_tilde, m2), shape ``(n, n_c + n_s + n_m)``."""
        return jnp.concatenate([self.c, self.s_tilde, self.m2], axis=-1)


def _covariance_factor(key: jax.Array, size: int, statistical: jnp.ndarray) -> jnp.ndarray:
    # W = X^T X with X (df x size) standard normal is Wishart(df, I); X^T is a factor of W,
    # so no Cholesky (which may fail on the ill-conditioned draws df = size allows) is needed.
    x = jax.random.normal(key, (size, size))
    return jnp.where(statistical > 0, x.T, jnp.eye(size))


def init_latent_params(key: jax.Array, sim: SimulationConfig, hyper: HyperArrays) -> LatentParams:
    """Draws the per-simulation latent parameters.

    Args:
      key: the simulation's key.
      sim: block sizes.
      hyper: one run's hyperparameters (scalars): ``statistical``, ``causal_strength``,
        ``p_change`` are used.
    """
    kc, ks, ke, k1, k2, kb, ka = jax.random.split(key, 7)
    causal = hyper.causal_strength != 0
    return LatentParams(
        factor_c=_covariance_factor(kc, sim.n_c, hyper.statistical),
        factor_s=_covariance_factor(ks, sim.n_s, hyper.statistical),
        factor_eps=_covariance_factor(ke, sim.n_s, hyper.statistical),
        factor_m1=_covariance_factor(k1, sim.n_m, hyper.statistical),
        factor_m2=_covariance_factor(k2, sim.n_m, hyper.statistical),
        b=hyper.causal_strength * jax.random.normal(kb, (sim.n_s, sim.n_c)),
        a=jnp.where(causal, jax.random.normal(ka, (sim.n_s,)), 0.0),
        p_change=hyper.p_change,
    )


def sample_latents(key: jax.Array, params: LatentParams, n: int) -> Latents:
    """Draws ``n`` independent samples of (c, s, s_tilde, m1, m2).

    ``c ~ N(0, Lc Lc^T)``, ``s = s0 + B c + a`` with ``s0 ~ N(0, Ls Ls^T)``,
    ``s_tilde = s + mask * eps`` with ``mask ~ Bernoulli(p_change)`` per component and
    ``eps ~ N(0, Le Le^T)``, ``m_i ~ N(0, Lm_i Lm_i^T)``.
    """
    kc, ks, ke, km, k1, k2 = jax.random.split(key, 6)

    def gaussian(k, factor):
        return jax.random.normal(k, (n, factor.shape[0])) @ factor.T

    c = gaussian(kc, params.factor_c)
    s = gaussian(ks, params.factor_s) + c @ params.b.T + params.a
    mask = jax.random.bernoulli(km, params.p_change, s.shape)
    s_tilde = s + mask * gaussian(ke, params.factor_eps)
    return Latents(
        c=c,
        s=s,
        s_tilde=s_tilde,
        m1=gaussian(k1, params.factor_m1),
        m2=gaussian(k2, params.factor_m2),
    )


def block_sizes(sim: SimulationConfig) -> dict[str, int]:
    """Sizes of the ground-truth blocks, in :data:`BLOCKS` order."""
    return {"c": sim.n_c, "s": sim.n_s, "s_tilde": sim.n_s, "m1": sim.n_m, "m2": sim.n_m}
