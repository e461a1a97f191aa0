"""The paper's evaluation protocol for trained runs of the numerical simulation.

For each run: draw a fit set and a test set of fresh samples from the run's own simulation
(with the run's evaluation key), encode both modalities, standardise each encoding with the fit
set's statistics, and score how well each ground-truth block (c, s, s_tilde, m1, m2; empty
blocks are skipped) is predicted from each encoding (h1, h2): linear R^2 and nonlinear R^2,
each averaged uniformly over the block's components.

Nonlinear R^2 (``eval.nonlinear``): the cross-validated RBF kernel ridge of the paper, or the
official code's lighter option, scikit-learn's ``MLPRegressor(max_iter=1000)`` fitted per
encoding and block (:func:`jaxmmcl.evaluation.mlp_r2`). Evaluation computes in float32 whatever
``train.precision`` says (:mod:`jaxmmcl.precision`); the kernel ridge in float64.

Discrete blocks (``simulation.discrete``, :func:`discrete_factors`) are scored by R^2 on their
coded values like every block, and also by test accuracy per component with the class index as
the label: logistic regression (linear) and an MLP classifier trained as scikit-learn's
``MLPClassifier`` for at most ``eval.mlp_epochs`` epochs (nonlinear), each averaged uniformly
over the block's components.

Permuted-content test (``eval.intervention``), as the official ``main_mlp.py
--permuted-content``: both evaluation sets are drawn by
:func:`jaxmmcl.simulation.sample_intervened_pairs`: per set, one permutation ``perm`` of its
samples (drawn from that set's key, derived from the evaluation key) replaces the content of
*both* modalities before mixing, ``x1 = f1(c', s, m1)`` and ``x2 = f2(c', s_tilde, m2)`` with
``c' = c[perm]``. The permuted content ``c'`` is scored as an extra block ``c_perm``, right after
the original ``c``. Encoders that extract the content of their input predict c' (R^2 near 1)
and not c (near 0, up to the about one fixed point of a random permutation); the paper's
Figure 8. Under causal dependence the style, drawn from the original c, still carries some of
c, to the extent that an encoder encodes style.

Validation loss: the symmetric InfoNCE loss of the trained encoders (the run's temperature) on
``eval.val_batches`` fresh batches of ``eval.val_batch_size`` pairs (the official code's 5 of
4096), each with as many independent negatives, exactly as :func:`jaxmmcl.training.batch_loss`
draws a training batch, from keys derived from the evaluation key (never the training key),
averaged. It is measured on the training distribution, without the intervention.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

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
from jaxmmcl.evaluation.classification import logistic_accuracy, mlp_accuracy
from jaxmmcl.evaluation.kernel_ridge import kernel_ridge_r2_grid
from jaxmmcl.evaluation.linear import block_means, fit_linear, r2_score, standardise
from jaxmmcl.evaluation.mlp import mlp_r2
from jaxmmcl.latents import BLOCKS, DISCRETE, block_sizes, decode_classes
from jaxmmcl.precision import EVALUATION as EVALUATION_PRECISION
from jaxmmcl.precision import matmul_precision
from jaxmmcl.simulation import Simulation, sample_intervened_pairs, sample_pairs
from jaxmmcl.training import batch_loss, run_keys

ENCODERS = ("h1", "h2")

# Streams derived from a run's evaluation key besides its fit/test split (which must stay as
# it is, so that scores do not change): validation batches, MLP classifier, MLP regressor.
_VALIDATION_STREAM = 1
_CLASSIFIER_STREAM = 2
_REGRESSOR_STREAM = 3


def _all_block_sizes(static: StaticConfig) -> dict[str, int]:
    sizes = block_sizes(static.simulation)
    if not static.eval.intervention:
        return sizes
    return {"c": sizes["c"], "c_perm": sizes["c"]} | {k: v for k, v in sizes.items() if k != "c"}


def factors(static: StaticConfig) -> tuple[str, ...]:
    """Names of the non-empty ground-truth blocks, in :data:`jaxmmcl.latents.BLOCKS` order,
    with ``c_perm`` right after ``c`` under the intervention test."""
    return tuple(name for name, size in _all_block_sizes(static).items() if size > 0)


def factor_sizes(static: StaticConfig) -> tuple[int, ...]:
    """Sizes of the non-empty ground-truth blocks, in :func:`factors` order."""
    sizes = _all_block_sizes(static)
    return tuple(sizes[name] for name in factors(static))


def discrete_factors(static: StaticConfig) -> tuple[str, ...]:
    """The blocks scored by accuracy, in :func:`factors` order: the discrete block(s) of
    ``simulation.discrete``, and ``c_perm`` when the content is discrete and permuted."""
    names = DISCRETE[static.simulation.discrete]
    if "c" in names:
        names = (*names, "c_perm")
    return tuple(name for name in factors(static) if name in names)


@struct.dataclass
class EvalSamples:
    """Encoded evaluation samples of one run.

    Attributes:
      h_fit: ``(2, n_fit, k)`` standardised encodings h1, h2 of the fit set.
      h_test: ``(2, n_test, k)`` the same for the test set (fit-set statistics).
      y_fit: ``(n_fit, t)`` ground-truth blocks, concatenated in :func:`factors` order
        (discrete blocks as their coded values).
      y_test: ``(n_test, t)``.
    """

    h_fit: jnp.ndarray
    h_test: jnp.ndarray
    y_fit: jnp.ndarray
    y_test: jnp.ndarray


def encode_eval_samples(
    seed: jnp.ndarray, simulation: Simulation, params: dict, static: StaticConfig
) -> EvalSamples:
    """Draws, encodes and standardises one run's fit and test sets."""
    _, _, eval_key = run_keys(seed)
    fit_key, test_key = jax.random.split(eval_key)

    def draw(key, n):
        if static.eval.intervention:
            x1, x2, latents, c_perm = sample_intervened_pairs(key, simulation, static.simulation, n)
            extra = {"c_perm": c_perm}
        else:
            x1, x2, latents = sample_pairs(key, simulation, static.simulation, n)
            extra = {}
        blocks = {name: getattr(latents, name) for name in BLOCKS} | extra
        h = jnp.stack(encode(params, static, x1, x2))
        y = jnp.concatenate([blocks[name] for name in factors(static)], axis=1)
        return h, y

    h_fit, y_fit = draw(fit_key, static.eval.n_fit)
    h_test, y_test = draw(test_key, static.eval.n_test)
    return EvalSamples(*standardise(h_fit, h_test), y_fit, y_test)


