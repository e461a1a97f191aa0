"""The training of one run, as pure functions of its seed and hyperparameters.

A run is determined by ``(seed, hyper, static)``. Its key splits into a simulation key, a
training key and an evaluation key (:func:`jaxmmcl.keys.run_keys`), so the run's result never
depends on which other runs it is trained with. :func:`make_train` is the whole run as one
function; :func:`train_step` and :func:`train_chunk` are its parts, which
:mod:`jaxmmcl.grid` runs over grids of runs sharded over devices.

With ``simulation.n_train: N`` a run trains on a fixed set of N pairs
(:func:`jaxmmcl.simulation.sample_indexed_views` from :func:`jaxmmcl.keys.data_key`) in epochs
of ``N // (2 * batch_size)`` steps: each epoch is a fresh permutation of the set, and each step
takes the next ``2 * batch_size`` indices of it (pairs, then negatives), as a shuffled
DataLoader that drops the last partial batch.

A run whose loss or gradient becomes non-finite is marked diverged; from then on its parameters
stay frozen at their last finite value, so the rest of its grid is unaffected. A run that stays
finite but ends worse than it started, and worse than an encoder that maps everything to one
point, is marked failed (:func:`run_status`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.typing import ArrayLike

from jaxmmcl.config import HyperArrays, StaticConfig, TrainConfig
from jaxmmcl.encoders import init_encoders
from jaxmmcl.errors import ConfigError
from jaxmmcl.keys import data_key, run_keys
from jaxmmcl.losses import LOSSES
from jaxmmcl.objective import batch_loss, views_loss
from jaxmmcl.official import official_simulations
from jaxmmcl.precision import matmul_precision
from jaxmmcl.simulation import Simulation, init_simulation, sample_indexed_views


@struct.dataclass
class TrainState:
    """The training state of one run (a leading run axis when stacked).

    Attributes:
      params: encoder parameters (see :mod:`jaxmmcl.encoders`).
      opt_state: optimiser state.
      key: the key the next step's batch is drawn from.
      step: optimiser steps taken.
      diverged: whether a non-finite loss or gradient was met.
      initial_loss: the loss of the first step (NaN before it).
      data_key: the key of the run's fixed training set (``simulation.n_train``).
      order: the current epoch's permutation of the training set's indices, ``(n_train,)``
        (None with fresh pairs).
    """

    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jnp.ndarray
    diverged: jnp.ndarray
    initial_loss: jnp.ndarray
    data_key: jax.Array
    order: jnp.ndarray | None


def lr_multiplier(step: jnp.ndarray, train: TrainConfig) -> jnp.ndarray:
    """Schedule factor in [0, 1] applied to the learning rate at ``step``."""
    step = jnp.asarray(step, jnp.float32)
    warm = jnp.minimum(1.0, (step + 1) / max(train.warmup_steps, 1))
    if train.schedule == "cosine":
        progress = jnp.clip((step - train.warmup_steps) / (train.steps - train.warmup_steps), 0, 1)
        return warm * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return warm


def make_optimizer(
    learning_rate: jnp.ndarray,
    train: TrainConfig,
    loss_learning_rate: jnp.ndarray | None = None,
) -> optax.GradientTransformation:
    """Adam after clipping to global L2 norm ``train.clip_norm``, with the config's schedule.

    ``train`` is read for ``clip_norm``, ``schedule``, ``warmup_steps`` and ``steps``: the
    image/text experiment's ``TrainConfig`` (:mod:`jaxmmcl.imgtxt.train`) serves as well.
    The rates may be traced, so one program serves runs with different rates. With
    ``loss_learning_rate`` the parameters are ``{"g1": ..., "loss": ...}`` and the loss's own
    (:attr:`jaxmmcl.losses.Loss.init`) take that rate (the schedule applies to both).
    """

    def rate(value):
        return optax.scale_by_learning_rate(lambda count: value * lr_multiplier(count, train))

    if loss_learning_rate is None:
        step = rate(learning_rate)
    else:
        step = optax.partition(
            {"encoders": rate(learning_rate), "loss": rate(loss_learning_rate)},
            lambda params: (
                jax.tree.map(lambda _: "encoders", params)
                | {"loss": jax.tree.map(lambda _: "loss", params["loss"])}
            ),
        )
    return optax.chain(optax.clip_by_global_norm(train.clip_norm), optax.scale_by_adam(), step)


def run_optimizer(hyper: HyperArrays, static: StaticConfig) -> optax.GradientTransformation:
    """The run's optimiser (:func:`make_optimizer`): a second rate for a loss with trained
    parameters."""
    trained_loss = LOSSES[static.train.loss].init is not None
    loss_rate = hyper.loss_learning_rate if trained_loss else None
    return make_optimizer(hyper.learning_rate, static.train, loss_rate)


def init_params(key: jax.Array, static: StaticConfig) -> dict:
    """The run's initial parameters: the encoders (:func:`jaxmmcl.encoders.init_encoders`
    from ``key``) and, for a loss with trained parameters, ``"loss"`` (from a key folded from
    ``key``, so the encoders start as with any other loss)."""
    params = init_encoders(key, static)
    loss = LOSSES[static.train.loss]
    if loss.init is not None:
        params["loss"] = loss.init(jax.random.fold_in(key, 1), static.encoding_size(0))
    return params


def init_state(seed: jnp.ndarray, hyper: HyperArrays, static: StaticConfig) -> TrainState:
    """The run's initial parameters and optimiser state, from its training key."""
    init_key, step_key = jax.random.split(run_keys(seed)[1])
    params = init_params(init_key, static)
    opt_state = run_optimizer(hyper, static).init(params)
    set_key = data_key(seed)
    return TrainState(
        params=params,
        opt_state=opt_state,
        key=step_key,
        step=jnp.zeros((), jnp.int32),
        diverged=jnp.zeros((), bool),
        initial_loss=jnp.full((), jnp.nan, jnp.float32),
        data_key=set_key,
        order=(
            epoch_order(set_key, jnp.zeros((), jnp.int32), static.simulation.n_train)
            if static.simulation.n_train
            else None
        ),
    )


