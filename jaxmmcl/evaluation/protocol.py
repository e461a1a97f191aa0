"""The paper's evaluation protocol for trained runs of the numerical simulation.

For each run: draw a fit set and a test set of fresh samples from the run's own simulation
(with the run's evaluation key), encode every view, standardise each encoding with the fit set's
statistics, and score how well each latent factor of the structure (empty factors are skipped)
is predicted from each *readout* with the metrics ``eval.metrics`` asks for
(:mod:`jaxmmcl.evaluation.metrics`). Evaluation computes in float32 whatever
``train.precision`` says (:mod:`jaxmmcl.precision`); the kernel ridge in float64.

Readouts (``eval.readout``): ``views`` (the default) reads each view's whole encoding (the
paper's h1, h2); ``subsets`` reads, for every subset of views that shares content
(:meth:`jaxmmcl.structure.Structure.subsets`) and every view in it, the encoding's dimensions at
the positions of that content (multiview-crl's evaluation of each subset's learned content).

Discrete factors (``simulation.discrete``) are scored by R^2 on their coded values like every
factor, and also by accuracy.

Permuted-content test (``eval.intervention``), as the official ``main_mlp.py
--permuted-content``: both evaluation sets are drawn by
:func:`jaxmmcl.simulation.sample_intervened_views`: per set, one permutation of its samples
(drawn from that set's key) replaces the content of *every* view before mixing, ``x1 = f1(c',
s, m1)`` and ``x2 = f2(c', s_tilde, m2)`` with ``c' = c[perm]``. The permuted content is scored
as an extra factor ``c_perm``, right after the original ``c``. Encoders that extract the
content of their input predict c' (R^2 near 1) and not c (near 0); the paper's Figure 8.

Validation loss: the training loss (``train.loss``, the run's temperature) of the trained
encoders on ``eval.val_batches`` fresh batches of ``eval.val_batch_size`` samples (the official
code's 5 of 4096), each with as many independent negatives, exactly as
:func:`jaxmmcl.objective.batch_loss` draws a training batch, from keys derived from the
evaluation key (never the training key), averaged. It is measured on the training
distribution, without the intervention.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from jax.sharding import Mesh

from jaxmmcl.config import HyperArrays, StaticConfig
from jaxmmcl.distributed import (
    mesh_for_runs,
    pad_runs,
    padded_size,
    per_run,
    runs_at_once,
    runs_mesh,
    shard_runs,
)
from jaxmmcl.encoders import encode
from jaxmmcl.evaluation.linear import standardise
from jaxmmcl.evaluation.metrics import METRICS, Targets
from jaxmmcl.keys import run_keys
from jaxmmcl.objective import batch_loss
from jaxmmcl.precision import EVALUATION as EVALUATION_PRECISION
from jaxmmcl.precision import matmul_precision
from jaxmmcl.simulation import Simulation, content_factors, sample_intervened_views, sample_views
from jaxmmcl.structure import subset_label

# The stream of the validation batches, derived from a run's evaluation key.
_VALIDATION_STREAM = 1


class Readout(NamedTuple):
    """What one score row reads: some dimensions of one view's encoding.

    Attributes:
      encoder: the view's encoding name (``h1``, ...).
      view: the view's index.
      dims: the encoding dimensions read, in order.
      subset: the subset of views whose content it is (``h1+h2``); None for a whole encoding.
    """

    encoder: str
    view: int
    dims: tuple[int, ...]
    subset: str | None = None


def readouts(static: StaticConfig) -> tuple[Readout, ...]:
    """The readouts of ``eval.readout`` (module docstring)."""
    structure = static.structure
    if static.eval.readout == "views":
        return tuple(
            Readout(view.name, v, tuple(range(static.encoding_size(v))))
            for v, view in enumerate(structure.views)
        )
    return tuple(
        Readout(
            structure.views[v].name,
            v,
            structure.content_dims(subset, v),
            subset_label(subset, structure),
        )
        for subset in structure.subsets()
        for v in subset
    )


def _factor_sizes(static: StaticConfig) -> dict[str, int]:
    structure = static.structure
    sizes: dict[str, int] = {}
    content = content_factors(structure) if static.eval.intervention else ()
    for f in structure.scored():
        sizes[f.name] = f.size
        if f.name in content:
            sizes[f"{f.name}_perm"] = f.size
    return sizes


def factors(static: StaticConfig) -> tuple[str, ...]:
    """Names of the scored factors, in the structure's order, with ``c_perm`` right after
    ``c`` under the intervention test."""
    return tuple(_factor_sizes(static))


def factor_sizes(static: StaticConfig) -> tuple[int, ...]:
    """Sizes of the scored factors, in :func:`factors` order."""
    return tuple(_factor_sizes(static).values())


def discrete_factors(static: StaticConfig) -> tuple[str, ...]:
    """The factors scored by accuracy, in :func:`factors` order: the discrete ones, and their
    permuted copies under the intervention test."""
    discrete = {f.name for f in static.structure.scored() if f.discrete}
    return tuple(name for name in factors(static) if name.removesuffix("_perm") in discrete)


def targets(static: StaticConfig) -> Targets:
    """What the metrics score for this config."""
    discrete = set(discrete_factors(static))
    return Targets(
        sizes=factor_sizes(static),
        discrete=tuple(name in discrete for name in factors(static)),
        n_classes=static.simulation.n_classes,
        epochs=static.eval.mlp_epochs,
        nonlinear=static.eval.nonlinear,
        mcc=static.eval.mcc,
        per_latent=static.eval.per_latent,
    )


def metric_names(static: StaticConfig) -> tuple[str, ...]:
    """``eval.metrics``, with ``accuracy`` added when some factor is discrete."""
    names = static.eval.metrics
    if discrete_factors(static) and "accuracy" not in names:
        names = (*names, "accuracy")
    return names


def width_groups(static: StaticConfig) -> tuple[tuple[int, ...], ...]:
    """Readout indices grouped by width (readouts of one width are scored as one batch)."""
    groups: dict[int, list[int]] = {}
    for i, readout in enumerate(readouts(static)):
        groups.setdefault(len(readout.dims), []).append(i)
    return tuple(tuple(g) for g in groups.values())


@struct.dataclass
class EvalSamples:
    """Encoded evaluation samples of one run.

    Attributes:
      h_fit: per width group (:func:`width_groups`), the standardised readouts of the fit set,
        ``(readouts in the group, n_fit, width)``.
      h_test: the same for the test set (fit-set statistics).
      y_fit: ``(n_fit, t)`` the scored factors, concatenated in :func:`factors` order
        (discrete factors as their coded values).
      y_test: ``(n_test, t)``.
    """

    h_fit: tuple[jnp.ndarray, ...]
    h_test: tuple[jnp.ndarray, ...]
    y_fit: jnp.ndarray
    y_test: jnp.ndarray


def encode_eval_samples(
    seed: jnp.ndarray, simulation: Simulation, params: dict, static: StaticConfig
) -> EvalSamples:
    """Draws, encodes, standardises and reads out one run's fit and test sets."""
    _, _, eval_key = run_keys(seed)
    fit_key, test_key = jax.random.split(eval_key)
    names = factors(static)
    views = readouts(static)

    def draw(key, n):
        if static.eval.intervention:
            xs, latents, permuted = sample_intervened_views(key, simulation, static.simulation, n)
            latents = latents | {f"{name}_perm": value for name, value in permuted.items()}
        else:
            xs, latents = sample_views(key, simulation, static.simulation, n)
        y = jnp.concatenate([latents[name] for name in names], axis=1)
        return encode(params, xs, static), y

    hs_fit, y_fit = draw(fit_key, static.eval.n_fit)
    hs_test, y_test = draw(test_key, static.eval.n_test)
    groups_fit, groups_test = [], []
    for group in width_groups(static):
        encodings = sorted({views[i].view for i in group})
        if len(encodings) == len(group) and all(
            views[i].dims == tuple(range(hs_fit[views[i].view].shape[1])) for i in group
        ):
            # Whole encodings of equal size: one standardisation of the stacked encodings.
            fit, test = standardise(
                jnp.stack([hs_fit[views[i].view] for i in group]),
                jnp.stack([hs_test[views[i].view] for i in group]),
            )
        else:
            pairs = [standardise(hs_fit[views[i].view], hs_test[views[i].view]) for i in group]
            dims = [list(views[i].dims) for i in group]
            fit = jnp.stack([f[:, d] for (f, _), d in zip(pairs, dims, strict=True)])
            test = jnp.stack([t[:, d] for (_, t), d in zip(pairs, dims, strict=True)])
        groups_fit.append(fit)
        groups_test.append(test)
    return EvalSamples(tuple(groups_fit), tuple(groups_test), y_fit, y_test)