def linear_scores(samples: EvalSamples, sizes: tuple[int, ...]) -> jnp.ndarray:
    """``(2, n_blocks)`` linear R^2 of each block from each encoding (one run)."""

    def one(h_fit, h_test):
        w, b = fit_linear(h_fit, samples.y_fit)
        return block_means(r2_score(samples.y_test, h_test @ w + b), sizes)

    return jax.vmap(one)(samples.h_fit, samples.h_test)


def mlp_scores(
    key: jax.Array, samples: EvalSamples, sizes: tuple[int, ...], epochs: int
) -> jnp.ndarray:
    """``(2, n_blocks)`` MLP-regressor R^2 of each block from each encoding (one run).

    One regressor per encoding and block, as the official evaluation fits
    ``MLPRegressor(max_iter=1000)`` on each block's columns: the blocks are padded to the
    largest size and fitted side by side (``vmap``), the padding masked out of each fit.
    """
    width = max(sizes)
    bounds = np.cumsum((0, *sizes))

    def padded(y):
        return jnp.stack(
            [
                jnp.pad(y[:, lo:hi], ((0, 0), (0, width - (hi - lo))))
                for lo, hi in itertools.pairwise(bounds)
            ]
        )

    y_fit, y_test = padded(samples.y_fit), padded(samples.y_test)
    masks = jnp.asarray(np.arange(width)[None, :] < np.asarray(sizes)[:, None], jnp.float32)
    keys = jax.random.split(key, len(sizes))

    def one(h_fit, h_test):
        def block(k, yf, yt, mask):
            r2 = mlp_r2(k, h_fit, yf, h_test, yt, mask, epochs=epochs)
            return jnp.sum(r2 * mask) / jnp.sum(mask)

        return jax.vmap(block)(keys, y_fit, y_test, masks)

    return jax.vmap(one)(samples.h_fit, samples.h_test)


