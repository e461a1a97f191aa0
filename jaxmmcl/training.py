"""Contrastive training: one run is a pure function; a grid of runs is one vmapped program.

A run is determined by ``(seed, hyper, static)``. Its key splits into a simulation key, a
training key and an evaluation key (:func:`run_keys`), so the run's result never depends on
which other runs it is trained with. :func:`train_grid` trains the runs of one group (equal
static config) as one jitted program sharded over devices, in chunks of ``train.log_every``
steps, which is where progress is reported and the loss is recorded. Each device computes its
runs either all at once (``vmap``, right for accelerators) or a few at a time (``lax.map``,
right for CPU devices, where a vmapped matrix product of small per-run matrices is slower than
the same products one after another); see :func:`jaxmmcl.distributed.runs_at_once`.

A run whose loss or gradient becomes non-finite is marked diverged; from then on its parameters
stay frozen at their last finite value, so the rest of its grid is unaffected. A run that stays
finite but ends worse than it started, and worse than an encoder that maps everything to one
point, is marked failed (:func:`run_status`).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxmmcl.config import HyperArrays, SimulationConfig, StaticConfig, TrainConfig
from jaxmmcl.distributed import (
    mesh_for_runs,
    pad_runs,
    padded_size,
    per_run,
    runs_at_once,
    runs_mesh,
    shard_runs,
    to_host,
)
from jaxmmcl.encoders import init_encoders
from jaxmmcl.keys import run_keys
from jaxmmcl.objective import batch_loss
from jaxmmcl.official import official_simulations
from jaxmmcl.precision import check_supported, matmul_precision
from jaxmmcl.simulation import Simulation, init_simulation


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
    """

    params: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jnp.ndarray
    diverged: jnp.ndarray
    initial_loss: jnp.ndarray


def lr_multiplier(step: jnp.ndarray, train: TrainConfig) -> jnp.ndarray:
    """Schedule factor in [0, 1] applied to the learning rate at ``step``."""
    step = jnp.asarray(step, jnp.float32)
    warm = jnp.minimum(1.0, (step + 1) / max(train.warmup_steps, 1))
    if train.schedule == "cosine":
        progress = jnp.clip((step - train.warmup_steps) / (train.steps - train.warmup_steps), 0, 1)
        return warm * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
    return warm


def make_optimizer(learning_rate: jnp.ndarray, train: TrainConfig) -> optax.GradientTransformation:
    """Adam after clipping to global L2 norm ``train.clip_norm``, with the config's schedule.

    ``learning_rate`` may be traced, so one program serves runs with different rates.
    """
    return optax.chain(
        optax.clip_by_global_norm(train.clip_norm),
        optax.scale_by_adam(),
        optax.scale_by_learning_rate(lambda count: learning_rate * lr_multiplier(count, train)),
    )


def init_state(seed: jnp.ndarray, hyper: HyperArrays, static: StaticConfig) -> TrainState:
    """The run's initial encoders and optimiser state, from its training key."""
    init_key, step_key = jax.random.split(run_keys(seed)[1])
    params = init_encoders(init_key, static)
    opt_state = make_optimizer(hyper.learning_rate, static.train).init(params)
    return TrainState(
        params=params,
        opt_state=opt_state,
        key=step_key,
        step=jnp.zeros((), jnp.int32),
        diverged=jnp.zeros((), bool),
        initial_loss=jnp.full((), jnp.nan, jnp.float32),
    )


def draw_simulations(seeds: ArrayLike, hypers: HyperArrays, static: StaticConfig) -> Simulation:
    """The simulations of R runs (stacked, leading axis R), drawn on one local device.

    From each run's simulation key, or with ``simulation.draws: official`` by the official
    code's generators on the host (:mod:`jaxmmcl.official`).
    """
    if static.simulation.draws == "official":
        return official_simulations(seeds, hypers, static.simulation)
    draw = simulation_program(static.simulation)
    hypers = jax.device_get(hypers)
    # One run at a time, on one device: a vmapped draw rounds differently with the number of
    # runs it batches (a mechanism's column norms moved by 1e-7 between batches of 1 and 2),
    # and the mechanisms' rejection sampler, a data-dependent while_loop, hangs XLA's CPU
    # runtime when partitioned over devices. Simulations are small.
    with jax.default_device(jax.local_devices()[0]):
        runs = [
            draw(jnp.uint32(seed), jax.tree.map(lambda x, i=i: x[i], hypers))
            for i, seed in enumerate(np.asarray(seeds))
        ]
    return jax.tree.map(lambda *x: jnp.stack(x), *runs)


@functools.cache
def simulation_program(sim: SimulationConfig) -> Callable:
    return jax.jit(lambda seed, hyper: init_simulation(run_keys(seed)[0], sim, hyper))


