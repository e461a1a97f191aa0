"""The paper's evaluation protocol for trained runs of the numerical simulation.

For each run: draw a fit set and a test set of fresh samples from the run's own simulation
(with the run's evaluation key), encode both modalities, standardise each encoding with the fit
set's statistics, and score how well each ground-truth block (c, s, s_tilde, m1, m2; empty
blocks are skipped) is predicted from each encoding (h1, h2): linear R^2 and nonlinear R^2,
each averaged uniformly over the block's components.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from jaxmmcl.config import StaticConfig
from jaxmmcl.encoders import encode
from jaxmmcl.evaluation.kernel_ridge import kernel_ridge_r2_grid
from jaxmmcl.evaluation.linear import block_means, fit_linear, r2_score
from jaxmmcl.evaluation.mlp import mlp_r2
from jaxmmcl.latents import BLOCKS, block_sizes
from jaxmmcl.simulation import Simulation, sample_pairs
from jaxmmcl.training import run_keys

ENCODERS = ("h1", "h2")


def factors(static: StaticConfig) -> tuple[str, ...]:
    """Names of the non-empty ground-truth blocks, in :data:`jaxmmcl.latents.BLOCKS` order."""
    sizes = block_sizes(static.simulation)
    return tuple(name for name in BLOCKS if sizes[name] > 0)


def factor_sizes(static: StaticConfig) -> tuple[int, ...]:
    """Sizes of the non-empty ground-truth blocks."""
    sizes = block_sizes(static.simulation)
    return tuple(sizes[name] for name in factors(static))


@struct.dataclass
class EvalSamples:
    """Encoded evaluation samples of one run.

    Attributes:
      h_fit: ``(2, n_fit, k)`` standardised encodings h1, h2 of the fit set.
      h_test: ``(2, n_test, k)`` the same for the test set (fit-set statistics).
      y_fit: ``(n_fit, t)`` ground-truth blocks, concatenated in :func:`factors` order.
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
        x1, x2, latents = sample_pairs(key, simulation, static.simulation, n)
        h = jnp.stack(encode(params, static, x1, x2))
        y = jnp.concatenate([getattr(latents, name) for name in factors(static)], axis=1)
        return h, y

    h_fit, y_fit = draw(fit_key, static.eval.n_fit)
    h_test, y_test = draw(test_key, static.eval.n_test)
    mean = jnp.mean(h_fit, axis=1, keepdims=True)
    std = jnp.std(h_fit, axis=1, keepdims=True)
    std = jnp.where(std > 0, std, 1.0)
    return EvalSamples((h_fit - mean) / std, (h_test - mean) / std, y_fit, y_test)


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


@functools.cache
def _programs(static: StaticConfig):
    sizes = factor_sizes(static)
    encode_fn = jax.jit(
        jax.vmap(lambda seed, sim, params: encode_eval_samples(seed, sim, params, static))
    )
    linear_fn = jax.jit(jax.vmap(lambda samples: linear_scores(samples, sizes)))
    mlp_fn = jax.jit(
        jax.vmap(
            lambda seed, samples: mlp_scores(
                run_keys(seed)[2], samples, sizes, static.eval.mlp_steps
            )
        )
    )
    return encode_fn, linear_fn, mlp_fn


@dataclass
class EvalResult:
    """Scores of a group of R runs.

    Attributes:
      factors: names of the scored blocks.
      r2_linear: ``(R, 2, n_blocks)``, encodings (h1, h2) on the second axis.
      r2_nonlinear: ``(R, 2, n_blocks)``.
    """

    factors: tuple[str, ...]
    r2_linear: np.ndarray
    r2_nonlinear: np.ndarray


def evaluate_grid(
    static: StaticConfig, seeds: jnp.ndarray, simulation: Simulation, params: dict
) -> EvalResult:
    """Scores R trained runs of one group (stacked ``simulation`` and ``params``)."""
    encode_fn, linear_fn, mlp_fn = _programs(static)
    seeds = jnp.asarray(seeds, jnp.uint32)
    samples = encode_fn(seeds, simulation, params)
    r2_linear = np.asarray(linear_fn(samples))
    if static.eval.nonlinear == "mlp":
        r2_nonlinear = np.asarray(mlp_fn(seeds, samples))
    else:
        r2_nonlinear = kernel_ridge_scores(samples, factor_sizes(static))
    return EvalResult(factors(static), r2_linear, r2_nonlinear)


def kernel_ridge_scores(samples: EvalSamples, sizes: tuple[int, ...]) -> np.ndarray:
    """``(R, 2, n_blocks)`` cross-validated kernel ridge R^2 for stacked samples of R runs.

    Both encodings of every run form one list of ``2 R`` regression problems; the targets are
    shared by the two encodings of a run.
    """
    runs, encoders, n_fit, k = samples.h_fit.shape
    result = kernel_ridge_r2_grid(
        samples.h_fit.reshape(runs * encoders, n_fit, k),
        jnp.repeat(samples.y_fit, encoders, axis=0),
        samples.h_test.reshape(runs * encoders, -1, k),
        jnp.repeat(samples.y_test, encoders, axis=0),
        sizes,
        # Batching runs pays off only while their kernels are small.
        run_batch=max(1, min(runs * encoders, 2**27 // n_fit**2)),
    )
    return result.r2.reshape(runs, encoders, -1)
