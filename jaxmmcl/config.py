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
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import jax.numpy as jnp
from flax import struct

MIXING_TYPES = ("mlp", "linear")
DRAWS = ("jax", "official")
INITS = ("torch", "lecun")
PRECISIONS = ("float32", "tf32x3", "tf32", "bfloat16")
SCHEDULES = ("constant", "cosine")
NONLINEAR_REGRESSORS = ("kernel_ridge", "mlp")
DISCRETE_BLOCKS = ("none", "c", "s", "m")


class ConfigError(ValueError):
    """Invalid user input. The message names the offending key and value."""


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


def _check_choice(key: str, value: Any, choices: tuple[str, ...]) -> None:
    if value not in choices:
        _fail(key, value, "one of " + ", ".join(choices))


@dataclass(frozen=True)
class SimulationConfig:
    """Shapes and mechanisms of the generative process (static).

    Attributes:
      n_c: content block size (shared by both modalities), >= 1.
      n_s: style block size, >= 0.
      n_m: size of each modality-specific block m1, m2, >= 0.
      mixing: mechanism family: ``"mlp"`` (the paper's invertible LeakyReLU MLP) or
        ``"linear"`` (a product of well-conditioned square matrices, also invertible).
      mixing_layers: number of square linear maps in each mechanism, >= 1.
      shared_mixing: ``True`` for the multi-view setting f1 = f2 (one draw used for both).
      discrete: which block is discrete: ``"none"``, ``"c"`` (content), ``"s"`` (style s and
        s_tilde) or ``"m"`` (both m1 and m2). Each component of a discrete block is a class
        index drawn uniformly from ``{0, ..., n_classes - 1}``, coded as a standardised value
        (zero mean, unit variance) before mixing; see :mod:`jaxmmcl.latents`. A discrete block
        must be non-empty, and it excludes statistical dependence (any block) and, for a
        discrete style, causal dependence (checked by :class:`RunConfig`).
      n_classes: classes per discrete component, >= 2; unused when ``discrete`` is ``"none"``.
      draws: where the per-simulation parameters (covariances, mechanisms, B and a) come from:
        ``"jax"`` (the default) draws them from the run's key; ``"official"`` draws those of
        the official ``main_mlp.py --seed SEED`` with its own generators (SciPy, NumPy's
        global state, a ``torch.Generator``), so that a run and an official run of the same
        seed see the same simulation (:mod:`jaxmmcl.official`). Needs ``mixing: mlp``,
        ``discrete: none`` and, for causal dependence, PyTorch.
    """

    n_c: int = 5
    n_s: int = 5
    n_m: int = 5
    mixing: str = "mlp"
    mixing_layers: int = 3
    shared_mixing: bool = False
    discrete: str = "none"
    n_classes: int = 5
    draws: str = "jax"

    def __post_init__(self):
        _check_int("simulation.n_c", self.n_c, 1)
        _check_int("simulation.n_s", self.n_s, 0)
        _check_int("simulation.n_m", self.n_m, 0)
        _check_choice("simulation.mixing", self.mixing, MIXING_TYPES)
        _check_int("simulation.mixing_layers", self.mixing_layers, 1)
        _check_bool("simulation.shared_mixing", self.shared_mixing)
        _check_choice("simulation.discrete", self.discrete, DISCRETE_BLOCKS)
        _check_int("simulation.n_classes", self.n_classes, 2)
        _check_choice("simulation.draws", self.draws, DRAWS)
        if self.draws == "official":
            for key, value, needed in (
                ("simulation.mixing", self.mixing, "mlp"),
                ("simulation.discrete", self.discrete, "none"),
            ):
                if value != needed:
                    _fail(key, value, f"{needed!r} with simulation.draws = 'official'")
        size = {"c": self.n_c, "s": self.n_s, "m": self.n_m}.get(self.discrete)
        if size == 0:
            _fail(
                "simulation.discrete",
                self.discrete,
                f"a block of size >= 1 (n_{self.discrete} is 0)",
            )

    @property
    def dim(self) -> int:
        """Observation dimension d = n_c + n_s + n_m of each modality."""
        return self.n_c + self.n_s + self.n_m


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
    """

    widths: tuple[int, ...] | str = "paper"
    encoding_size: int = 0
    shared_encoder: bool = False
    init: str = "torch"

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


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation loop structure (static).

    Attributes:
      batch_size: pairs per step; each step also draws an independent batch of negatives.
      steps: number of optimiser steps.
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
    clip_norm: float = 2.0
    schedule: str = "constant"
    warmup_steps: int = 0
    log_every: int = 1000
    precision: str = "float32"

    def __post_init__(self):
        _check_int("train.batch_size", self.batch_size, 2)
        _check_int("train.steps", self.steps, 1)
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
    """

    n_fit: int = 20_480
    n_test: int = 20_480
    nonlinear: str = "kernel_ridge"
    mlp_epochs: int = 1000
    intervention: bool = False
    val_batches: int = 5
    val_batch_size: int = 4096

    def __post_init__(self):
        _check_int("eval.n_fit", self.n_fit, 6)
        _check_int("eval.n_test", self.n_test, 2)
        _check_choice("eval.nonlinear", self.nonlinear, NONLINEAR_REGRESSORS)
        _check_int("eval.mlp_epochs", self.mlp_epochs, 1)
        _check_bool("eval.intervention", self.intervention)
        _check_int("eval.val_batches", self.val_batches, 1)
        _check_int("eval.val_batch_size", self.val_batch_size, 2)


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

    @property
    def widths(self) -> tuple[int, ...]:
        """Resolved hidden widths of the encoders."""
        if self.model.widths == "paper":
            d = self.simulation.dim
            return (10 * d, 50 * d, 50 * d, 50 * d, 50 * d, 10 * d)
        return self.model.widths

    @property
    def encoding_size(self) -> int:
        """Resolved encoder output size."""
        return self.model.encoding_size or self.simulation.n_c