def validation_keys(seed: jnp.ndarray, static: StaticConfig) -> jax.Array:
    """``(eval.val_batches,)`` keys of a run's validation batches, from its evaluation key."""
    _, _, eval_key = run_keys(seed)
    stream = jax.random.fold_in(eval_key, _VALIDATION_STREAM)
    return jax.random.split(stream, static.eval.val_batches)


def validation_loss(
    seed: jnp.ndarray,
    simulation: Simulation,
    params: dict,
    hyper: HyperArrays,
    static: StaticConfig,
) -> jnp.ndarray:
    """A scalar: the mean of :func:`jaxmmcl.objective.batch_loss` over the validation keys, on
    batches of ``eval.val_batch_size`` samples.

    The batches go one after another (``lax.map``), so memory stays that of one batch.
    """
    size = static.eval.val_batch_size
    losses = jax.lax.map(
        lambda key: batch_loss(params, key, simulation, hyper, static, size),
        validation_keys(seed, static),
    )
    return jnp.mean(losses)


def _regroup(groups: list[dict[str, np.ndarray]], order: tuple[tuple[int, ...], ...]) -> dict:
    """Per-width-group scores ``(..., readouts in the group, X)`` -> ``(..., readouts, X)`` in
    readout order."""
    position = np.argsort(np.concatenate([np.asarray(g) for g in order]))
    return {
        column: np.take(np.concatenate([g[column] for g in groups], axis=-2), position, axis=-2)
        for column in (groups[0] if groups else {})
    }


