"""The latent variables of the numerical simulation.

Blocks: content ``c`` (n_c), style ``s`` (n_s), modality-specific ``m1``, ``m2`` (n_m each).
Modality 1 sees ``z1 = (c, s, m1)``, modality 2 sees ``z2 = (c, s_tilde, m2)`` with
``s_tilde = s + mask * eps``; each style component of each sample is perturbed independently with
probability ``p_change``.

Discrete variant (``simulation.discrete``): the components of one block (c; s and s_tilde; or m1
and m2) are class indices ``i`` drawn uniformly from ``{0, ..., k - 1}`` (k = ``n_classes``),
entered into the mechanisms as the standardised code ``(i - (k - 1) / 2) / sqrt((k^2 - 1) / 12)``
(:func:`code_classes`; zero mean, unit variance). A discrete style is perturbed by replacing
each component, with probability ``p_change``, by a class drawn uniformly from the *other* k - 1
classes: as in the continuous case, ``p_change`` is the probability that a component changes,
and s_tilde stays uniformly distributed over the classes.

Per-simulation parameters (:class:`LatentParams`: covariance factors, B, a) are drawn once from
the run's key by :func:`init_latent_params`, so every batch of a run, training and evaluation
alike, comes from the same distribution.

Statistical dependence follows the paper's code, which seeds every Wishart draw alike: blocks
of one size share one covariance matrix, and the style perturbation eps has the style block's
covariance (``Ls Ls^T``). Both choices matter at the CPU scale (2-dimensional blocks, where
df = 2 makes the draws vary widely). A separate draw for eps leaves some style directions
changing by a small fraction of their variance; nearly invariant, they compete with content for
the encoding (Table 1's multi-view statistical rows: content R^2 0.85 and 0.89, against 1.00).
Separate draws per block can give content a fraction of the style's variance (one Table 1 seed:
total variance 0.57 against 9.9), and that run's encoders settle on style (content R^2 0.5 in
both multimodal statistical rows, at 4,000 and at 8,000 steps).
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
from flax import struct

from jaxmmcl.config import HyperArrays, SimulationConfig

BLOCKS = ("c", "s", "s_tilde", "m1", "m2")

# The blocks made of classes, per value of ``simulation.discrete``.
DISCRETE = {"none": (), "c": ("c",), "s": ("s", "s_tilde"), "m": ("m1", "m2")}


@struct.dataclass
class LatentParams:
    """Per-simulation parameters of the latent distribution.

    Each ``factor_*`` is a square matrix ``L`` with covariance ``L @ L.T``: the identity for
    independent blocks, a Wishart(df = size, scale = I) factor under statistical dependence.
    A discrete block ignores its factors, and a discrete style ignores B and a: configs that
    would set them are rejected by :class:`jaxmmcl.config.RunConfig`.

    Attributes:
      factor_c: ``(n_c, n_c)``.
      factor_s: ``(n_s, n_s)``, for the exogenous style noise s0 and the perturbation eps.
      factor_m1, factor_m2: ``(n_m, n_m)``.
      b: ``(n_s, n_c)``, the causal content-to-style map, already scaled by causal_strength.
      a: ``(n_s,)``, the style offset (zero when causal_strength is 0).
      p_change: scalar, probability of perturbing each style component.
      discrete: static, ``simulation.discrete`` (``"none"``, ``"c"``, ``"s"`` or ``"m"``).
      n_classes: static, classes per discrete component.
    """

    factor_c: jnp.ndarray
    factor_s: jnp.ndarray
    factor_m1: jnp.ndarray
    factor_m2: jnp.ndarray
    b: jnp.ndarray
    a: jnp.ndarray
    p_change: jnp.ndarray
    discrete: str = struct.field(pytree_node=False)
    n_classes: int = struct.field(pytree_node=False)


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
    k_cov, kb, ka = jax.random.split(key, 3)
    causal = hyper.causal_strength != 0
    # One draw per block size, shared by the blocks of that size (module docstring).
    factor = {
        n: _covariance_factor(k_cov, n, hyper.statistical) for n in {sim.n_c, sim.n_s, sim.n_m}
    }
    return LatentParams(
        factor_c=factor[sim.n_c],
        factor_s=factor[sim.n_s],
        factor_m1=factor[sim.n_m],
        factor_m2=factor[sim.n_m],
        b=hyper.causal_strength * jax.random.normal(kb, (sim.n_s, sim.n_c)),
        a=jnp.where(causal, jax.random.normal(ka, (sim.n_s,)), 0.0),
        p_change=hyper.p_change,
        discrete=sim.discrete,
        n_classes=sim.n_classes,
    )


def code_classes(labels: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """Standardised float32 code ``(i - (k - 1) / 2) / sqrt((k^2 - 1) / 12)`` of class indices.

    A uniform class index has mean (k - 1) / 2 and variance (k^2 - 1) / 12, so the code has
    zero mean and unit variance, like the continuous blocks. Same shape as ``labels``.
    """
    half = (n_classes - 1) / 2
    return (labels.astype(jnp.float32) - half) / math.sqrt((n_classes**2 - 1) / 12)


def decode_classes(values: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """Inverse of :func:`code_classes`: int32 class indices of coded values, same shape."""
    half = (n_classes - 1) / 2
    return jnp.round(values * math.sqrt((n_classes**2 - 1) / 12) + half).astype(jnp.int32)


def sample_latents(key: jax.Array, params: LatentParams, n: int) -> Latents:
    """Draws ``n`` independent samples of (c, s, s_tilde, m1, m2).

    ``c ~ N(0, Lc Lc^T)``, ``s = s0 + B c + a`` with ``s0 ~ N(0, Ls Ls^T)``,
    ``s_tilde = s + mask * eps`` with ``mask ~ Bernoulli(p_change)`` per component and
    ``eps ~ N(0, Ls Ls^T)``, ``m_i ~ N(0, Lm_i Lm_i^T)``. The discrete block, if any, holds
    coded uniform classes instead (see the module docstring).

    Returns:
      Latents with fields of shape ``(n, n_c)``, ``(n, n_s)`` (s, s_tilde), ``(n, n_m)``.
    """
    kc, ks, ke, km, k1, k2 = jax.random.split(key, 6)
    k = params.n_classes

    def gaussian(key, factor):
        return jax.random.normal(key, (n, factor.shape[0])) @ factor.T

    def labels(key, factor):
        return jax.random.randint(key, (n, factor.shape[0]), 0, k)

    def block(key, factor, discrete):
        return code_classes(labels(key, factor), k) if discrete else gaussian(key, factor)

    c = block(kc, params.factor_c, params.discrete == "c")
    mask = jax.random.bernoulli(km, params.p_change, (n, params.factor_s.shape[0]))
    if params.discrete == "s":
        s_labels = labels(ks, params.factor_s)
        # A shift in {1, ..., k - 1} modulo k picks one of the other classes uniformly.
        other = (s_labels + jax.random.randint(ke, s_labels.shape, 1, k)) % k
        s = code_classes(s_labels, k)
        s_tilde = code_classes(jnp.where(mask, other, s_labels), k)
    else:
        s = gaussian(ks, params.factor_s) + c @ params.b.T + params.a
        s_tilde = s + mask * gaussian(ke, params.factor_s)
    return Latents(
        c=c,
        s=s,
        s_tilde=s_tilde,
        m1=block(k1, params.factor_m1, params.discrete == "m"),
        m2=block(k2, params.factor_m2, params.discrete == "m"),
    )


def block_sizes(sim: SimulationConfig) -> dict[str, int]:
    """Sizes of the ground-truth blocks, in :data:`BLOCKS` order."""
    return {"c": sim.n_c, "s": sim.n_s, "s_tilde": sim.n_s, "m1": sim.n_m, "m2": sim.n_m}
