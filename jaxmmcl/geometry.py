"""Latent geometries: where a base factor lives and how its perturbed copy is drawn.

Two plug-in axes of the latent distribution (:mod:`jaxmmcl.latents`):

* the *marginal* of a base factor (``simulation.marginal``, :data:`MARGINALS`): ``"normal"``,
  the paper's ``N(0, L L^T)``; ``"sphere"``, uniform on the unit sphere (AnInfoNCE's and
  cl-ica's hyperspherical latents);
* the *conditional* of a perturbed copy given its base (``simulation.conditional``,
  :data:`CONDITIONALS`): ``"mask"``, the paper's ``s_tilde = s + mask * (scales * eps)``, each
  component changing with probability ``p_change``; ``"normal"``, every component changing by
  ``scales * N(0, 1)``; ``"projected_normal"``, AnInfoNCE's anisotropic conditional on the
  sphere.

``scales`` is the traced per-component vector ``simulation.change_scales`` (default: all ones):
the standard deviation of each component's change. Equal scales are the isotropic conditionals
of the identifiability theory (Zimmermann et al. 2021; Daunhawer et al. 2023); unequal ones are
Rusak et al.'s anisotropic setting, in which AnInfoNCE's precision ``Lambda_i = 1 / scales_i^2``.

A new geometry is one :class:`Marginal` or :class:`Conditional` and one registry line; the
config checks a conditional against the spaces it keeps (``Conditional.spaces``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# AnInfoNCE's projected normal keeps a candidate only when its norm is within this distance of
# 1 (the official ``--threshold``), so the change stays a local, anisotropic one.
PROJECTION_THRESHOLD = 0.1
# Candidates per sample and rejection round of the projected normal. Acceptance is about 10 %
# at AnInfoNCE's scales, so one round of 32 leaves a sample without a candidate with
# probability 0.9^32 = 3 %; the loop draws new rounds until every sample has one.
_CANDIDATES = 32
# Rounds after which a sample still without a candidate is given up (NaN): change scales so
# large that 32,768 candidates miss the shell make the run diverge instead of never ending.
_MAX_ROUNDS = 1024


class Marginal(NamedTuple):
    """The distribution of a base factor.

    Attributes:
      sample: ``(key, n, covariance_factor) -> (n, size)``, with ``covariance_factor`` the
        factor's ``(size, size)`` ``L`` (:class:`jaxmmcl.latents.LatentParams`).
      space: the space its samples lie in (``"real"``, ``"sphere"``).
      uses_covariance: whether ``L`` matters (``simulation.statistical`` needs it).
    """

    sample: Callable[[jax.Array, int, jnp.ndarray], jnp.ndarray]
    space: str
    uses_covariance: bool


class Conditional(NamedTuple):
    """The distribution of a perturbed copy given its base factor.

    Attributes:
      sample: ``(noise_key, mask_key, base, covariance_factor, p_change, scales) -> copy``:
        ``base`` ``(n, size)``; ``scales`` ``(size,)`` or ``(1,)``; returns ``(n, size)``.
      spaces: the marginals' spaces whose samples it keeps in their space.
    """

    sample: Callable[..., jnp.ndarray]
    spaces: tuple[str, ...]


def _normal(key, n, factor):
    return jax.random.normal(key, (n, factor.shape[0])) @ factor.T


def _sphere(key, n, factor):
    # A standard normal vector divided by its norm is uniform on the sphere.
    x = jax.random.normal(key, (n, factor.shape[0]))
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


MARGINALS: dict[str, Marginal] = {
    "normal": Marginal(_normal, "real", uses_covariance=True),
    "sphere": Marginal(_sphere, "sphere", uses_covariance=False),
}
"""``simulation.marginal`` -> its :class:`Marginal`: ``"normal"``, the paper's ``N(0, L L^T)``
(``L = I`` unless ``simulation.statistical``); ``"sphere"``, uniform on the unit sphere
``S^(size - 1)``."""


def _mask(noise_key, mask_key, base, factor, p_change, scales):
    mask = jax.random.bernoulli(mask_key, p_change, base.shape)
    eps = jax.random.normal(noise_key, base.shape) @ factor.T
    return base + mask * (scales * eps)


def _gaussian(noise_key, mask_key, base, factor, p_change, scales):
    del mask_key, factor, p_change
    return base + scales * jax.random.normal(noise_key, base.shape)


def projected_normal(key: jax.Array, base: jnp.ndarray, scales: jnp.ndarray) -> jnp.ndarray:
    """AnInfoNCE's conditional on the unit sphere (``rejected_projected_normal``).

    Each sample draws ``z + scales * N(0, I)`` until the candidate's norm is within
    :data:`PROJECTION_THRESHOLD` of 1, then projects it onto the sphere. Round r draws from
    ``fold_in(key, r)``, so a sample's value depends on its key alone, never on how many rounds
    the other samples of its batch (or run) needed. A sample that no candidate of 1,024 rounds
    fits (scales far beyond the sphere's size) is NaN, so its run is reported as diverged.

    Args:
      key: the copy's noise key.
      base: ``(n, size)`` points on the unit sphere.
      scales: ``(size,)`` or ``(1,)`` standard deviations of each component's change.

    Returns:
      ``(n, size)`` unit vectors.
    """
    n, size = base.shape

    def draw(r):
        eps = jax.random.normal(jax.random.fold_in(key, r), (n, _CANDIDATES, size))
        candidates = base[:, None, :] + scales * eps
        norms = jnp.linalg.norm(candidates, axis=-1)
        ok = jnp.abs(norms - 1.0) < PROJECTION_THRESHOLD
        first = jnp.argmax(ok, axis=1)
        chosen = jnp.take_along_axis(candidates, first[:, None, None], axis=1)[:, 0]
        chosen_norm = jnp.take_along_axis(norms, first[:, None], axis=1)
        return chosen / chosen_norm, jnp.any(ok, axis=1)

    def body(carry):
        r, out, done = carry
        drawn, ok = draw(r)
        take = ok & ~done
        return r + 1, jnp.where(take[:, None], drawn, out), done | ok

    out, done = draw(0)
    _, out, done = jax.lax.while_loop(
        lambda c: ~jnp.all(c[2]) & (c[0] < _MAX_ROUNDS), body, (1, out, done)
    )
    return jnp.where(done[:, None], out, jnp.nan)


def _projected(noise_key, mask_key, base, factor, p_change, scales):
    del mask_key, factor, p_change
    return projected_normal(noise_key, base, scales)


CONDITIONALS: dict[str, Conditional] = {
    "mask": Conditional(_mask, ("real",)),
    "normal": Conditional(_gaussian, ("real",)),
    "projected_normal": Conditional(_projected, ("sphere",)),
}
"""``simulation.conditional`` -> its :class:`Conditional`: ``"mask"`` (the paper's: each
component changes with probability ``p_change`` by ``scales * eps``, eps with the base's
covariance), ``"normal"`` (every component changes by ``scales * N(0, 1)``: cl-ica's Gaussian
conditional, anisotropic with unequal scales), ``"projected_normal"`` (on the sphere:
:func:`projected_normal`)."""
