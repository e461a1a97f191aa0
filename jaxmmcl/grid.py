"""Grids of runs: one compiled program per group of runs that share a static config.

:func:`train_grid` trains the runs of one group as one jitted program sharded over devices, in
chunks of ``train.log_every`` steps (:func:`jaxmmcl.training.train_chunk`), which is where
progress is reported, the loss is recorded and checkpoints are saved. Each device computes its
runs either all at once (``vmap``, right for accelerators) or a few at a time (``lax.map``,
right for CPU devices, where a vmapped matrix product of small per-run matrices is slower than
the same products one after another); see :func:`jaxmmcl.distributed.runs_at_once`. Run i of a
grid equals run i trained alone (:func:`jaxmmcl.training.train_run`).
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.typing import ArrayLike

from jaxmmcl.checkpoints import Checkpoint
from jaxmmcl.config import HyperArrays, SimulationConfig, StaticConfig
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
from jaxmmcl.keys import run_keys
from jaxmmcl.official import official_simulations
from jaxmmcl.precision import check_supported
from jaxmmcl.simulation import Simulation, init_simulation
from jaxmmcl.training import TrainState, chunk_lengths, init_state, run_status, train_chunk


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


ProgressFn = Callable[[int, int], None]
LossFn = Callable[[int, np.ndarray], None]


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
    on_chunk: LossFn | None = None,
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
      on_chunk: called as ``on_chunk(step, losses)`` after each chunk with its last step and
        its mean training loss per run, ``(R,)`` (a row of ``loss_history``); after a restore,
        first once for every restored chunk, so that it sees the whole history.
      mesh: a one-axis device mesh (see :func:`jaxmmcl.distributed.runs_mesh`).
      checkpoint: where to resume from and save to; None trains from scratch, unsaved.
      at_once: runs each device computes as one vmapped batch (None: all of them); "auto"
        is :func:`jaxmmcl.distributed.runs_at_once`. Results do not depend on it beyond float
        rounding.
    """
    runs = len(seeds)
    chex.assert_shape(seeds, (runs,))
    chex.assert_tree_shape_prefix(hypers, (runs,))
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
        if on_chunk is not None:
            for c, end in enumerate(itertools.accumulate(lengths)):
                if end <= done:
                    on_chunk(end, history[:runs, c])
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
        if on_chunk is not None:
            on_chunk(end, history[:runs, c])
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
