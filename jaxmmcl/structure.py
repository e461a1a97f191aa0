"""The generative structure as data: latent factors, views, and what each view observes.

A :class:`Structure` is static and hashable. It names the latent *factors* (the variables the
evaluation scores), the *views* (modalities: one mechanism and one encoder each) and, per view,
the factors it observes in the order its mechanism takes them. A factor is either drawn from
its marginal (a *base* factor) or a *perturbed copy* of a base factor: equal to it, except that
each component changes, with probability ``p_change``, by noise with the base factor's
covariance. Every layer (latents, mechanisms, encoders, loss, evaluation, result rows, reports)
takes its factors and views from here, never from literal names.

Structures are built by name from the simulation config (:data:`STRUCTURES`, selected by
``simulation.structure``); a new one is one builder and one registry line:

* ``"paper"`` (Daunhawer et al.): content ``c``, style ``s`` and one modality-specific block
  ``m1 .. mK`` per view; view 1 sees ``(c, s, m1)``, view k > 1 sees ``(c, s_k, mk)`` with
  ``s_k`` a perturbed copy of ``s`` (named ``s_tilde`` for view 2, as in the paper). With
  ``n_m = 0`` and a shared mechanism it is the paper's multi-view setting.
* ``"pair"`` (Zimmermann et al., cl-ica; Rusak et al., AnInfoNCE): one latent vector ``z`` of
  ``n_z`` components and its perturbed copy ``z_tilde``; view 1 sees ``z``, view 2
  ``z_tilde``. Nothing is invariant: the positive pair differs in every component, as much as
  the conditional (``simulation.conditional``) and the change scales say.
* ``"subsets"`` (Yao et al., multiview-crl): one latent vector ``z`` of ``n`` components drawn
  jointly, view k observing the components ``simulation.views[k]`` (no perturbation): the
  factors shared by a subset of views are the components every view of it observes.

Causal dependence acts along :attr:`Structure.causal` edges (parent factor -> child factor);
the paper's is content -> style.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from jaxmmcl.errors import ConfigError

if TYPE_CHECKING:
    from jaxmmcl.config import SimulationConfig


ROLES = ("c", "c_perm", "s", "m", "z")
"""The roles factors play (:attr:`Factor.role`; ``c_perm``: permuted content, scored under
``eval.intervention``), the names reports use for a view's own factors."""


@dataclass(frozen=True)
class Factor:
    """One latent factor (a block of ``size`` components).

    Attributes:
      name: the factor's name (a result row's ``factor``).
      size: number of components (0: absent; it is neither drawn nor scored).
      role: what the factor is to the views that observe it, the report's label (``c``
        content, ``s`` style, ``m`` modality-specific, ``z`` a latent of the subsets
        structure); copies share their base factor's role.
      copy_of: for a perturbed copy, the base factor it copies; None for a base factor.
      discrete: whether its components are class indices (:mod:`jaxmmcl.latents`).
    """

    name: str
    size: int
    role: str
    copy_of: str | None = None
    discrete: bool = False


@dataclass(frozen=True)
class View:
    """One view (modality).

    Attributes:
      name: the view's encoding name in results (``h1``, ``h2``, ...).
      inputs: what its mechanism takes, in order: ``(factor, components)`` pairs, with
        ``components`` None for the whole factor or a tuple of component indices.
    """

    name: str
    inputs: tuple[tuple[str, tuple[int, ...] | None], ...]


