"""The latent factors of the numerical simulation, drawn as the structure says.

The factors (:mod:`jaxmmcl.structure`) are drawn in their order. A base factor is drawn from
its marginal (:data:`jaxmmcl.geometry.MARGINALS`, ``simulation.marginal``): the paper's
Gaussian ``N(0, L L^T)`` with ``L`` its covariance factor (the identity, or under statistical
dependence a Wishart(df = size, scale = I) draw), or uniform on the sphere. A factor that is a
causal child adds its parents' contribution (:data:`DEPENDENCES`, ``simulation.causal``): the
paper's linear ``s = s0 + B c + a``, or a random MLP of the parent. A perturbed copy is drawn
from the conditional (:data:`jaxmmcl.geometry.CONDITIONALS`, ``simulation.conditional``) given
its base factor: the paper's, each component of each sample changing with probability
``p_change`` by noise with the base factor's covariance (``s_tilde = s + mask * eps``, the
noise scaled per component by ``simulation.change_scales``, all ones by default).

Discrete factors (``simulation.discrete``): the components are class indices ``i`` drawn
uniformly from ``{0, ..., k - 1}`` (k = ``n_classes``), entered into the mechanisms as the
standardised code ``(i - (k - 1) / 2) / sqrt((k^2 - 1) / 12)`` (:func:`code_classes`; zero mean,
unit variance). A discrete copy replaces each component, with probability ``p_change``, by a
class drawn uniformly from the *other* k - 1 classes: as in the continuous case, ``p_change`` is
the probability that a component changes, and the copy stays uniform over the classes.

Per-simulation parameters (:class:`LatentParams`: covariance factors, the dependences'
parameters) are drawn once from the run's key by :func:`init_latent_params`, so every batch of a
run, training and evaluation alike, comes from the same distribution.

Statistical dependence follows the paper's code, which seeds every Wishart draw alike: factors
of one size share one covariance matrix, and a copy's perturbation has its base factor's
covariance. Both choices matter at the CPU scale (2-dimensional blocks, where df = 2 makes the
draws vary widely). A separate draw for eps leaves some style directions changing by a small
fraction of their variance; nearly invariant, they compete with content for the encoding
(Table 1's multi-view statistical rows: content R^2 0.85 and 0.89, against 1.00). Separate
draws per block can give content a fraction of the style's variance (one Table 1 seed: total
variance 0.57 against 9.9), and that run's encoders settle on style (content R^2 0.5 in both
multimodal statistical rows, at 4,000 and at 8,000 steps).

Keys: a sample's key splits into one key per base factor and two per copy (its noise, its
mask), in factor order; the paper's two views thus use (c, s, eps, mask, m1, m2), as before the
structure was data.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import struct

from jaxmmcl.geometry import CONDITIONALS, MARGINALS
from jaxmmcl.structure import Structure, structure_of

if TYPE_CHECKING:
    from jaxmmcl.config import HyperArrays, SimulationConfig

Latents = dict[str, jnp.ndarray]
"""A batch of latents: factor name -> ``(n, size)`` array."""


class Dependence(NamedTuple):
    """A causal dependence of a child factor on a parent factor.

    Attributes:
      init: ``(keys, n_parent, n_child, strength) -> params``, with ``keys`` two independent
        keys (weights, offset) and ``strength`` the traced ``simulation.causal_strength``
        (0: no dependence).
      apply: ``(params, parent, child_noise) -> child`` for batches ``(n, n_parent)`` and
        ``(n, n_child)``.
    """

    init: Callable[[tuple[jax.Array, jax.Array], int, int, jnp.ndarray], Any]
    apply: Callable[[Any, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def _offset(key: jax.Array, n_child: int, strength: jnp.ndarray) -> jnp.ndarray:
    # The offset a is switched off with the dependence (strength 0), as the paper's flag does.
    return jnp.where(strength != 0, jax.random.normal(key, (n_child,)), 0.0)


def _linear_init(keys, n_parent, n_child, strength):
    kb, ka = keys
    return {
        "b": strength * jax.random.normal(kb, (n_child, n_parent)),
        "a": _offset(ka, n_child, strength),
    }


def _linear_apply(params, parent, noise):
    return noise + parent @ params["b"].T + params["a"]


# Hidden units of the nonlinear dependence's random MLP.
DEPENDENCE_HIDDEN = 32


def _mlp_init(keys, n_parent, n_child, strength):
    kw, ka = keys
    k1, k2 = jax.random.split(kw)
    # Variance-preserving weights: g(c) has about unit variance per component for unit c.
    w1 = jax.random.normal(k1, (DEPENDENCE_HIDDEN, n_parent)) / math.sqrt(max(n_parent, 1))
    w2 = jax.random.normal(k2, (n_child, DEPENDENCE_HIDDEN)) * math.sqrt(2.0 / DEPENDENCE_HIDDEN)
    return {"w1": w1, "w2": strength * w2, "a": _offset(ka, n_child, strength)}


def _mlp_apply(params, parent, noise):
    hidden = jnp.tanh(parent @ params["w1"].T)
    return noise + hidden @ params["w2"].T + params["a"]


DEPENDENCES: dict[str, Dependence] = {
    "linear": Dependence(_linear_init, _linear_apply),
    "mlp": Dependence(_mlp_init, _mlp_apply),
}
"""``simulation.causal`` -> its :class:`Dependence`: ``"linear"``, the paper's ``s = s0 + B c
+ a`` with ``B = strength * N(0, 1)`` entries and ``a ~ N(0, I)``; ``"mlp"``, ``s = s0 +
strength * W2 tanh(W1 c) + a`` with random Gaussian weights (a nonlinear dependence)."""


@struct.dataclass
class LatentParams:
    """Per-simulation parameters of the latent distribution.

    Attributes:
      covariance: base factor name -> its ``(size, size)`` covariance factor ``L``
        (covariance ``L @ L.T``): the identity for independent factors, a Wishart factor under
        statistical dependence. A discrete factor ignores its own.
      causal: child factor name -> its dependence's parameters (already scaled by
        ``causal_strength``).
      p_change: scalar, probability of perturbing each component of a copy.
      change_scales: ``(size,)`` or ``(1,)``, each component's change scale in a copy.
      structure: static, the factors and views.
      n_classes: static, classes per discrete component.
      dependence: static, the ``simulation.causal`` name.
      marginal: static, the ``simulation.marginal`` name.
      conditional: static, the ``simulation.conditional`` name.
      marginal_p, conditional_p: static, the exponents ``simulation.marginal_p`` and
        ``simulation.conditional_p`` (of generalised normals).
    """

    covariance: dict[str, jnp.ndarray]
    causal: dict[str, Any]
    p_change: jnp.ndarray
    change_scales: jnp.ndarray
    structure: Structure = struct.field(pytree_node=False)
    n_classes: int = struct.field(pytree_node=False)
    dependence: str = struct.field(pytree_node=False)
    marginal: str = struct.field(pytree_node=False, default="normal")
    conditional: str = struct.field(pytree_node=False, default="mask")
    marginal_p: float = struct.field(pytree_node=False, default=2.0)
    conditional_p: float = struct.field(pytree_node=False, default=2.0)


def _covariance_factor(key: jax.Array, size: int, statistical: jnp.ndarray) -> jnp.ndarray:
    # W = X^T X with X (df x size) standard normal is Wishart(df, I); X^T is a factor of W,
    # so no Cholesky (which may fail on the ill-conditioned draws df = size allows) is needed.
    x = jax.random.normal(key, (size, size))
    return jnp.where(statistical > 0, x.T, jnp.eye(size))


def init_latent_params(key: jax.Array, sim: SimulationConfig, hyper: HyperArrays) -> LatentParams:
    """Draws the per-simulation latent parameters.

    Args:
      key: the simulation's key.
      sim: the simulation config (its structure, dependence and classes).
      hyper: one run's hyperparameters (scalars, and the vector ``change_scales``):
        ``statistical``, ``causal_strength``, ``p_change``, ``change_scales`` are used.
    """
    structure = structure_of(sim)
    k_cov, k_weights, k_offset = jax.random.split(key, 3)
    base = [f for f in structure.factors if f.copy_of is None]
    # One draw per factor size, shared by the factors of that size (module docstring).
    factor = {n: _covariance_factor(k_cov, n, hyper.statistical) for n in {f.size for f in base}}
    dependence = DEPENDENCES[sim.causal]
    causal = {}
    for i, (parent, child) in enumerate(structure.causal):
        keys = (k_weights, k_offset)
        if i:
            keys = tuple(jax.random.fold_in(k, i) for k in keys)
        sizes = (structure.factor(parent).size, structure.factor(child).size)
        causal[child] = dependence.init(keys, *sizes, hyper.causal_strength)
    scales = hyper.change_scales
    if isinstance(scales, tuple):
        # One run's unstacked values (stack_hyperparams makes [] ones).
        scales = scales or (1.0,)
    return LatentParams(
        covariance={f.name: factor[f.size] for f in base},
        causal=causal,
        p_change=hyper.p_change,
        change_scales=jnp.atleast_1d(jnp.asarray(scales, jnp.float32)),
        structure=structure,
        n_classes=sim.n_classes,
        dependence=sim.causal,
        marginal=sim.marginal,
        conditional=sim.conditional,
        marginal_p=sim.marginal_p,
        conditional_p=sim.conditional_p,
    )


def code_classes(labels: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """Standardised float32 code ``(i - (k - 1) / 2) / sqrt((k^2 - 1) / 12)`` of class indices.

    A uniform class index has mean (k - 1) / 2 and variance (k^2 - 1) / 12, so the code has
    zero mean and unit variance, like the continuous factors. Same shape as ``labels``.
    """
    half = (n_classes - 1) / 2
    return (labels.astype(jnp.float32) - half) / math.sqrt((n_classes**2 - 1) / 12)


def decode_classes(values: jnp.ndarray, n_classes: int) -> jnp.ndarray:
    """Inverse of :func:`code_classes`: int32 class indices of coded values, same shape."""
    half = (n_classes - 1) / 2
    return jnp.round(values * math.sqrt((n_classes**2 - 1) / 12) + half).astype(jnp.int32)


def key_slots(structure: Structure) -> int:
    """Keys a sample splits into: one per base factor, two per copy (module docstring)."""
    return sum(1 if f.copy_of is None else 2 for f in structure.factors)


def sample_latents(key: jax.Array, params: LatentParams, n: int) -> Latents:
    """Draws ``n`` independent samples of every factor (module docstring).

    Returns:
      Factor name -> ``(n, size)`` float32 values (discrete factors as coded classes).
    """
    structure, k = params.structure, params.n_classes
    keys = iter(jax.random.split(key, key_slots(structure)))
    parents = {child: parent for parent, child in structure.causal}
    labels: dict[str, jnp.ndarray] = {}
    out: Latents = {}
    for f in structure.factors:
        if f.copy_of is None:
            draw_key = next(keys)
            if f.discrete:
                labels[f.name] = jax.random.randint(draw_key, (n, f.size), 0, k)
                out[f.name] = code_classes(labels[f.name], k)
                continue
            noise = MARGINALS[params.marginal].sample(
                draw_key, n, params.covariance[f.name], params.marginal_p
            )
            if f.name in parents:
                dependence = DEPENDENCES[params.dependence]
                noise = dependence.apply(params.causal[f.name], out[parents[f.name]], noise)
            out[f.name] = noise
            continue
        noise_key, mask_key = next(keys), next(keys)
        if f.discrete:
            mask = jax.random.bernoulli(mask_key, params.p_change, (n, f.size))
            base = labels[f.copy_of]
            # A shift in {1, ..., k - 1} modulo k picks one of the other classes uniformly.
            other = (base + jax.random.randint(noise_key, base.shape, 1, k)) % k
            out[f.name] = code_classes(jnp.where(mask, other, base), k)
        else:
            out[f.name] = CONDITIONALS[params.conditional].sample(
                noise_key,
                mask_key,
                out[f.copy_of],
                params.covariance[f.copy_of],
                params.p_change,
                params.change_scales,
                MARGINALS[params.marginal].space,
                params.conditional_p,
            )
    return out


def view_latents(latents: Latents, structure: Structure, view: int) -> jnp.ndarray:
    """What view ``view``'s mechanism takes: its inputs concatenated, ``(n, view_dim)``."""
    parts = []
    for name, components in structure.views[view].inputs:
        value = latents[name]
        parts.append(value if components is None else value[:, list(components)])
    return jnp.concatenate(parts, axis=-1)
