"""The paper's evaluation protocol for trained runs of the numerical simulation.

For each run: draw a fit set and a test set of fresh samples from the run's own simulation
(with the run's evaluation key), encode both modalities, standardise each encoding with the fit
set's statistics, and score how well each ground-truth block (c, s, s_tilde, m1, m2; empty
blocks are skipped) is predicted from each encoding (h1, h2): linear R^2 and nonlinear R^2,
each averaged uniformly over the block's components.

Discrete blocks (``simulation.discrete``, :func:`discrete_factors`) are scored by R^2 on their
coded values like every block, and also by test accuracy per component with the class index as
the label: logistic regression (linear) and an MLP classifier trained as scikit-learn's
``MLPClassifier`` for at most ``eval.mlp_epochs`` epochs (nonlinear), each averaged uniformly
over the block's components.

Intervention test (``eval.intervention``): both evaluation sets are drawn by
:func:`jaxmmcl.simulation.sample_intervened_pairs`: per set, one permutation ``perm`` of its
samples (drawn from that set's key, derived from the evaluation key) gives modality 2 the
content ``c_perm = c[perm]``, so ``x1 = f1(c, s, m1)`` and ``x2 = f2(c_perm, s_tilde, m2)``.
``c_perm`` is scored as an extra block, right after ``c``. Sample by sample, c_perm is
independent of c and of modality 1's other blocks (up to the about one fixed point of a random
permutation), so an encoder that extracts the content of *its own input* gives: h1 predicts c
(as without the intervention) and not c_perm (R^2 near 0); h2 predicts c_perm and not c. One
exception is by design of the process: under causal dependence s_tilde still depends on c (not
on c_perm), so h2 predicts c above 0 to the extent that it encodes style.

Validation loss: the symmetric InfoNCE loss of the trained encoders (the run's temperature) on
:data:`VALIDATION_BATCHES` fresh batches from keys derived from the evaluation key (never the
training key), each of ``train.batch_size`` pairs with its own independent negatives, exactly
as :func:`jaxmmcl.training.batch_loss` draws a training batch, averaged. It is measured on the
training distribution, without the intervention.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmmcl.config import HyperArrays, StaticConfig
from jaxmmcl.encoders import encode
from jaxmmcl.evaluation.classification import logistic_accuracy, mlp_accuracy
from jaxmmcl.evaluation.kernel_ridge import kernel_ridge_r2_grid
from jaxmmcl.evaluation.linear import block_means, fit_linear, r2_score, standardise
from jaxmmcl.evaluation.mlp import mlp_r2
from jaxmmcl.latents import BLOCKS, DISCRETE, block_sizes, decode_classes
from jaxmmcl.simulation import Simulation, sample_intervened_pairs, sample_pairs
from jaxmmcl.training import batch_loss, run_keys

ENCODERS = ("h1", "h2")
VALIDATION_BATCHES = 8

# Streams derived from a run's evaluation key besides its fit/test split (which must stay as
# it is, so that scores do not change): validation batches, MLP classifier initialisation.
_VALIDATION_STREAM = 1
_CLASSIFIER_STREAM = 2


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
    key: jax.Array, samples: EvalSamples, sizes: tuple[int, ...], steps: int
) -> jnp.ndarray:
    """``(2, n_blocks)`` MLP-regressor R^2 of each block from each encoding (one run)."""

    def one(h_fit, h_test):
        r2 = mlp_r2(key, h_fit, samples.y_fit, h_test, samples.y_test, steps=steps)
        return block_means(r2, sizes)

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


def validation_keys(seed: jnp.ndarray) -> jax.Array:
    """``(VALIDATION_BATCHES,)`` keys of a run's validation batches, from its evaluation key."""
    _, _, eval_key = run_keys(seed)
    return jax.random.split(jax.random.fold_in(eval_key, _VALIDATION_STREAM), VALIDATION_BATCHES)