@dataclass(frozen=True)
class Structure:
    """Factors, views and causal edges (see the module docstring).

    Attributes:
      factors: every latent factor, in the order they are drawn and scored.
      views: the views, in order.
      encodings: each view's default encoding size (``model.encoding_size: 0``).
      causal: ``(parent, child)`` factor pairs along which causal dependence acts.
    """

    factors: tuple[Factor, ...]
    views: tuple[View, ...]
    encodings: tuple[int, ...]
    causal: tuple[tuple[str, str], ...] = ()

    def default_encoding(self, view: int) -> int:
        """View ``view``'s default encoding size."""
        return self.encodings[view]

    def factor(self, name: str) -> Factor:
        """The factor called ``name``."""
        for f in self.factors:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def n_views(self) -> int:
        return len(self.views)

    def view_dim(self, view: int) -> int:
        """Input dimension of view ``view``'s mechanism (and of its encoder)."""
        return len(self.columns(view))

    def columns(self, view: int) -> tuple[tuple[str, int], ...]:
        """``(factor, component)`` of every input dimension of view ``view``, in order."""
        out = []
        for name, components in self.views[view].inputs:
            size = self.factor(name).size
            out += [(name, c) for c in (range(size) if components is None else components)]
        return tuple(out)

    def observes(self, view: int, factor: str) -> bool:
        """Whether view ``view`` observes (some components of) ``factor``."""
        return any(name == factor for name, _ in self.views[view].inputs)

    def scored(self) -> tuple[Factor, ...]:
        """The factors the evaluation scores: the non-empty ones, in order."""
        return tuple(f for f in self.factors if f.size > 0)

    def shared(self, views: tuple[int, ...]) -> tuple[tuple[str, int], ...]:
        """The ``(factor, component)`` pairs observed, unperturbed, by every view of ``views``,
        in the first view's input order: the content of that subset of views."""
        common = set(self.columns(views[0]))
        for v in views[1:]:
            common &= set(self.columns(v))
        return tuple(c for c in self.columns(views[0]) if c in common)

    def content_dims(self, subset: tuple[int, ...], view: int) -> tuple[int, ...]:
        """Positions, in view ``view``'s inputs, of the content of ``subset`` (in the order of
        :meth:`shared`): multiview-crl's known content indices."""
        columns = self.columns(view)
        return tuple(columns.index(c) for c in self.shared(subset))

    def subsets(self) -> tuple[tuple[int, ...], ...]:
        """Every subset of at least two views that shares some content, smallest first."""
        views = range(self.n_views)
        return tuple(
            s
            for r in range(2, self.n_views + 1)
            for s in itertools.combinations(views, r)
            if self.shared(s)
        )


def subset_label(subset: tuple[int, ...], structure: Structure) -> str:
    """A subset of views as text, ``"h1+h3"``."""
    return "+".join(structure.views[v].name for v in subset)


def paper(sim: SimulationConfig) -> Structure:
    """The paper's structure with ``simulation.n_views`` views (module docstring)."""
    k = sim.n_views
    copies = [f"s_tilde{'' if v == 1 else v + 1}" for v in range(1, k)]
    discrete = {"c": ("c",), "s": ("s", *copies), "m": tuple(f"m{v + 1}" for v in range(k))}
    chosen = set(discrete.get(sim.discrete, ()))
    factors = [
        Factor("c", sim.n_c, "c", discrete="c" in chosen),
        Factor("s", sim.n_s, "s", discrete="s" in chosen),
        *(Factor(name, sim.n_s, "s", copy_of="s", discrete=name in chosen) for name in copies),
        *(Factor(f"m{v + 1}", sim.n_m, "m", discrete=f"m{v + 1}" in chosen) for v in range(k)),
    ]
    styles = ["s", *copies]
    views = tuple(
        View(f"h{v + 1}", (("c", None), (styles[v], None), (f"m{v + 1}", None))) for v in range(k)
    )
    # The paper's encodings have the content's size.
    return Structure(tuple(factors), views, (sim.n_c,) * k, causal=(("c", "s"),))


def pair(sim: SimulationConfig) -> Structure:
    """cl-ica's and AnInfoNCE's structure: ``z`` and its copy ``z_tilde``, one view each."""
    factors = (Factor("z", sim.n_z, "z"), Factor("z_tilde", sim.n_z, "z", copy_of="z"))
    views = (View("h1", (("z", None),)), View("h2", (("z_tilde", None),)))
    return Structure(factors, views, (sim.n_z, sim.n_z))


def subsets(sim: SimulationConfig) -> Structure:
    """Yao et al.'s structure: one vector ``z``, view k observing ``simulation.views[k]``."""
    if not sim.views:
        raise ConfigError(
            "simulation.views: the subsets structure needs the components each view observes, "
            "e.g. [[0, 1, 2, 3, 4], [0, 1, 2, 4, 5]]"
        )
    n = 1 + max(max(v) for v in sim.views)
    views = tuple(View(f"h{k + 1}", (("z", tuple(v)),)) for k, v in enumerate(sim.views))
    # As multiview-crl: each encoding has its view's dimension.
    return Structure((Factor("z", n, "z"),), views, tuple(len(v) for v in sim.views))


STRUCTURES: dict[str, Callable[[SimulationConfig], Structure]] = {
    "paper": paper,
    "pair": pair,
    "subsets": subsets,
}
"""``simulation.structure`` -> the builder of its :class:`Structure`."""


@functools.cache
def structure_of(sim: SimulationConfig) -> Structure:
    """The structure a simulation config describes."""
    return STRUCTURES[sim.structure](sim)