Classifier = Callable[[jnp.ndarray, jnp.ndarray, jnp.ndarray, jnp.ndarray], jnp.ndarray]


def accuracy_scores(
    samples: EvalSamples,
    sizes: tuple[int, ...],
    discrete: tuple[bool, ...],
    n_classes: int,
    classify: Classifier,
) -> jnp.ndarray:
    """``(2, n_blocks)`` classification accuracy of each discrete block from each encoding.

    Args:
      samples: one run's samples; the discrete blocks' columns of ``y_fit``, ``y_test`` hold
        coded classes (:func:`jaxmmcl.latents.code_classes`), decoded here into labels.
      sizes: block sizes, in the column order of ``y_fit``.
      discrete: per block, whether it is scored (at least one must be).
      n_classes: classes per discrete component.
      classify: ``classify(h_fit, labels_fit, h_test, labels_test)`` -> test accuracy, for
        ``(n_fit, k)``, ``(n_fit,)``, ``(n_test, k)``, ``(n_test,)`` arrays.

    Returns:
      Accuracy averaged uniformly over each discrete block's components; NaN for the other
      blocks.
    """
    bounds = np.cumsum((0, *sizes))
    columns = np.concatenate(
        [np.arange(bounds[b], bounds[b + 1]) for b, d in enumerate(discrete) if d]
    )
    labels_fit = decode_classes(samples.y_fit[:, columns], n_classes)
    labels_test = decode_classes(samples.y_test[:, columns], n_classes)
    scored = tuple(size for size, d in zip(sizes, discrete, strict=True) if d)

    def one(h_fit, h_test):
        per_column = jax.vmap(lambda fit, test: classify(h_fit, fit, h_test, test), in_axes=(1, 1))(
            labels_fit, labels_test
        )
        return block_means(per_column, scored)

    accuracy = jax.vmap(one)(samples.h_fit, samples.h_test)
    where = np.flatnonzero(discrete)
    return jnp.full((2, len(sizes)), jnp.nan, accuracy.dtype).at[:, where].set(accuracy)


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
    """A scalar: the mean of :func:`jaxmmcl.training.batch_loss` over the validation keys, on
    batches of ``eval.val_batch_size`` pairs.

    The batches go one after another (``lax.map``), so memory stays that of one batch.
    """
    size = static.eval.val_batch_size
    losses = jax.lax.map(
        lambda key: batch_loss(params, key, simulation, hyper, static, size),
        validation_keys(seed, static),
    )
    return jnp.mean(losses)


class _Programs(NamedTuple):
    encode: Callable
    linear: Callable
    mlp: Callable
    logistic: Callable
    mlp_classifier: Callable
    validation: Callable


@functools.cache
def _programs(static: StaticConfig, mesh: Mesh, at_once: int | None) -> _Programs:
    sizes = factor_sizes(static)
    discrete = tuple(name in discrete_factors(static) for name in factors(static))
    n_classes = static.simulation.n_classes
    epochs = static.eval.mlp_epochs

    def logistic(samples):
        classify = functools.partial(logistic_accuracy, n_classes=n_classes)
        return accuracy_scores(samples, sizes, discrete, n_classes, classify)

    def mlp_classifier(seed, samples):
        key = jax.random.fold_in(run_keys(seed)[2], _CLASSIFIER_STREAM)

        def classify(h_fit, labels_fit, h_test, labels_test):
            return mlp_accuracy(
                key, h_fit, labels_fit, h_test, labels_test, n_classes, epochs=epochs
            )

        return accuracy_scores(samples, sizes, discrete, n_classes, classify)

    def mlp_regressor(seed, samples):
        key = jax.random.fold_in(run_keys(seed)[2], _REGRESSOR_STREAM)
        return mlp_scores(key, samples, sizes, epochs)

    def program(fn):
        # Traced in float32 whatever train.precision: scores compare with scikit-learn's.
        def traced(*args):
            with matmul_precision(EVALUATION_PRECISION):
                return fn(*args)

        return jax.jit(per_run(traced, mesh, at_once))

    return _Programs(
        encode=program(lambda seed, sim, params: encode_eval_samples(seed, sim, params, static)),
        linear=program(lambda samples: linear_scores(samples, sizes)),
        mlp=program(mlp_regressor),
        logistic=program(logistic),
        mlp_classifier=program(mlp_classifier),
        validation=program(
            lambda seed, sim, params, hyper: validation_loss(seed, sim, params, hyper, static)
        ),
    )