class _Programs(NamedTuple):
    encode: Callable
    device_metrics: Callable
    validation: Callable


@functools.cache
def programs(static: StaticConfig, mesh: Mesh, at_once: int | None) -> _Programs:
    """The jitted evaluation programs of a group over ``mesh`` (cached per group)."""
    spec = targets(static)
    device = [METRICS[name].device for name in metric_names(static) if METRICS[name].device]

    def device_metrics(seed, samples):
        key = run_keys(seed)[2]
        groups = []
        for h_fit, h_test in zip(samples.h_fit, samples.h_test, strict=True):
            scores: dict[str, jnp.ndarray] = {}
            for fn in device:
                scores |= fn(key, h_fit, h_test, samples.y_fit, samples.y_test, spec)
            groups.append(scores)
        return groups

    def program(fn):
        # Traced in float32 whatever train.precision: scores compare with scikit-learn's.
        def traced(*args):
            with matmul_precision(EVALUATION_PRECISION):
                return fn(*args)

        return jax.jit(per_run(traced, mesh, at_once))

    return _Programs(
        encode=program(lambda seed, sim, params: encode_eval_samples(seed, sim, params, static)),
        device_metrics=program(device_metrics),
        validation=program(
            lambda seed, sim, params, hyper: validation_loss(seed, sim, params, hyper, static)
        ),
    )


@dataclass
class EvalResult:
    """Scores of a group of R runs.

    Attributes:
      factors: names of the scored factors (:func:`factors`).
      readouts: what each score row reads (:func:`readouts`).
      scores: result column -> ``(R, readouts, factors)``; a column with ``@latent`` appended
        -> ``(R, readouts, components)``, each factor component scored alone (all factors'
        components in :func:`factors` order).
      val_loss: ``(R,)`` validation loss (module docstring).
    """

    factors: tuple[str, ...]
    readouts: tuple[Readout, ...]
    scores: dict[str, np.ndarray]
    val_loss: np.ndarray

    def __getattr__(self, name: str) -> np.ndarray:
        # r2_linear, r2_nonlinear, acc_linear, acc_nonlinear, mcc: the score columns.
        scores = self.__dict__.get("scores", {})
        if name in scores:
            return scores[name]
        raise AttributeError(name)


def evaluate_grid(
    static: StaticConfig,
    seeds: jnp.ndarray,
    simulation: Simulation,
    params: dict,
    hypers: HyperArrays,
    *,
    mesh: Mesh | None = None,
) -> EvalResult:
    """Scores R trained runs of one group.

    The runs are sharded over ``mesh`` (default: this process's devices, at most one per run),
    padded to a multiple of its size, and each device scores its runs as
    :func:`jaxmmcl.distributed.runs_at_once` says (on CPU devices one after another, so that a
    run's scores do not depend on the runs it is scored with).

    Args:
      static: the group's static config.
      seeds: ``(R,)`` the runs' seeds (their evaluation keys derive from them).
      simulation, params: the runs' simulations and encoder parameters, stacked (leading R).
      hypers: the runs' stacked hyperparameters (the validation loss needs the temperature).
      mesh: a one-axis mesh of this process's devices (see
        :func:`jaxmmcl.distributed.runs_mesh`).
    """
    runs = len(seeds)
    chex.assert_shape(seeds, (runs,))
    chex.assert_tree_shape_prefix((simulation, params, hypers), (runs,))
    mesh = mesh_for_runs(runs, mesh if mesh is not None else runs_mesh(jax.local_devices()))
    compiled = programs(static, mesh, runs_at_once(mesh))
    inputs = (np.asarray(seeds, np.uint32), *jax.device_get((simulation, params, hypers)))
    seeds, simulation, params, hypers = shard_runs(pad_runs(inputs, padded_size(runs, mesh)), mesh)
    samples = compiled.encode(seeds, simulation, params)
    groups = jax.device_get(compiled.device_metrics(seeds, samples))
    spec = targets(static)
    metrics = [METRICS[name] for name in metric_names(static)]
    if any(m.host or m.finish for m in metrics):
        trim = functools.partial(jax.tree.map, lambda x: np.asarray(x)[:runs])
        samples_host = trim(jax.device_get(samples))
        groups = [trim(g) for g in groups]
        for g, (fit, test) in enumerate(zip(samples_host.h_fit, samples_host.h_test, strict=True)):
            for metric in metrics:
                if metric.finish is not None:
                    groups[g] = metric.finish(groups[g], spec)
                if metric.host is not None:
                    groups[g] |= metric.host(
                        fit, test, samples_host.y_fit, samples_host.y_test, spec
                    )
    scores = {
        name: np.asarray(value)[:runs]
        for name, value in _regroup(groups, width_groups(static)).items()
    }
    val_loss = np.asarray(jax.device_get(compiled.validation(seeds, simulation, params, hypers)))
    return EvalResult(factors(static), readouts(static), scores, val_loss[:runs])