def init_run(
    seed: int | jnp.ndarray, hyper: HyperArrays, static: StaticConfig
) -> tuple[Simulation, TrainState]:
    """Draws the run's simulation (see :func:`draw_simulations`) and its initial training
    state. Traceable with the default ``simulation.draws: jax``; official draws need a
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
    with matmul_precision(static.train.precision):
        loss, grads = jax.value_and_grad(batch_loss)(
            state.params, batch_key, simulation, hyper, static
        )
    tx = make_optimizer(hyper.learning_rate, static.train)
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


def train_run(
    seed: int | jnp.ndarray, hyper: HyperArrays, static: StaticConfig
) -> tuple[Simulation, TrainState, jnp.ndarray]:
    """Trains one run from scratch, unbatched (for notebooks and tests).

    Runs the same chunks as :func:`train_grid`, each a jitted ``lax.scan``; a chunk length is
    compiled once per static config, not once per chunk.

    Returns:
      The simulation, the final state and the mean loss of each ``log_every`` chunk,
      shape ``(ceil(steps / log_every),)``.
    """
    simulation, state = init_run(jnp.asarray(seed), hyper, static)
    history = []
    for n_steps in chunk_lengths(static.train):
        state, loss = run_chunk(state, simulation, hyper, static, n_steps)
        history.append(loss)
    return simulation, state, jnp.stack(history)


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
    of views).
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
    return 4.0 * (2 * 4 * n_params + activations + loss)


def chunk_lengths(train: TrainConfig) -> list[int]:
    """Steps of each chunk: ``log_every`` repeated, then the remainder."""
    full, rest = divmod(train.steps, train.log_every)
    return [train.log_every] * full + ([rest] if rest else [])


class GridPrograms(NamedTuple):
    """The jitted programs of a group, over runs (see :func:`grid_programs`).

    Attributes:
      init_state: ``(seeds, hypers) -> TrainState``, sharded over the mesh.
      chunk: ``(state, simulation, hypers, n_steps) -> (state, mean losses)``, sharded over the
        mesh, ``n_steps`` static, donating the state.
    """

    init_state: Callable
    chunk: Callable


@functools.cache
def grid_programs(static: StaticConfig, mesh: Mesh, at_once: int | None = None) -> GridPrograms:
    """The programs of a group whose run count is a multiple of ``mesh``'s size.

    The sharded programs are ``shard_map`` over the mesh's ``runs`` axis: each device trains
    its own block of runs, so no run ever waits on another device and no collective is needed.
    Within a device the training chunk is vmapped over all of its runs (``at_once=None``) or
    ``lax.map``-ped over them, ``at_once`` runs vmapped together per map step.
    """

    def chunk(state, simulation, hyper, n_steps):
        def one(state, simulation, hyper):
            return train_chunk(state, simulation, hyper, static, n_steps)

        return per_run(one, mesh, at_once)(state, simulation, hyper)

    def init(seed, hyper):
        return init_state(seed, hyper, static)

    return GridPrograms(
        init_state=jax.jit(per_run(init, mesh, None)),
        chunk=jax.jit(chunk, static_argnums=3, donate_argnums=0),
    )


@dataclass
class GridResult:
    """The outcome of training one group of runs, as host arrays (leading axis R = runs).

    Attributes:
      simulation: the runs' simulations (stacked pytree).
      params: the final encoder parameters (stacked pytree).
      loss_history: ``(R, n_chunks)`` mean loss per ``log_every`` chunk (NaN once diverged).
      diverged: ``(R,)`` bool.
      initial_loss: ``(R,)`` the loss of each run's first step.
      compile_seconds: time spent compiling the group's programs.
      train_seconds: time spent training (excluding compilation).
    """

    simulation: Simulation
    params: dict
    loss_history: np.ndarray
    diverged: np.ndarray
    initial_loss: np.ndarray
    compile_seconds: float
    train_seconds: float

    @property
    def final_loss(self) -> np.ndarray:
        """``(R,)`` mean loss of the last chunk."""
        return self.loss_history[:, -1]

    @property
    def status(self) -> np.ndarray:
        """``(R,)`` each run's :func:`run_status`."""
        return run_status(self.diverged, self.initial_loss, self.final_loss)


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


ProgressFn = Callable[[int, int], None]


class Checkpoint(Protocol):
    """What :func:`train_grid` needs of a checkpoint store (see :mod:`jaxmmcl.checkpoints`)."""

    def restore(
        self, like: TrainState, history_like: np.ndarray
    ) -> tuple[TrainState, np.ndarray] | None: ...

    def maybe_save(
        self, step: int, state: TrainState, history: np.ndarray, *, force: bool = False
    ) -> bool: ...


class GridSetup(NamedTuple):
    """A group ready to train (see :func:`setup_grid`); run axes padded and sharded.

    Attributes:
      programs: the group's programs on the chosen mesh.
      simulation: the runs' simulations.
      hypers: the runs' hyperparameters.
      state: the runs' initial training states.
    """

    programs: GridPrograms
    simulation: Simulation
    hypers: HyperArrays
    state: TrainState