@dataclass
class EvalResult:
    """Scores of a group of R runs.

    Attributes:
      factors: names of the scored blocks (:func:`factors`).
      r2_linear: ``(R, 2, n_blocks)``, encodings (h1, h2) on the second axis.
      r2_nonlinear: ``(R, 2, n_blocks)``.
      acc_linear: ``(R, 2, n_blocks)`` logistic-regression accuracy of the blocks named by
        :func:`discrete_factors`; NaN for continuous blocks.
      acc_nonlinear: ``(R, 2, n_blocks)`` MLP-classifier accuracy, likewise.
      val_loss: ``(R,)`` validation loss (module docstring).
    """

    factors: tuple[str, ...]
    r2_linear: np.ndarray
    r2_nonlinear: np.ndarray
    acc_linear: np.ndarray
    acc_nonlinear: np.ndarray
    val_loss: np.ndarray


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
    mesh = mesh_for_runs(runs, mesh if mesh is not None else runs_mesh(jax.local_devices()))
    programs = _programs(static, mesh, runs_at_once(mesh))
    inputs = (np.asarray(seeds, np.uint32), *jax.device_get((simulation, params, hypers)))
    seeds, simulation, params, hypers = shard_runs(pad_runs(inputs, padded_size(runs, mesh)), mesh)
    samples = programs.encode(seeds, simulation, params)
    scores = {"r2_linear": programs.linear(samples)}
    if static.eval.nonlinear == "mlp":
        scores["r2_nonlinear"] = programs.mlp(seeds, samples)
    else:
        scores["r2_nonlinear"] = kernel_ridge_scores(samples, factor_sizes(static))
    if discrete_factors(static):
        scores["acc_linear"] = programs.logistic(samples)
        scores["acc_nonlinear"] = programs.mlp_classifier(seeds, samples)
    scores["val_loss"] = programs.validation(seeds, simulation, params, hypers)
    scores = {name: np.asarray(jax.device_get(value))[:runs] for name, value in scores.items()}
    if not discrete_factors(static):
        scores["acc_linear"] = scores["acc_nonlinear"] = np.full(
            scores["r2_linear"].shape, np.nan, np.float32
        )
    return EvalResult(factors(static), **scores)


def kernel_ridge_scores(samples: EvalSamples, sizes: tuple[int, ...]) -> np.ndarray:
    """``(R, 2, n_blocks)`` cross-validated kernel ridge R^2 for stacked samples of R runs.

    Both encodings of every run form one list of ``2 R`` regression problems; the targets are
    shared by the two encodings of a run. The samples are fetched to the host first: the
    solver runs on one device (sharded inputs would make XLA partition its factorisations
    across CPU devices, which hangs the CPU runtime), one problem after another, so a
    problem's scores do not depend on the others (a loop also measured faster than batches of
    30 at ``n_fit`` = 1024).
    """
    samples = jax.device_get(samples)
    runs, encoders, n_fit, k = samples.h_fit.shape
    result = kernel_ridge_r2_grid(
        samples.h_fit.reshape(runs * encoders, n_fit, k),
        np.repeat(samples.y_fit, encoders, axis=0),
        samples.h_test.reshape(runs * encoders, -1, k),
        np.repeat(samples.y_test, encoders, axis=0),
        sizes,
    )
    return result.r2.reshape(runs, encoders, -1)