def epoch_order(set_key: jax.Array, epoch: jnp.ndarray, n_train: int) -> jnp.ndarray:
    """Epoch ``epoch``'s permutation of the ``n_train`` indices of the run's training set."""
    shuffle_key = jax.random.fold_in(set_key, 1)
    return jax.random.permutation(jax.random.fold_in(shuffle_key, epoch), n_train).astype(jnp.int32)


def training_views(
    state: TrainState, simulation: Simulation, static: StaticConfig
) -> tuple[tuple[jnp.ndarray, ...], jnp.ndarray]:
    """The step's ``2 * batch_size`` samples of the fixed training set (pairs, then negatives)
    and the epoch's order: a new permutation at the start of every epoch."""
    n_train, n = static.simulation.n_train, 2 * static.train.batch_size
    epoch, position = jnp.divmod(state.step, n_train // n)
    order = jax.lax.cond(
        position == 0,
        lambda: epoch_order(state.data_key, epoch, n_train),
        lambda: state.order,
    )
    indices = jax.lax.dynamic_slice(order, (position * n,), (n,))
    set_key = jax.random.fold_in(state.data_key, 0)
    return sample_indexed_views(set_key, indices, simulation, static.simulation), order


def init_run(
    seed: int | jnp.ndarray, hyper: HyperArrays, static: StaticConfig
) -> tuple[Simulation, TrainState]:
    """Draws the run's simulation (see :func:`jaxmmcl.grid.draw_simulations`) and its initial
    training state. Traceable with the default ``simulation.draws: jax``; official draws need a
    concrete seed and hyperparameters (host values)."""
    if static.simulation.draws == "official":
        stacked = jax.tree.map(lambda x: np.asarray(x)[None], hyper)
        simulation = official_simulations(np.asarray([seed]), stacked, static.simulation)
        simulation = jax.tree.map(lambda x: jnp.asarray(x[0]), simulation)
    else:
        simulation = init_simulation(run_keys(seed)[0], static.simulation, hyper)
    return simulation, init_state(jnp.asarray(seed), hyper, static)


def train_step(
    state: TrainState, simulation: Simulation, hyper: HyperArrays, static: StaticConfig
) -> tuple[TrainState, jnp.ndarray]:
    """One optimiser step of one run; returns the new state and the step's loss.

    The step's products (encoders and loss, forward and backward) compute at
    ``train.precision`` (:mod:`jaxmmcl.precision`).
    """
    key, batch_key = jax.random.split(state.key)
    order = state.order
    if static.simulation.n_train:
        xs, order = training_views(state, simulation, static)

        def loss_fn(params):
            return views_loss(params, xs, hyper, static)
    else:

        def loss_fn(params):
            return batch_loss(params, batch_key, simulation, hyper, static)

    with matmul_precision(static.train.precision):
        loss, grads = jax.value_and_grad(loss_fn)(state.params)
    tx = run_optimizer(hyper, static)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    finite = jnp.isfinite(loss) & jax.tree.reduce(
        jnp.logical_and, jax.tree.map(lambda g: jnp.all(jnp.isfinite(g)), grads)
    )
    diverged = state.diverged | ~finite

    def keep(new, old):
        return jnp.where(diverged, old, new)

    new_state = TrainState(
        params=jax.tree.map(keep, params, state.params),
        opt_state=jax.tree.map(keep, opt_state, state.opt_state),
        key=key,
        step=state.step + 1,
        diverged=diverged,
        initial_loss=jnp.where(state.step == 0, loss, state.initial_loss),
        data_key=state.data_key,
        order=order,
    )
    return new_state, jnp.where(diverged, jnp.nan, loss)


def train_chunk(
    state: TrainState,
    simulation: Simulation,
    hyper: HyperArrays,
    static: StaticConfig,
    n_steps: int,
) -> tuple[TrainState, jnp.ndarray]:
    """``n_steps`` steps of one run under ``lax.scan``; returns the state and the mean loss."""

    def body(carry, _):
        return train_step(carry, simulation, hyper, static)

    state, losses = jax.lax.scan(body, state, length=n_steps)
    return state, jnp.mean(losses)


def train_steps(
    state: TrainState, simulation: Simulation, hyper: HyperArrays, static: StaticConfig
) -> tuple[TrainState, jnp.ndarray]:
    """The run's ``train.steps`` steps from ``state``: chunks of ``train.log_every`` steps
    under one ``lax.scan``, then the remainder.

    Returns:
      The final state and the mean loss of each chunk, shape ``(ceil(steps / log_every),)``.
    """
    full, rest = divmod(static.train.steps, static.train.log_every)

    def chunk(state, _):
        return train_chunk(state, simulation, hyper, static, static.train.log_every)

    state, history = jax.lax.scan(chunk, state, length=full)
    if rest:
        state, last = train_chunk(state, simulation, hyper, static, rest)
        history = jnp.concatenate([history, last[None]])
    return state, history


class RunResult(NamedTuple):
    """One trained run.

    Attributes:
      simulation: the run's simulation.
      state: its final training state.
      loss_history: the mean loss of each ``train.log_every`` chunk,
        shape ``(ceil(steps / log_every),)``.
    """

    simulation: Simulation
    state: TrainState
    loss_history: jnp.ndarray


def make_train(static: StaticConfig) -> Callable[[jnp.ndarray, HyperArrays], RunResult]:
    """The whole of one run as a pure function ``train(seed, hyper) -> RunResult``.

    The run's simulation, encoders and batches all come from its seed (:func:`run_keys`), so
    ``jax.jit(jax.vmap(make_train(static)))(seeds, hypers)`` trains a grid whose run i is the
    run trained alone (up to float rounding). :func:`jaxmmcl.grid.train_grid` runs the same
    steps chunk by chunk, for progress, checkpoints and sharding over devices.

    Raises:
      ConfigError: with ``simulation.draws: official``, whose generators run on the host and
        cannot be traced (use :func:`train_run` or :func:`jaxmmcl.grid.train_grid`).
    """
    if static.simulation.draws == "official":
        raise ConfigError(
            "simulation.draws: 'official' draws on the host and cannot be traced inside "
            "make_train; use train_run or train_grid"
        )

    def train(seed: jnp.ndarray, hyper: HyperArrays) -> RunResult:
        simulation, state = init_run(seed, hyper, static)
        state, history = train_steps(state, simulation, hyper, static)
        return RunResult(simulation, state, history)

    return train


def train_run(seed: int | jnp.ndarray, hyper: HyperArrays, static: StaticConfig) -> RunResult:
    """Trains one run from scratch, unbatched (for notebooks and tests).

    Draws the simulation (on the host with ``simulation.draws: official``), then runs
    :func:`train_steps` as one jitted program, compiled once per static config.
    """
    simulation, state = init_run(jnp.asarray(seed), hyper, static)
    state, history = _train_steps_program(state, simulation, hyper, static)
    return RunResult(simulation, state, history)


_train_steps_program = jax.jit(train_steps, static_argnums=3)

run_chunk = jax.jit(train_chunk, static_argnums=(3, 4))
""":func:`train_chunk` of one unbatched run, jitted (``static`` and ``n_steps`` static)."""


def _layer_dims(static: StaticConfig, view: int) -> tuple[int, ...]:
    return (static.view_dim(view), *static.widths(view), static.encoding_size(view))


def step_flops(static: StaticConfig) -> float:
    """Matrix-multiply FLOPs of one training step of one run (forward and backward).

    Counts the encoder layers (2 FLOPs per multiply-add, backward = 2 x forward) on the 2
    batches of ``batch_size`` rows (positives and negatives) each view's encoder sees; the
    mixing and the loss are negligible.
    """
    macs = sum(
        a * b
        for v in range(static.structure.n_views)
        for a, b in itertools.pairwise(_layer_dims(static, v))
    )
    return 3 * 2 * macs * 2 * static.train.batch_size


def memory_per_run(static: StaticConfig) -> float:
    """Estimated device bytes one run of a training program needs (float32).

    Parameters, gradients and Adam's two moments, twice over (the chunk's input and output
    states), plus the activations kept for the backward pass on the 2 batches of
    ``batch_size`` rows each view's encoder sees (pre- and post-activation of every layer)
    and the loss's ``batch x batch`` distance, logit and gradient matrices (6 per ordered pair
    of views), and the epoch order of a fixed training set (twice).
    """
    views = range(static.structure.n_views)
    encoders = [0] if static.model.shared_encoder else views
    n_params = sum(
        a * b + b for v in encoders for a, b in itertools.pairwise(_layer_dims(static, v))
    )
    n = static.train.batch_size
    activations = 2 * 2 * n * sum(sum(_layer_dims(static, v)) for v in views)
    k = static.structure.n_views
    loss = 6 * k * (k - 1) * n * n
    order = 2 * static.simulation.n_train
    return 4.0 * (2 * 4 * n_params + activations + loss + order)


def chunk_lengths(train: TrainConfig) -> list[int]:
    """Steps of each chunk: ``log_every`` repeated, then the remainder."""
    full, rest = divmod(train.steps, train.log_every)
    return [train.log_every] * full + ([rest] if rest else [])


def run_status(
    diverged: ArrayLike,
    initial_loss: ArrayLike,
    final_loss: ArrayLike,
    constant_loss: float = 0.0,
) -> np.ndarray:
    """Each run's outcome, one of :data:`STATUSES`, elementwise.

    ``diverged``: a loss or gradient was not finite. ``failed``: the final loss (the mean of the
    last logging interval) is above both the run's initial loss and ``constant_loss``, the loss
    of a constant encoder (for the numerical InfoNCE 0: all distances 0, so each direction is
    ``log(N + 1) - log(N + 1)``): the run got worse than where it started and than an encoder
    that learned nothing, as runs whose learning rate blows them up do.
    """
    diverged = np.asarray(diverged, bool)
    final = np.asarray(final_loss, np.float64)
    worse = (final > np.asarray(initial_loss, np.float64)) & (final > constant_loss)
    return np.where(diverged, "diverged", np.where(worse, "failed", "ok"))
