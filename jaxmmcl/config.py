"""Run configuration: static structure versus traced hyperparameters.

A run is described by a :class:`RunConfig`, which splits into

* :class:`StaticConfig` -- everything that fixes array shapes or program structure (block
  sizes, mechanism type, widths, batch size, number of steps, evaluation sizes). Runs with equal
  static configs form a *group* and share one compiled program.
* :class:`Hyperparams` -- floats that may differ between the runs of one group (style change
  probability, dependence settings, learning rate, temperature). They are traced and vmapped.
* ``seed`` -- the run's integer seed; every random draw of the run derives from it.

Users address every field by a dotted key (``simulation.n_c``, ``train.learning_rate``, ...);
:data:`TRACED_KEYS` lists the keys that are hyperparameters. :func:`run_config_from_dict` builds
a validated config from a nested or dotted mapping and raises :class:`ConfigError` naming the
offending key and value for bad input.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
from flax import struct

from jaxmmcl.encoders import INITS, NORMALIZATIONS
from jaxmmcl.errors import ConfigError
from jaxmmcl.evaluation.metrics import METRICS
from jaxmmcl.geometry import CONDITIONALS, MARGINALS
from jaxmmcl.latents import DEPENDENCES
from jaxmmcl.losses import LOSSES
from jaxmmcl.mechanisms import MECHANISMS
from jaxmmcl.structure import STRUCTURES, Structure, structure_of

DRAWS = ("jax", "official")
PRECISIONS = ("float32", "tf32x3", "tf32", "bfloat16")
SCHEDULES = ("constant", "cosine")
NONLINEAR_REGRESSORS = ("kernel_ridge", "mlp")
READOUTS = ("views", "subsets")
MCC_METHODS = ("pearson", "spearman")
DISCRETE_BLOCKS = ("none", "c", "s", "m")


def _fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _check_int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(key, value, f"an integer >= {minimum}")


def _check_float(key: str, value: Any, lo: float, hi: float, *, open_lo: bool = False) -> None:
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value > lo if open_lo else value >= lo) and value <= hi
    if not ok:
        bound = f"({lo}, {hi}]" if open_lo else f"[{lo}, {hi}]"
        _fail(key, value, f"a number in {bound}")


def _check_bool(key: str, value: Any) -> None:
    if not isinstance(value, bool):
        _fail(key, value, "true or false")


def _check_choice(key: str, value: Any, choices: Iterable[str]) -> None:
    if value not in choices:
        _fail(key, value, "one of " + ", ".join(choices))


@dataclass(frozen=True)
class SimulationConfig:
    """Shapes and mechanisms of the generative process (static).

    Attributes:
      n_c: content block size (shared by both modalities), >= 1.
      n_s: style block size, >= 0.
      n_m: size of each modality-specific block m1, m2, ..., >= 0.
      structure: which latent factors exist and which views observe them, by name in
        :data:`jaxmmcl.structure.STRUCTURES`: ``"paper"`` (c, s, perturbed copies of s, one
        m per view, from n_c, n_s, n_m and n_views), ``"pair"`` (a vector z of n_z components
        and its perturbed copy, one view each) or ``"subsets"`` (one latent vector, each
        view observing the components ``views`` lists).
      n_z: the size of the pair structure's z, >= 1.
      marginal: the distribution of every base factor, by name in
        :data:`jaxmmcl.geometry.MARGINALS`: ``"normal"`` (the paper's), ``"laplace"``,
        ``"generalized_normal"``, ``"box"`` (uniform on [0, 1]^n) or ``"sphere"`` (uniform on
        the unit sphere); all but the first exclude ``simulation.statistical``.
      marginal_p: the exponent p > 0 of the ``generalized_normal`` marginal (density
        proportional to ``exp(-|x|^p)``; cl-ica's ``--m-p``); refused with another marginal.
      conditional: the distribution of a perturbed copy given its base, by name in
        :data:`jaxmmcl.geometry.CONDITIONALS`: ``"mask"`` (the paper's; real space only),
        ``"normal"``, ``"laplace"``, ``"generalized_normal"`` (any space: truncated to the box,
        projected onto the sphere), ``"projected_normal"`` or ``"vmf"`` (the sphere's).
      conditional_p: the exponent p > 0 of the ``generalized_normal`` conditional (cl-ica's
        ``--c-p``); refused with another conditional.
      n_views: number of views of the paper's structure, >= 2.
      views: for the subsets structure, the latent components each view observes (a list of
        lists of indices; at least two views).
      mixing: mechanism family, by name in :data:`jaxmmcl.mechanisms.MECHANISMS` (``"mlp"``,
        the paper's invertible LeakyReLU MLP; ``"linear"``; ``"elu"``; ``"smooth_leaky_relu"``;
        ``"softplus"``; ``"drop"``, a non-invertible control).
      mixing_layers: number of square linear maps in each mechanism, >= 1.
      shared_mixing: ``True`` for the multi-view setting f1 = f2 (one draw used by every view;
        the views must have equal dimensions).
      discrete: which block is discrete: ``"none"``, ``"c"`` (content), ``"s"`` (style s and
        s_tilde) or ``"m"`` (both m1 and m2). Each component of a discrete block is a class
        index drawn uniformly from ``{0, ..., n_classes - 1}``, coded as a standardised value
        (zero mean, unit variance) before mixing; see :mod:`jaxmmcl.latents`. A discrete block
        must be non-empty, and it excludes statistical dependence (any block) and, for a
        discrete style, causal dependence (checked by :class:`RunConfig`).
      n_classes: classes per discrete component, >= 2; unused when ``discrete`` is ``"none"``.
      causal: how a causal child depends on its parent (``simulation.causal_strength`` != 0),
        by name in :data:`jaxmmcl.latents.DEPENDENCES`: ``"linear"`` (the paper's s = s0 +
        B c + a) or ``"mlp"`` (s = s0 + strength * W2 tanh(W1 c) + a).
      draws: where the per-simulation parameters (covariances, mechanisms, B and a) come from:
        ``"jax"`` (the default) draws them from the run's key; ``"official"`` draws those of
        the official ``main_mlp.py --seed SEED`` with its own generators (SciPy, NumPy's
        global state, a ``torch.Generator``), so that a run and an official run of the same
        seed see the same simulation (:mod:`jaxmmcl.official`). Needs ``mixing: mlp``,
        ``discrete: none`` and, for causal dependence, PyTorch.
      n_train: the size of the run's training set: ``0`` (the default, as the paper's code)
        draws fresh pairs at every step; N > 0 draws a fixed set of N pairs once, from the
        run's seed, and trains on it in shuffled epochs of ``N // (2 * train.batch_size)``
        steps (each step's pairs and its independent batch of negatives come from the set;
        see :mod:`jaxmmcl.training`). Needs N >= 2 * ``train.batch_size``. The evaluation and
        the validation loss always draw fresh samples, so they measure generalisation.
    """

    n_c: int = 5
    n_s: int = 5
    n_m: int = 5
    structure: str = "paper"
    n_z: int = 10
    marginal: str = "normal"
    marginal_p: float = 2.0
    conditional: str = "mask"
    conditional_p: float = 2.0
    n_views: int = 2
    views: tuple[tuple[int, ...], ...] = ()
    mixing: str = "mlp"
    mixing_layers: int = 3
    shared_mixing: bool = False
    discrete: str = "none"
    n_classes: int = 5
    causal: str = "linear"
    draws: str = "jax"
    n_train: int = 0

    def __post_init__(self):
        _check_int("simulation.n_c", self.n_c, 1)
        _check_int("simulation.n_s", self.n_s, 0)
        _check_int("simulation.n_m", self.n_m, 0)
        _check_choice("simulation.structure", self.structure, STRUCTURES)
        _check_int("simulation.n_z", self.n_z, 1)
        _check_choice("simulation.marginal", self.marginal, MARGINALS)
        _check_choice("simulation.conditional", self.conditional, CONDITIONALS)
        space = MARGINALS[self.marginal].space
        if space not in CONDITIONALS[self.conditional].spaces:
            _fail(
                "simulation.conditional",
                self.conditional,
                "one that keeps samples of simulation.marginal "
                f"{self.marginal!r} in their space: "
                + ", ".join(n for n, c in CONDITIONALS.items() if space in c.spaces),
            )
        for key, value, plugin in (
            ("simulation.marginal_p", self.marginal_p, MARGINALS[self.marginal]),
            ("simulation.conditional_p", self.conditional_p, CONDITIONALS[self.conditional]),
        ):
            _check_float(key, value, 0.0, 1e3, open_lo=True)
            if value != 2.0 and not plugin.uses_exponent:
                _fail(key, value, "2 (the default) unless its distribution is generalized_normal")
        _check_int("simulation.n_views", self.n_views, 2)
        self._check_views()
        _check_choice("simulation.mixing", self.mixing, MECHANISMS)
        _check_int("simulation.mixing_layers", self.mixing_layers, 1)
        _check_bool("simulation.shared_mixing", self.shared_mixing)
        _check_choice("simulation.discrete", self.discrete, DISCRETE_BLOCKS)
        _check_int("simulation.n_classes", self.n_classes, 2)
        _check_choice("simulation.causal", self.causal, DEPENDENCES)
        _check_choice("simulation.draws", self.draws, DRAWS)
        _check_int("simulation.n_train", self.n_train, 0)
        if self.draws == "official":
            for key, value, needed in (
                ("simulation.mixing", self.mixing, "mlp"),
                ("simulation.discrete", self.discrete, "none"),
                ("simulation.structure", self.structure, "paper"),
                ("simulation.n_views", self.n_views, 2),
                ("simulation.causal", self.causal, "linear"),
                ("simulation.marginal", self.marginal, "normal"),
                ("simulation.conditional", self.conditional, "mask"),
            ):
                if value != needed:
                    _fail(key, value, f"{needed!r} with simulation.draws = 'official'")
        if self.structure != "paper" and self.discrete != "none":
            _fail("simulation.discrete", self.discrete, "'none' unless structure is 'paper'")
        if self.discrete != "none" and (self.marginal, self.conditional) != ("normal", "mask"):
            _fail(
                "simulation.discrete",
                self.discrete,
                "'none' unless simulation.marginal is 'normal' and simulation.conditional 'mask'",
            )
        size = {"c": self.n_c, "s": self.n_s, "m": self.n_m}.get(self.discrete)
        if size == 0:
            _fail(
                "simulation.discrete",
                self.discrete,
                f"a block of size >= 1 (n_{self.discrete} is 0)",
            )

    def _check_views(self) -> None:
        views = self.views
        if isinstance(views, list | tuple):
            views = tuple(tuple(v) if isinstance(v, list | tuple) else v for v in views)
            object.__setattr__(self, "views", views)
        ok = isinstance(views, tuple) and all(
            isinstance(v, tuple)
            and v
            and len(set(v)) == len(v)
            and all(isinstance(i, int) and not isinstance(i, bool) and i >= 0 for i in v)
            for v in views
        )
        if not ok:
            _fail("simulation.views", views, "a list of non-empty lists of distinct indices >= 0")
        if self.structure == "subsets" and len(views) < 2:
            _fail("simulation.views", list(map(list, views)), "at least two views")
        if self.structure != "subsets" and views:
            _fail("simulation.views", list(map(list, views)), "[] unless structure is 'subsets'")


@dataclass(frozen=True)
class ModelConfig:
    """Encoder architecture (static).

    Attributes:
      widths: hidden layer widths, or ``"paper"`` for (10d, 50d, 50d, 50d, 50d, 10d).
      encoding_size: output size; 0 means n_c (the paper's default).
      shared_encoder: one encoder for both modalities (g1 = g2).
      init: the encoders' initialisation: ``"torch"`` (PyTorch's ``nn.Linear`` default, as the
        official encoders; the default) or ``"lecun"`` (Flax's ``nn.Dense`` default: LeCun-normal
        weights, zero biases); see :mod:`jaxmmcl.encoders`.
      normalize: the encoder's output normalisation, by name in
        :data:`jaxmmcl.encoders.NORMALIZATIONS`: ``"none"`` (the paper's), ``"sphere"``
        (every encoding divided by its L2 norm: cl-ica's and AnInfoNCE's fixed sphere),
        ``"box"`` (a sigmoid per component), ``"learnable_sphere"`` or ``"learnable_box"``
        (cl-ica's, with a trained radius or per-component bound), in training and evaluation
        alike.
    """

    widths: tuple[int, ...] | str = "paper"
    encoding_size: int = 0
    shared_encoder: bool = False
    init: str = "torch"
    normalize: str = "none"

    def __post_init__(self):
        if isinstance(self.widths, list | tuple):
            object.__setattr__(self, "widths", tuple(self.widths))
            for w in self.widths:
                _check_int("model.widths", w, 1)
            if not self.widths:
                _fail("model.widths", self.widths, "a non-empty list of widths or 'paper'")
        elif self.widths != "paper":
            _fail("model.widths", self.widths, "a list of positive integers or 'paper'")
        _check_int("model.encoding_size", self.encoding_size, 0)
        _check_bool("model.shared_encoder", self.shared_encoder)
        _check_choice("model.init", self.init, INITS)
        _check_choice("model.normalize", self.normalize, NORMALIZATIONS)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation loop structure (static).

    Attributes:
      batch_size: pairs per step; each step also draws an independent batch of negatives.
      steps: number of optimiser steps.
      loss: the contrastive loss, by name in :data:`jaxmmcl.losses.LOSSES`: ``"infonce"``
        (the paper's), ``"lp_infonce"`` (cl-ica's, the distance ``||a - b||_p^p``),
        ``"aninfonce"`` (Rusak et al.'s, a learned diagonal precision in the
        distance; needs every encoding of one size), ``"ntxent"`` (cosine similarities),
        ``"subsets_ntxent"`` (multiview-crl's multimodal loss: NT-Xent of the views of every
        subset on its chunk of the encodings; needs a chunk per subset) or ``"subsets"``
        (multiview-crl's, over subsets of views; needs encodings of their views' sizes).
      loss_p: the exponent p > 0 of ``lp_infonce`` (cl-ica's ``--p``: 1 matches a Laplace
        conditional, 2 a normal one); refused with another loss.
      clip_norm: global L2 norm the gradients are clipped to.
      schedule: learning-rate schedule multiplier: ``"constant"`` or ``"cosine"`` (decay to 0).
      warmup_steps: linear warm-up steps before the schedule.
      log_every: steps per compiled chunk; loss is recorded and progress shown per chunk.
      precision: how the training step's float32 matrix products (encoders and loss) are
        computed: ``"float32"`` (the default: full float32, as the official PyTorch code),
        ``"tf32x3"`` (XLA's three-pass TF32 algorithm, about float32's accuracy on tensor
        cores), ``"tf32"`` (one TF32 pass: XLA's default for float32 on NVIDIA GPUs) or
        ``"bfloat16"`` (bfloat16 inputs, float32 accumulation). The TF32 choices need a GPU.
        See :mod:`jaxmmcl.precision`; evaluation always computes in float32 or float64.
    """

    batch_size: int = 6144
    steps: int = 300_000
    loss: str = "infonce"
    loss_p: float = 2.0
    clip_norm: float = 2.0
    schedule: str = "constant"
    warmup_steps: int = 0
    log_every: int = 1000
    precision: str = "float32"

    def __post_init__(self):
        _check_int("train.batch_size", self.batch_size, 2)
        _check_int("train.steps", self.steps, 1)
        _check_choice("train.loss", self.loss, LOSSES)
        _check_float("train.loss_p", self.loss_p, 0.0, 1e3, open_lo=True)
        if self.loss_p != 2.0 and not LOSSES[self.loss].uses_exponent:
            _fail("train.loss_p", self.loss_p, "2 (the default) unless train.loss is lp_infonce")
        _check_float("train.clip_norm", self.clip_norm, 0.0, math.inf, open_lo=True)
        _check_choice("train.schedule", self.schedule, SCHEDULES)
        _check_int("train.warmup_steps", self.warmup_steps, 0)
        _check_int("train.log_every", self.log_every, 1)
        _check_choice("train.precision", self.precision, PRECISIONS)


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation protocol sizes (static).

    Attributes:
      n_fit: fresh samples the regressors are fitted on (paper: 20,480).
      n_test: fresh held-out samples R^2 is scored on (paper: 20,480).
      nonlinear: ``"kernel_ridge"`` (the paper's cross-validated RBF kernel ridge) or ``"mlp"``
        (the official code's lighter option, scikit-learn's ``MLPRegressor(max_iter=1000)``,
        one per block). Discrete blocks are also scored by accuracy, always with logistic
        regression and an MLP classifier.
      mlp_epochs: the most epochs of the MLP regressor and of the MLP classifier
        (scikit-learn's ``max_iter``; the official evaluation sets 1000; both stop earlier when
        their loss stalls).
      intervention: the official permuted-content test: both evaluation sets are drawn with
        the content permuted across the set, by one permutation, in both modalities before
        mixing; the permuted content c' is scored as the extra block ``c_perm`` beside the
        original c (see :mod:`jaxmmcl.evaluation.protocol`).
      val_batches, val_batch_size: the validation loss is the mean loss of this many fresh
        batches of this many pairs (each with as many independent negatives); the official
        code's 5 batches of 4096 by default, at every scale.
      metrics: the scores of every factor, by name in
        :data:`jaxmmcl.evaluation.metrics.METRICS`: ``r2_linear``, ``r2_nonlinear``,
        ``accuracy`` (added by itself when a factor is discrete), ``mcc``.
      mcc: ``pearson`` or ``spearman`` correlations for ``mcc``.
      per_latent: also score every component of every factor alone (result rows with a
        ``latent``), as multiview-crl's ``--evaluate_individual_latents``: R^2 metrics only.
      readout: what is scored: ``views`` (each view's whole encoding) or ``subsets`` (for every
        subset of views sharing content and every view in it, the encoding's dimensions at the
        positions of that content; needs encodings of their views' sizes).
    """

    n_fit: int = 20_480
    n_test: int = 20_480
    nonlinear: str = "kernel_ridge"
    mlp_epochs: int = 1000
    intervention: bool = False
    val_batches: int = 5
    val_batch_size: int = 4096
    metrics: tuple[str, ...] = ("r2_linear", "r2_nonlinear")
    mcc: str = "pearson"
    per_latent: bool = False
    readout: str = "views"

    def __post_init__(self):
        _check_int("eval.n_fit", self.n_fit, 6)
        _check_int("eval.n_test", self.n_test, 2)
        _check_choice("eval.nonlinear", self.nonlinear, NONLINEAR_REGRESSORS)
        _check_int("eval.mlp_epochs", self.mlp_epochs, 1)
        _check_bool("eval.intervention", self.intervention)
        _check_int("eval.val_batches", self.val_batches, 1)
        _check_int("eval.val_batch_size", self.val_batch_size, 2)
        metrics = self.metrics
        if isinstance(metrics, str):
            metrics = (metrics,)
        if not isinstance(metrics, list | tuple) or not metrics:
            _fail("eval.metrics", metrics, "a non-empty list of " + ", ".join(METRICS))
        for name in metrics:
            _check_choice("eval.metrics", name, METRICS)
        if len(set(metrics)) < len(metrics):
            _fail("eval.metrics", list(metrics), "distinct names")
        object.__setattr__(self, "metrics", tuple(metrics))
        _check_choice("eval.mcc", self.mcc, MCC_METHODS)
        _check_bool("eval.per_latent", self.per_latent)
        _check_choice("eval.readout", self.readout, READOUTS)


@dataclass(frozen=True)
class StaticConfig:
    """Everything that fixes a compiled program. Hashable: runs are grouped by it."""

    simulation: SimulationConfig = field(default_factory=SimulationConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        if self.train.warmup_steps >= self.train.steps:
            _fail("train.warmup_steps", self.train.warmup_steps, "fewer than train.steps")
        if 0 < self.simulation.n_train < 2 * self.train.batch_size:
            _fail(
                "simulation.n_train",
                self.simulation.n_train,
                f"0 or at least 2 x train.batch_size = {2 * self.train.batch_size} (each step "
                "takes its pairs and their negatives from the set)",
            )
        structure = self.structure
        dims = {structure.view_dim(v) for v in range(structure.n_views)}
        if self.simulation.shared_mixing and len(dims) > 1:
            _fail("simulation.shared_mixing", True, "false: the views differ in dimension")
        if self.model.shared_encoder and len(dims) > 1:
            _fail("model.shared_encoder", True, "false: the views differ in dimension")
        if 0 in dims:
            _fail("simulation", "a view observing nothing", "every view to observe a factor")
        sizes = {self.encoding_size(v) for v in range(structure.n_views)}
        if LOSSES[self.train.loss].needs_equal_encodings and len(sizes) > 1:
            _fail(
                "train.loss",
                self.train.loss,
                f"a loss that takes encodings of different sizes (they are {sorted(sizes)})",
            )
        smallest = LOSSES[self.train.loss].min_encoding_size(structure.n_views)
        if min(sizes) < smallest:
            _fail(
                "model.encoding_size",
                self.model.encoding_size,
                f"encodings of at least {smallest} dimensions with train.loss "
                f"{self.train.loss!r} and {structure.n_views} views (they are {sorted(sizes)})",
            )
        if LOSSES[self.train.loss].needs_view_sized_encodings or self.eval.readout == "subsets":
            for v in range(structure.n_views):
                if self.encoding_size(v) != structure.view_dim(v):
                    _fail(
                        "model.encoding_size",
                        self.model.encoding_size,
                        f"0 with train.loss {self.train.loss!r} or eval.readout 'subsets' "
                        f"(view {v + 1} has "
                        f"{structure.view_dim(v)} inputs, so its encoding must too)",
                    )

    @property
    def structure(self) -> Structure:
        """The generative structure (:mod:`jaxmmcl.structure`)."""
        return structure_of(self.simulation)

    def view_dim(self, view: int = 0) -> int:
        """Input dimension of view ``view``'s mechanism and encoder."""
        return self.structure.view_dim(view)

    def widths(self, view: int = 0) -> tuple[int, ...]:
        """Resolved hidden widths of view ``view``'s encoder (``paper``: multiples of its
        input dimension d, 10d, 50d, 50d, 50d, 50d, 10d)."""
        if self.model.widths == "paper":
            d = self.view_dim(view)
            return (10 * d, 50 * d, 50 * d, 50 * d, 50 * d, 10 * d)
        return self.model.widths

    def encoding_size(self, view: int = 0) -> int:
        """Resolved output size of view ``view``'s encoder: ``model.encoding_size``, or by
        default the structure's (:meth:`jaxmmcl.structure.Structure.default_encoding`)."""
        return self.model.encoding_size or self.structure.default_encoding(view)


def _traced(key: str, default: float | bool, check: Callable[[str, Any], None]) -> Any:
    """A traced hyperparameter: its user key, default and check, declared in one place."""
    return struct.field(pytree_node=True, default=default, metadata={"key": key, "check": check})


def _unit(key: str, value: Any) -> None:
    _check_float(key, value, 0.0, 1.0)


def _signed(key: str, value: Any) -> None:
    _check_float(key, value, -1e6, 1e6)


def _scales(key: str, value: Any) -> None:
    ok = isinstance(value, tuple) and all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) and v >= 0
        for v in value
    )
    if not ok:
        _fail(key, list(value) if isinstance(value, tuple) else value, "a list of numbers >= 0")


def _positive(limit: float) -> Callable[[str, Any], None]:
    def check(key: str, value: Any) -> None:
        _check_float(key, value, 0.0, limit, open_lo=True)

    return check


@struct.dataclass
class Hyperparams:
    """Traced hyperparameters: runs that differ only in them share one compiled program.

    Each field is declared once, here, with its user key (``TRACED_KEYS`` and the sweep files
    use it) and its check. A run holds Python scalars (checked when built); stacked by
    :func:`stack_hyperparams` the same class holds float32 arrays with a leading run axis
    (:data:`HyperArrays`), which is the pytree the compiled programs trace.

    Attributes:
      p_change: probability that each component of a perturbed copy (the paper's style)
        changes between the views.
      statistical: draw each factor's covariance from a Wishart distribution instead of I
        (one draw per factor size, shared by the factors of that size; see
        :mod:`jaxmmcl.latents`).
      causal_strength: strength of the causal dependence of a child factor on its parent (the
        paper's s = s0 + strength * B c + a); 0 switches it off (a is then dropped too).
      change_scales: the standard deviation of each component's change in a perturbed copy
        (:mod:`jaxmmcl.geometry`; the vMF's concentration is ``1 / scale^2``): one number per
        component of the copied factor, one number for every component, or ``[]`` (the
        default) for all ones. With ``conditional: mask`` it scales the paper's eps;
        unequal scales are AnInfoNCE's anisotropic changes. A vector: stacked ``(R, size)``.
      learning_rate: Adam step size.
      loss_learning_rate: Adam step size of the loss's own parameters (AnInfoNCE's precision;
        the official ``--lr-lambda``).
      temperature: the contrastive loss's temperature tau.
    """

    p_change: Any = _traced("simulation.p_change", 1.0, _unit)
    statistical: Any = _traced("simulation.statistical", False, _check_bool)
    causal_strength: Any = _traced("simulation.causal_strength", 0.0, _signed)
    change_scales: Any = _traced("simulation.change_scales", (), _scales)
    learning_rate: Any = _traced("train.learning_rate", 1e-4, _positive(10.0))
    loss_learning_rate: Any = _traced("train.loss_learning_rate", 1e-3, _positive(10.0))
    temperature: Any = _traced("train.temperature", 1.0, _positive(1e6))

    def __post_init__(self):
        if isinstance(self.change_scales, list):
            object.__setattr__(self, "change_scales", tuple(self.change_scales))
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            # Arrays (stacked runs, or tracers when a program rebuilds the pytree) were checked
            # as the values they were stacked from.
            if isinstance(value, bool | int | float | str | tuple) or value is None:
                f.metadata["check"](f.metadata["key"], value)


HyperArrays = Hyperparams
""":class:`Hyperparams` holding float32 arrays (leading axis = runs when stacked)."""


def stack_hyperparams(hypers: list[Hyperparams]) -> HyperArrays:
    """Stacks per-run hyperparameters into float32 arrays of shape ``(len(hypers),)``, and
    ``change_scales`` into ``(len(hypers), size)``: ``[]`` becomes ones and ``[x]`` x in every
    component; ``(R, 1)`` when no run gives more than one number."""
    size = max([len(h.change_scales) for h in hypers] + [1])
    scales = [
        (h.change_scales[0],) * size if len(h.change_scales) == 1 else h.change_scales
        for h in hypers
    ]
    scales = [v or (1.0,) * size for v in scales]
    if any(len(v) != size for v in scales):
        _fail("simulation.change_scales", [list(v) for v in scales], "equal lengths in a group")
    values = {
        f.name: [float(getattr(h, f.name)) for h in hypers]
        for f in dataclasses.fields(Hyperparams)
        if f.name != "change_scales"
    }
    return Hyperparams(
        **{k: jnp.asarray(v, jnp.float32) for k, v in values.items()},
        change_scales=jnp.asarray(scales, jnp.float32),
    )


TRACED_KEYS: dict[str, str] = {f.metadata["key"]: f.name for f in dataclasses.fields(Hyperparams)}
"""Dotted user key -> :class:`Hyperparams` field, for the traced (vmapped) keys."""

_SECTIONS: dict[str, type] = {
    "simulation": SimulationConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class RunConfig:
    """One run: static structure, traced hyperparameters and seed.

    Checks the combinations of static keys and hyperparameters that make no sense: a discrete
    block (``simulation.discrete``) rules out ``simulation.statistical`` (Wishart covariances
    are defined for continuous blocks, and they are switched on for all blocks at once), and a
    discrete style rules out ``simulation.causal_strength != 0`` (s = s0 + B c + a would not be
    a class). A discrete content may cause a continuous style: B acts on its coded values.
    A marginal without a covariance (``simulation.marginal: sphere``) rules out
    ``simulation.statistical``, one outside the real space ``simulation.causal_strength != 0``,
    and ``simulation.change_scales`` has one number per component
    of the perturbed copies (or none).
    """

    static: StaticConfig = field(default_factory=StaticConfig)
    hyper: Hyperparams = field(default_factory=Hyperparams)
    seed: int = 0

    def __post_init__(self):
        _check_int("seed", self.seed, 0)
        discrete = self.static.simulation.discrete
        if discrete != "none" and self.hyper.statistical:
            _fail(
                "simulation.statistical",
                self.hyper.statistical,
                f"false with simulation.discrete = {discrete!r}",
            )
        if discrete == "s" and self.hyper.causal_strength != 0:
            _fail(
                "simulation.causal_strength",
                self.hyper.causal_strength,
                "0 with simulation.discrete = 's'",
            )
        sim = self.static.simulation
        if self.hyper.causal_strength != 0 and MARGINALS[sim.marginal].space != "real":
            _fail(
                "simulation.causal_strength",
                self.hyper.causal_strength,
                f"0 with simulation.marginal = {sim.marginal!r} (B c + a would leave its space)",
            )
        if self.hyper.statistical and not MARGINALS[sim.marginal].uses_covariance:
            _fail(
                "simulation.statistical",
                self.hyper.statistical,
                f"false with simulation.marginal = {sim.marginal!r}",
            )
        scales = self.hyper.change_scales
        sizes = {f.size for f in self.static.structure.factors if f.copy_of is not None}
        if len(scales) > 1 and (len(sizes) != 1 or len(scales) not in sizes):
            _fail(
                "simulation.change_scales",
                list(scales),
                "[], one number for every component, or one per component of the perturbed "
                f"copies (sizes {sorted(sizes) or 'none: the structure has no copies'})",
            )
        if sim.conditional == "vmf" and len(set(scales)) > 1:
            _fail("simulation.change_scales", list(scales), "one scale with conditional 'vmf'")
        if 0 in scales and sim.conditional == "vmf":
            _fail("simulation.change_scales", list(scales), "a scale > 0 with conditional 'vmf'")

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-Python mapping with every key; the inverse of run_config_from_dict."""
        out: dict[str, Any] = {}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self.static, section))
            out[section] = {k: plain(v) for k, v in values.items()}
        for key, name in TRACED_KEYS.items():
            section, leaf = key.split(".")
            out[section][leaf] = plain(getattr(self.hyper, name))
        out["seed"] = self.seed
        return out

    def flat(self) -> dict[str, Any]:
        """The config as a flat mapping of dotted keys."""
        return flatten(self.to_dict())


def plain(value: Any) -> Any:
    """Tuples (nested too) as lists, as YAML and the config files write them."""
    return [plain(v) for v in value] if isinstance(value, tuple) else value


def all_keys() -> list[str]:
    """Every valid dotted key."""
    return dotted_keys(_SECTIONS, TRACED_KEYS)


def dotted_keys(sections: Mapping[str, type], traced: Mapping[str, str]) -> list[str]:
    """Every valid dotted key of a run config: each section's dataclass fields, the traced
    keys and ``seed``."""
    keys = [f"{s}.{f.name}" for s, cls in sections.items() for f in dataclasses.fields(cls)]
    return [*keys, *traced, "seed"]


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flattens nested mappings into dotted keys (``{"a": {"b": 1}} -> {"a.b": 1}``)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def run_config_from_dict(values: Mapping[str, Any]) -> RunConfig:
    """Builds a validated :class:`RunConfig` from a nested or dotted mapping.

    Missing keys take their defaults (the paper's values). Raises :class:`ConfigError` for
    unknown keys or invalid values, naming the key and the value.
    """
    flat = flatten(values)
    sections, hyper = split_keys(flat, _SECTIONS, TRACED_KEYS)
    static = StaticConfig(**{s: cls(**sections[s]) for s, cls in _SECTIONS.items()})
    return RunConfig(static=static, hyper=Hyperparams(**hyper), seed=flat.get("seed", 0))


def split_keys(
    flat: Mapping[str, Any], sections: Mapping[str, type], traced: Mapping[str, str]
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """Sorts dotted keys into the fields of each section's dataclass and the traced fields
    (``traced``: key -> field); ``seed`` is left out. Raises :class:`ConfigError` for a key
    that is none of them, naming the valid ones."""
    valid = set(dotted_keys(sections, traced))
    out: dict[str, dict[str, Any]] = {s: {} for s in sections}
    hyper: dict[str, Any] = {}
    for key, value in flat.items():
        if key not in valid:
            raise ConfigError(f"{key}: unknown key (valid keys: {', '.join(sorted(valid))})")
        if key in traced:
            hyper[traced[key]] = value
        elif key != "seed":
            section, leaf = key.split(".")
            out[section][leaf] = value
    return out, hyper