@dataclass(frozen=True)
class Hyperparams:
    """Traced hyperparameters of one run (Python scalars; see :func:`stack_hyperparams`).

    Attributes:
      p_change: probability that each style component of each sample is perturbed.
      statistical: draw each block's covariance from a Wishart distribution instead of I
        (one draw per block size, shared by the blocks of that size; see :mod:`jaxmmcl.latents`).
      causal_strength: multiplier on B in the content-dependent style s = s0 + strength*B c + a;
        0 switches the causal dependence off (a is then dropped too).
      learning_rate: Adam step size.
      temperature: InfoNCE temperature tau.
    """

    p_change: float = 1.0
    statistical: bool = False
    causal_strength: float = 0.0
    learning_rate: float = 1e-4
    temperature: float = 1.0

    def __post_init__(self):
        _check_float("simulation.p_change", self.p_change, 0.0, 1.0)
        _check_bool("simulation.statistical", self.statistical)
        _check_float("simulation.causal_strength", self.causal_strength, -1e6, 1e6)
        _check_float("train.learning_rate", self.learning_rate, 0.0, 10.0, open_lo=True)
        _check_float("train.temperature", self.temperature, 0.0, 1e6, open_lo=True)


@struct.dataclass
class HyperArrays:
    """:class:`Hyperparams` as a pytree of float32 arrays; leading axis = runs when stacked."""

    p_change: jnp.ndarray
    statistical: jnp.ndarray
    causal_strength: jnp.ndarray
    learning_rate: jnp.ndarray
    temperature: jnp.ndarray


def stack_hyperparams(hypers: list[Hyperparams]) -> HyperArrays:
    """Stacks per-run hyperparameters into arrays of shape ``(len(hypers),)``."""
    return HyperArrays(
        **{
            f.name: jnp.asarray([float(getattr(h, f.name)) for h in hypers], jnp.float32)
            for f in dataclasses.fields(Hyperparams)
        }
    )


# Dotted user key -> Hyperparams field, for the traced (vmapped) keys.
TRACED_KEYS: dict[str, str] = {
    "simulation.p_change": "p_change",
    "simulation.statistical": "statistical",
    "simulation.causal_strength": "causal_strength",
    "train.learning_rate": "learning_rate",
    "train.temperature": "temperature",
}

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

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-Python mapping with every key; the inverse of run_config_from_dict."""
        out: dict[str, Any] = {}
        for section in _SECTIONS:
            values = dataclasses.asdict(getattr(self.static, section))
            out[section] = {k: list(v) if isinstance(v, tuple) else v for k, v in values.items()}
        for key, name in TRACED_KEYS.items():
            section, leaf = key.split(".")
            out[section][leaf] = getattr(self.hyper, name)
        out["seed"] = self.seed
        return out

    def flat(self) -> dict[str, Any]:
        """The config as a flat mapping of dotted keys."""
        return flatten(self.to_dict())


def all_keys() -> list[str]:
    """Every valid dotted key."""
    keys = [f"{s}.{f.name}" for s, cls in _SECTIONS.items() for f in dataclasses.fields(cls)]
    return [*keys, *TRACED_KEYS, "seed"]


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
    valid = set(all_keys())
    for key in flat:
        if key not in valid:
            raise ConfigError(f"{key}: unknown key (valid keys: {', '.join(sorted(valid))})")
    sections: dict[str, dict[str, Any]] = {s: {} for s in _SECTIONS}
    hyper: dict[str, Any] = {}
    for key, value in flat.items():
        if key in TRACED_KEYS:
            hyper[TRACED_KEYS[key]] = value
        elif key != "seed":
            section, leaf = key.split(".")
            sections[section][leaf] = value
    static = StaticConfig(**{s: cls(**sections[s]) for s, cls in _SECTIONS.items()})
    return RunConfig(static=static, hyper=Hyperparams(**hyper), seed=flat.get("seed", 0))
