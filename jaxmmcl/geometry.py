"""Latent geometries: where a base factor lives and how its perturbed copy is drawn.

Two plug-in axes of the latent distribution (:mod:`jaxmmcl.latents`):

* the *marginal* of a base factor (``simulation.marginal``, :data:`MARGINALS`): ``"normal"``,
  the paper's ``N(0, L L^T)``; ``"laplace"``; ``"generalized_normal"`` (density proportional
  to ``exp(-|x|^p)`` per component, ``p = simulation.marginal_p``); ``"box"``, uniform on the
  unit box ``[0, 1]^n`` (cl-ica's); ``"sphere"``, uniform on the unit sphere (AnInfoNCE's and
  cl-ica's);
* the *conditional* of a perturbed copy given its base (``simulation.conditional``,
  :data:`CONDITIONALS`): ``"mask"``, the paper's ``s_tilde = s + mask * (scales * eps)``, each
  component changing with probability ``p_change``; ``"normal"``, ``"laplace"`` and
  ``"generalized_normal"`` (``p = simulation.conditional_p``), every component changing by
  ``scales`` times that noise (cl-ica's conditionals; in the box each component is truncated
  to it by rejection, as cl-ica's ``truncated_rejection_resampling``, and on the sphere the
  sum is projected back onto it, as cl-ica's ``NSphereSpace``); ``"projected_normal"``,
  AnInfoNCE's anisotropic conditional on the sphere; ``"vmf"``, cl-ica's von Mises-Fisher
  conditional on the sphere.

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
# Candidates per sample and round of the vMF's cosine: Wood's sampler accepts at least two
# thirds of its proposals (0.68 at kappa 1000 in 3 dimensions, more elsewhere), so 4 leave a
# sample for another round with probability near 1 %, and the Beta draws (its cost) stay few.
_VMF_CANDIDATES = 4
# cl-ica's box (main_mlp.py --box-min 0 --box-max 1).
BOX = (0.0, 1.0)


class Marginal(NamedTuple):
    """The distribution of a base factor.

    Attributes:
      sample: ``(key, n, covariance_factor, exponent) -> (n, size)``, with
        ``covariance_factor`` the factor's ``(size, size)`` ``L``
        (:class:`jaxmmcl.latents.LatentParams`) and ``exponent`` the static
        ``simulation.marginal_p``.
      space: the space its samples lie in (``"real"``, ``"box"``, ``"sphere"``).
      uses_covariance: whether ``L`` matters (``simulation.statistical`` needs it).
      uses_exponent: whether ``exponent`` matters (the config refuses one set in vain).
    """

    sample: Callable[[jax.Array, int, jnp.ndarray, float], jnp.ndarray]
    space: str
    uses_covariance: bool
    uses_exponent: bool = False


class Conditional(NamedTuple):
    """The distribution of a perturbed copy given its base factor.

    Attributes:
      sample: ``(noise_key, mask_key, base, covariance_factor, p_change, scales, space,
        exponent) -> copy``: ``base`` ``(n, size)``; ``scales`` ``(size,)`` or ``(1,)``;
        ``space`` the marginal's and ``exponent`` ``simulation.conditional_p`` (both static);
        returns ``(n, size)``.
      spaces: the marginals' spaces whose samples it keeps in their space.
      uses_exponent: whether ``exponent`` matters (the config refuses one set in vain).
    """

    sample: Callable[..., jnp.ndarray]
    spaces: tuple[str, ...]
    uses_exponent: bool = False


def _normal(key, n, factor, exponent):
    del exponent
    return jax.random.normal(key, (n, factor.shape[0])) @ factor.T


def _laplace(key, n, factor, exponent):
    del exponent
    return jax.random.laplace(key, (n, factor.shape[0]))


def generalized_normal(key: jax.Array, shape: tuple[int, ...], p: float) -> jnp.ndarray:
    """Standard generalised normal samples of exponent ``p`` > 0: density
    ``p / (2 Gamma(1 / p)) exp(-|x|^p)`` (SciPy's ``gennorm(p)``; p = 1 the Laplace). JAX's
    ``jax.random.generalized_normal``, which draws as cl-ica's ``sample_generalized_normal``
    (a random sign times ``G^(1/p)``, ``G ~ Gamma(1 / p, 1)``), in the noise signature
    ``(key, shape, exponent)`` of :func:`_additive`."""
    return jax.random.generalized_normal(key, p, shape)


def _generalized_normal(key, n, factor, exponent):
    return generalized_normal(key, (n, factor.shape[0]), exponent)


def _box(key, n, factor, exponent):
    del exponent
    return jax.random.uniform(key, (n, factor.shape[0]), minval=BOX[0], maxval=BOX[1])


def _to_sphere(x: jnp.ndarray) -> jnp.ndarray:
    return x / jnp.linalg.norm(x, axis=-1, keepdims=True)


def _sphere(key, n, factor, exponent):
    del exponent
    # A standard normal vector divided by its norm is uniform on the sphere.
    return _to_sphere(jax.random.normal(key, (n, factor.shape[0])))


MARGINALS: dict[str, Marginal] = {
    "normal": Marginal(_normal, "real", uses_covariance=True),
    "laplace": Marginal(_laplace, "real", uses_covariance=False),
    "generalized_normal": Marginal(
        _generalized_normal, "real", uses_covariance=False, uses_exponent=True
    ),
    "box": Marginal(_box, "box", uses_covariance=False),
    "sphere": Marginal(_sphere, "sphere", uses_covariance=False),
}
"""``simulation.marginal`` -> its :class:`Marginal`: ``"normal"``, the paper's ``N(0, L L^T)``
(``L = I`` unless ``simulation.statistical``); ``"laplace"``, standard Laplace components;
``"generalized_normal"``, standard generalised normal components of exponent
``simulation.marginal_p`` (:func:`generalized_normal`); ``"box"``, uniform on
``[0, 1]^size``; ``"sphere"``, uniform on the unit sphere ``S^(size - 1)``."""


def _until_accepted(
    draw: Callable[[int], tuple[jnp.ndarray, jnp.ndarray]],
) -> jnp.ndarray:
    """The rejection loop of every sampler here: ``draw(r)`` gives round r's values and their
    acceptance (a mask broadcastable to them); each value is taken from the first round that
    accepts it. Rounds stop when all are accepted or after :data:`_MAX_ROUNDS`; values no
    round accepted are NaN (the run diverges instead of never ending)."""

    def body(carry):
        r, out, done = carry
        drawn, ok = draw(r)
        return r + 1, jnp.where(ok & ~done, drawn, out), done | ok

    out, done = draw(0)
    _, out, done = jax.lax.while_loop(
        lambda c: ~jnp.all(c[2]) & (c[0] < _MAX_ROUNDS), body, (1, out, done)
    )
    return jnp.where(done, out, jnp.nan)


def _mask(noise_key, mask_key, base, factor, p_change, scales, space, exponent):
    del space, exponent
    mask = jax.random.bernoulli(mask_key, p_change, base.shape)
    eps = jax.random.normal(noise_key, base.shape) @ factor.T
    return base + mask * (scales * eps)


def truncated_to_box(draw: Callable[[int], jnp.ndarray]) -> jnp.ndarray:
    """Component-wise rejection into :data:`BOX`: each component takes its value from the
    first round r whose ``draw(r)`` puts it inside the box (cl-ica's
    ``truncated_rejection_resampling``). For a conditional with independent components this
    is the conditional truncated to the box. Components no round of 1,024 puts inside are NaN
    (the run diverges; see :func:`projected_normal`)."""
    lo, hi = BOX

    def accepted(r):
        drawn = draw(r)
        return drawn, (drawn >= lo) & (drawn <= hi)

    return _until_accepted(accepted)


def _additive(noise: Callable[[jax.Array, tuple[int, ...], float], jnp.ndarray]) -> Callable:
    """The conditional ``base + scales * noise(key, shape, exponent)``: truncated to the box in
    the box space, projected back onto the sphere in the sphere space."""

    def sample(noise_key, mask_key, base, factor, p_change, scales, space, exponent):
        del mask_key, factor, p_change

        def draw(r):
            return base + scales * noise(jax.random.fold_in(noise_key, r), base.shape, exponent)

        if space == "box":
            return truncated_to_box(draw)
        return _to_sphere(draw(0)) if space == "sphere" else draw(0)

    return sample


def _without_exponent(noise: Callable[[jax.Array, tuple[int, ...]], jnp.ndarray]) -> Callable:
    return lambda key, shape, exponent: noise(key, shape)


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
        return chosen / chosen_norm, jnp.any(ok, axis=1, keepdims=True)

    return _until_accepted(draw)


def von_mises_fisher(key: jax.Array, mean: jnp.ndarray, kappa: jnp.ndarray) -> jnp.ndarray:
    """Samples of the von Mises-Fisher distribution ``p(x) ~ exp(kappa mean^T x)`` on the unit
    sphere, one around each row of ``mean`` ``(n, d)`` (unit vectors), by Wood's (1994)
    rejection sampler: the cosine ``w = mean^T x`` by rejection from a Beta proposal (rounds
    from ``fold_in(key, r)``, as :func:`projected_normal`), then a uniform direction
    orthogonal to the mean. ``kappa`` > 0 is a scalar. Returns ``(n, d)`` unit vectors."""
    n, d = mean.shape
    m = d - 1
    b = (-2 * kappa + jnp.sqrt(4 * kappa**2 + m**2)) / m
    x0 = (1 - b) / (1 + b)
    c = kappa * x0 + m * jnp.log(1 - x0**2)
    k_w, k_v = jax.random.split(key)

    def draw(r):
        k_beta, k_u = jax.random.split(jax.random.fold_in(k_w, r))
        z = jax.random.beta(k_beta, m / 2, m / 2, (n, _VMF_CANDIDATES))
        w = (1 - (1 + b) * z) / (1 - (1 - b) * z)
        u = jax.random.uniform(k_u, (n, _VMF_CANDIDATES))
        ok = kappa * w + m * jnp.log(1 - x0 * w) - c >= jnp.log(u)
        first = jnp.argmax(ok, axis=1)
        return jnp.take_along_axis(w, first[:, None], axis=1)[:, 0], jnp.any(ok, axis=1)

    w = _until_accepted(draw)
    v = jax.random.normal(k_v, (n, d))
    v = v - jnp.sum(v * mean, axis=-1, keepdims=True) * mean
    v = v / jnp.linalg.norm(v, axis=-1, keepdims=True)
    # A NaN cosine (no round accepted it) makes the sample NaN.
    return w[:, None] * mean + jnp.sqrt(jnp.maximum(1 - w**2, 0.0))[:, None] * v


def _vmf(noise_key, mask_key, base, factor, p_change, scales, space, exponent):
    del mask_key, factor, p_change, space, exponent
    # One scale for every component (the config checks it): kappa = 1 / scale^2, so a small
    # change scale is a concentrated conditional, as for the others.
    return von_mises_fisher(noise_key, base, 1.0 / scales[0] ** 2)


def _projected(noise_key, mask_key, base, factor, p_change, scales, space, exponent):
    del mask_key, factor, p_change, space, exponent
    return projected_normal(noise_key, base, scales)


_ANY_SPACE = ("real", "box", "sphere")

CONDITIONALS: dict[str, Conditional] = {
    "mask": Conditional(_mask, ("real",)),
    "normal": Conditional(_additive(_without_exponent(jax.random.normal)), _ANY_SPACE),
    "laplace": Conditional(_additive(_without_exponent(jax.random.laplace)), _ANY_SPACE),
    "generalized_normal": Conditional(
        _additive(generalized_normal), _ANY_SPACE, uses_exponent=True
    ),
    "projected_normal": Conditional(_projected, ("sphere",)),
    "vmf": Conditional(_vmf, ("sphere",)),
}
"""``simulation.conditional`` -> its :class:`Conditional`: ``"mask"`` (the paper's: each
component changes with probability ``p_change`` by ``scales * eps``, eps with the base's
covariance), ``"normal"``, ``"laplace"`` and ``"generalized_normal"`` (every component
changes by ``scales`` times standard normal, Laplace or generalised normal noise of exponent
``simulation.conditional_p``: cl-ica's conditionals, anisotropic with unequal scales; truncated
to the box by :func:`truncated_to_box` in the box space, projected onto the sphere in the
sphere space), ``"projected_normal"`` (on
the sphere: :func:`projected_normal`), ``"vmf"`` (on the sphere: :func:`von_mises_fisher` with
``kappa = 1 / scale^2``, one scale for all components; cl-ica's)."""