def validation_loss(
    seed: jnp.ndarray,
    simulation: Simulation,
    params: dict,
    hyper: HyperArrays,
    static: StaticConfig,
) -> jnp.ndarray:
    """A scalar: the mean of :func:`jaxmmcl.training.batch_loss` over the validation keys.

    The batches go one after another (``lax.map``), so memory stays that of one training batch.
    """
    losses = jax.lax.map(
        lambda key: batch_loss(params, key, simulation, hyper, static), validation_keys(seed)
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
def _programs(static: StaticConfig) -> _Programs:
    sizes = factor_sizes(static)
    discrete = tuple(name in discrete_factors(static) for name in factors(static))
    n_classes = static.simulation.n_classes
    steps = static.eval.mlp_steps
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

    return _Programs(
        encode=jax.jit(
            jax.vmap(lambda seed, sim, params: encode_eval_samples(seed, sim, params, static))
        ),
        linear=jax.jit(jax.vmap(lambda samples: linear_scores(samples, sizes))),
        mlp=jax.jit(
            jax.vmap(lambda seed, samples: mlp_scores(run_keys(seed)[2], samples, sizes, steps))
        ),
        logistic=jax.jit(jax.vmap(logistic)),
        mlp_classifier=jax.jit(jax.vmap(mlp_classifier)),
        validation=jax.jit(
            jax.vmap(
                lambda seed, sim, params, hyper: validation_loss(seed, sim, params, hyper, static)
            )
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
) -> EvalResult:
    """Scores R trained runs of one group.

    Args:
      static: the group's static config.
      seeds: ``(R,)`` the runs' seeds (their evaluation keys derive from them).
      simulation, params: the runs' simulations and encoder parameters, stacked (leading R).
      hypers: the runs' stacked hyperparameters (the validation loss needs the temperature).
    """
    programs = _programs(static)
    seeds = jnp.asarray(seeds, jnp.uint32)
    samples = programs.encode(seeds, simulation, params)
    r2_linear = np.asarray(programs.linear(samples))
    if static.eval.nonlinear == "mlp":
        r2_nonlinear = np.asarray(programs.mlp(seeds, samples))
    else:
        r2_nonlinear = kernel_ridge_scores(samples, factor_sizes(static))
    if discrete_factors(static):
        acc_linear = np.asarray(programs.logistic(samples))
        acc_nonlinear = np.asarray(programs.mlp_classifier(seeds, samples))
    else:
        acc_linear = acc_nonlinear = np.full(r2_linear.shape, np.nan, np.float32)
    val_loss = np.asarray(programs.validation(seeds, simulation, params, hypers))
    return EvalResult(factors(static), r2_linear, r2_nonlinear, acc_linear, acc_nonlinear, val_loss)


def kernel_ridge_scores(samples: EvalSamples, sizes: tuple[int, ...]) -> np.ndarray:
    """``(R, 2, n_blocks)`` cross-validated kernel ridge R^2 for stacked samples of R runs.

    Both encodings of every run form one list of ``2 R`` regression problems; the targets are
    shared by the two encodings of a run. The samples are fetched to the host first: the
    solver runs its own batches on one device (sharded inputs would make XLA partition its
    factorisations across CPU devices, which hangs the CPU runtime).
    """
    samples = jax.device_get(samples)
    runs, encoders, n_fit, k = samples.h_fit.shape
    result = kernel_ridge_r2_grid(
        samples.h_fit.reshape(runs * encoders, n_fit, k),
        np.repeat(samples.y_fit, encoders, axis=0),
        samples.h_test.reshape(runs * encoders, -1, k),
        np.repeat(samples.y_test, encoders, axis=0),
        sizes,
        # Batching runs pays off only while their kernels are small.
        run_batch=max(1, min(runs * encoders, 2**27 // n_fit**2)),
    )
    return result.r2.reshape(runs, encoders, -1)