def setup_grid(
    static: StaticConfig,
    seeds: ArrayLike,
    hypers: HyperArrays,
    *,
    mesh: Mesh | None = None,
    at_once: int | str | None = "auto",
) -> GridSetup:
    """Programs, simulations and initial states of R runs that share ``static``.

    The mesh (default: every device of every process) shrinks to R devices for a smaller
    single-process group (:func:`jaxmmcl.distributed.mesh_for_runs`); the runs are padded to a
    multiple of its size by repeating the first. Simulations are drawn on one local device (or
    the host) and then sharded, so they never depend on the device count.

    Args:
      static: the group's static config.
      seeds: ``(R,)`` integer seeds.
      hypers: stacked hyperparameters, leading axis R.
      mesh: a one-axis device mesh (see :func:`jaxmmcl.distributed.runs_mesh`).
      at_once: runs each device computes as one vmapped batch (None: all of them); "auto"
        is :func:`jaxmmcl.distributed.runs_at_once`.
    """
    runs = len(seeds)
    mesh = mesh_for_runs(runs, mesh if mesh is not None else runs_mesh())
    if at_once == "auto":
        at_once = runs_at_once(mesh)
    elif at_once is not None and (not isinstance(at_once, int) or at_once < 1):
        raise ValueError(f"at_once: expected None, 'auto' or an integer >= 1, got {at_once!r}")
    check_supported(static.train.precision, mesh.devices.flat[0].platform)
    programs = grid_programs(static, mesh, at_once)
    seeds = np.asarray(seeds, np.uint32)
    seeds, hypers = pad_runs((seeds, jax.device_get(hypers)), padded_size(runs, mesh))
    simulation = draw_simulations(seeds, hypers, static)
    simulation, seeds, hypers = shard_runs((jax.device_get(simulation), seeds, hypers), mesh)
    return GridSetup(programs, simulation, hypers, programs.init_state(seeds, hypers))


def train_grid(
    static: StaticConfig,
    seeds: ArrayLike,
    hypers: HyperArrays,
    progress: ProgressFn | None = None,
    *,
    mesh: Mesh | None = None,
    checkpoint: Checkpoint | None = None,
    at_once: int | str | None = "auto",
) -> GridResult:
    """Trains R runs that share ``static`` as one program, sharded over devices.

    The run axis is split over ``mesh`` (default: every device of every process), padded to a
    multiple of its size; the padded runs are dropped from the result. In a single process, a
    group of fewer runs than devices uses only its first R devices.

    Args:
      static: the group's static config.
      seeds: ``(R,)`` integer seeds.
      hypers: stacked hyperparameters, leading axis R.
      progress: called as ``progress(steps_done, steps_total)`` after each chunk.
      mesh: a one-axis device mesh (see :func:`jaxmmcl.distributed.runs_mesh`).
      checkpoint: where to resume from and save to; None trains from scratch, unsaved.
      at_once: runs each device computes as one vmapped batch (None: all of them); "auto"
        is :func:`jaxmmcl.distributed.runs_at_once`. Results do not depend on it beyond float
        rounding.
    """
    runs = len(seeds)
    lengths = chunk_lengths(static.train)
    total = static.train.steps
    t0 = time.perf_counter()
    programs, simulation, hypers_dev, state = setup_grid(
        static, seeds, hypers, mesh=mesh, at_once=at_once
    )
    jax.block_until_ready(state)
    compile_seconds = time.perf_counter() - t0
    history = np.full((state.step.shape[0], len(lengths)), np.nan, np.float32)
    done = 0
    restored = checkpoint.restore(state, history) if checkpoint is not None else None
    if restored is not None:
        state, history = restored
        done = int(to_host(state.step)[0])
        if progress is not None:
            progress(done, total)
    executables = {}
    train_seconds = 0.0
    for c, (n_steps, end) in enumerate(zip(lengths, itertools.accumulate(lengths), strict=True)):
        if end <= done:
            continue
        if n_steps not in executables:
            t0 = time.perf_counter()
            executables[n_steps] = programs.chunk.lower(
                state, simulation, hypers_dev, n_steps
            ).compile()
            compile_seconds += time.perf_counter() - t0
        t0 = time.perf_counter()
        state, loss = executables[n_steps](state, simulation, hypers_dev)
        history[:, c] = to_host(loss)
        train_seconds += time.perf_counter() - t0
        done = end
        if checkpoint is not None:
            checkpoint.maybe_save(done, state, history, force=done == total)
        if progress is not None:
            progress(done, total)
    simulation, params, diverged, initial_loss = to_host(
        (simulation, state.params, state.diverged, state.initial_loss)
    )
    trim = functools.partial(jax.tree.map, lambda x: x[:runs])
    return GridResult(
        simulation=trim(simulation),
        params=trim(params),
        loss_history=history[:runs],
        diverged=np.asarray(diverged[:runs]),
        initial_loss=np.asarray(initial_loss[:runs]),
        compile_seconds=compile_seconds,
        train_seconds=train_seconds,
    )
