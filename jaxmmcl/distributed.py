"""The run axis over devices and hosts, with JAX's own sharding.

A group of R runs is trained as one SPMD program over a one-dimensional device mesh whose axis
``"runs"`` spans every device of every process. The runs are padded to a multiple of the device
count (:func:`padded_size`) by repeating the first run; padded runs are computed and dropped.
Runs never communicate, so XLA partitions the vmapped program without collectives, and a run's
result depends only on its own seed and hyperparameters, not on the device count.

Several hosts: :func:`initialize` calls ``jax.distributed.initialize`` when asked to (a flag or
the ``JAXMMCL_COORDINATOR`` environment). Every process builds the same plan and runs the same
programs; each supplies only its own shards of the inputs (:func:`shard_runs`), and
:func:`to_host` gathers results onto every process, so process 0 can write the files.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax._src import distributed as jax_distributed
from jax._src import xla_bridge
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from jaxmmcl.config import ConfigError

RUNS = "runs"
# Processes may drift apart by a whole program's compilation and run (uneven hosts, shared
# cores); a process that dies is reported by the coordination service's heartbeat instead.
BARRIER_TIMEOUT_S = 3600
_barriers = 0


def initialize(coordinator: str | None = None) -> None:
    """Joins a multi-process JAX job when one is configured; a no-op otherwise.

    Args:
      coordinator: ``host:port`` of process 0. Defaults to ``$JAXMMCL_COORDINATOR``; the
        process count and index come from ``$JAXMMCL_NUM_PROCESSES`` and
        ``$JAXMMCL_PROCESS_ID``. With none of these set, JAX's own cluster detection (SLURM,
        Open MPI, Cloud TPU) is used only when ``coordinator == "auto"``.

    Raises:
      ConfigError: when the settings are incomplete or not integers.
    """
    coordinator = coordinator or os.environ.get("JAXMMCL_COORDINATOR")
    if not coordinator:
        return
    if coordinator == "auto":
        jax.distributed.initialize()
        return
    values = {}
    for name in ("JAXMMCL_NUM_PROCESSES", "JAXMMCL_PROCESS_ID"):
        text = os.environ.get(name)
        try:
            values[name] = int(text)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise ConfigError(
                f"{name}={text!r}: an integer is needed with coordinator {coordinator!r}"
            ) from None
    # CPU processes need a collectives backend to form one global device mesh (accelerators
    # ignore this setting). Asking for the backend here would initialise it too early.
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(
        coordinator_address=coordinator,
        num_processes=values["JAXMMCL_NUM_PROCESSES"],
        process_id=values["JAXMMCL_PROCESS_ID"],
    )


def use_cpu_cores() -> int | None:
    """Gives JAX's CPU backend one device per available core, unless the user chose a count.

    A sweep's runs are sharded over devices; on a CPU host one device per core lets each core
    train its own runs, which is faster than one device whose small per-run matrix products
    are split over the cores (``benchmarks/RESULTS.md``). Must run before JAX initialises its
    backends; ``JAX_NUM_CPU_DEVICES`` or ``--xla_force_host_platform_device_count`` in
    ``XLA_FLAGS`` take precedence. Accelerator hosts are unaffected: their default devices are
    the accelerators. Returns the count set, or None when the user's setting stands or JAX is
    already running (a notebook that called JAX first keeps its devices).
    """
    if "JAX_NUM_CPU_DEVICES" in os.environ or "xla_force_host_platform_device_count" in (
        os.environ.get("XLA_FLAGS", "")
    ):
        return None
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = max(1, cores or 1)
    try:
        jax.config.update("jax_num_cpu_devices", cores)
    except RuntimeError:  # the backends are initialised already
        return None
    return cores


def fix_intra_op_threads(threads: int) -> None:
    """Sizes XLA:CPU's intra-op thread pool to ``threads``, so that a run's numbers do not
    depend on the device count (up to ``threads`` devices) or on the machine's core count.

    XLA:CPU splits a product's work between the threads of its pool, and for some shapes the
    split reorders a sum (an encoder's weight gradient, contracting over the batch). The pool
    has ``max(cores, devices)`` threads, so by default a run is bitwise the same for every
    device count up to the core count, and differs in the last bits beyond it (1e-8 after one
    step, up to 1e-3 relative after 50, measured). XLA takes the core count from the ``NPROC``
    environment variable when it is set; this sets it. More threads than cores cost speed
    (``benchmarks/RESULTS.md``). Must run before JAX initialises its backends.

    Raises:
      ConfigError: ``threads`` is not an integer >= 1, or the backends are running already.
    """
    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ConfigError(f"--threads: expected an integer >= 1, got {threads!r}")
    if xla_bridge.backends_are_initialized():
        raise ConfigError(f"--threads {threads}: JAX is running already; set it before")
    os.environ["NPROC"] = str(threads)


def is_writer() -> bool:
    """Whether this process writes the result files (process 0)."""
    return jax.process_index() == 0


def runs_mesh(devices: Sequence[jax.Device] | None = None) -> Mesh:
    """The mesh with the single axis ``"runs"`` over ``devices`` (default: all devices of all
    processes)."""
    return Mesh(np.asarray(jax.devices() if devices is None else devices), (RUNS,))


def mesh_for_runs(runs: int, mesh: Mesh) -> Mesh:
    """``mesh``, or in a single process with fewer ``runs`` than devices, its first
    ``max(runs, 2)`` devices: padding would only repeat work on the idle ones. (Several
    processes keep the whole mesh: each must own a shard.)

    Never one device of several: XLA compiles a one-device program without partitioning it,
    and rewrites some of its divisions into products with a reciprocal that a partitioned
    program keeps (optax's Adam bias correction in the evaluation's MLPs), so a run alone
    would round differently from the same run in a larger group. The second device computes
    a copy of the run, on a core that would otherwise idle.
    """
    if jax.process_count() == 1 and runs < mesh.size:
        return runs_mesh(list(mesh.devices.flat[: max(runs, 2)]))
    return mesh


def padded_size(runs: int, mesh: Mesh) -> int:
    """``runs`` rounded up to a multiple of the mesh's device count."""
    return math.ceil(runs / mesh.size) * mesh.size


def runs_at_once(mesh: Mesh) -> int | None:
    """How many runs each device of ``mesh`` computes as one vmapped batch by default.

    None (all of its runs) on accelerators, which need the batch to fill them; 1 on CPU devices,
    where stacking runs does not make the matrix products any larger (XLA:CPU computes a vmapped
    product as one product per run), and one device per core (:func:`use_cpu_cores`) already
    keeps every core busy: mapped runs were 1.2-1.5x faster there (``benchmarks/RESULTS.md``).
    One run at a time also makes a run's numbers independent of the runs that share its device:
    XLA rounds a vmapped batch of one run differently from a batch of several.
    """
    return 1 if mesh.devices.flat[0].platform == "cpu" else None


def per_run(fn: Callable, mesh: Mesh, at_once: int | None) -> Callable:
    """``fn`` of one run's arrays, lifted to stacked runs sharded over ``mesh``'s run axis.

    Each device computes its own block of runs (``shard_map``: no run waits on another device
    and no collective is needed), all of them as one vmapped batch (``at_once=None``) or
    ``lax.map``-ped, ``at_once`` runs vmapped together per map step (1: one run at a time).
    Every argument and result has a leading run axis, a multiple of the mesh size.
    """
    runs = PartitionSpec(RUNS)
    if at_once is None:
        body = jax.vmap(fn)
    elif at_once == 1:

        def body(*args):
            return map_runs(fn, *args)

    else:

        def body(*args):
            return jax.lax.map(lambda a: fn(*a), args, batch_size=at_once)

    # Runs never communicate, so there is nothing for shard_map's varying-axis types to check;
    # with the check on, every loop that starts from a constant carry would need a pcast.
    return jax.shard_map(body, mesh=mesh, in_specs=runs, out_specs=runs, check_vma=False)


def map_runs(fn: Callable, *args: Any) -> Any:
    """``fn`` applied to each run of ``args`` (leading axis = runs), one after another.

    As ``lax.map``, but the loop's trip count is hidden from XLA: XLA removes a loop it sees
    running once and fuses the body with its surroundings, which rounds some operations
    differently (a division by a broadcast becomes a product with its reciprocal), so a device
    with one run computed it differently from a device with several. Behind an optimisation
    barrier every run count compiles the same loop body.
    """
    n = jax.tree.leaves(args)[0].shape[0]
    first = jax.tree.map(lambda x: x[0], args)
    shapes = jax.eval_shape(fn, *first)
    init = jax.tree.map(lambda s: jnp.zeros((n, *s.shape), s.dtype), shapes)

    def body(i, outs):
        run = jax.tree.map(lambda x: jax.lax.dynamic_index_in_dim(x, i, keepdims=False), args)
        out = fn(*run)
        return jax.tree.map(lambda o, v: jax.lax.dynamic_update_index_in_dim(o, v, i, 0), outs, out)

    trips = jax.lax.optimization_barrier(jnp.int32(n))
    return jax.lax.fori_loop(0, trips, body, init)


def pad_runs(tree: Any, size: int) -> Any:
    """Pads the leading (run) axis of every host array in ``tree`` to ``size`` by repeating
    the first run (a valid configuration, so padded runs cannot fail validation or diverge
    differently from a real run)."""

    def pad(x):
        x = np.asarray(x)
        extra = size - x.shape[0]
        return np.concatenate([x, np.repeat(x[:1], extra, axis=0)]) if extra else x

    return jax.tree.map(pad, tree)


def shard_runs(tree: Any, mesh: Mesh) -> Any:
    """Places host arrays (leading axis = runs, a multiple of the mesh size) on the mesh.

    Works unchanged with several processes: each process fills only its addressable shards.
    """
    sharding = NamedSharding(mesh, PartitionSpec(RUNS))

    def put(x):
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(put, tree)


def barrier(name: str) -> None:
    """Blocks until every process has reached the barrier ``name``; a no-op in one process.

    Every process must pass the same barriers in the same order. The wait goes through JAX's
    coordination service, whose barriers take a timeout (:data:`BARRIER_TIMEOUT_S`), rather than
    through a CPU collective: the collectives backend (Gloo) gives a peer only 30 s to join,
    which a process that is still compiling or sharing its core can miss. JAX's public API
    exposes no such barrier; its own array serialisation uses this client the same way.
    """
    if jax.process_count() == 1:
        return
    global _barriers
    _barriers += 1
    # Barrier ids must be unique within a job; every process counts the same barriers.
    jax_distributed.global_state.client.wait_at_barrier(
        f"jaxmmcl/{_barriers}/{name}", timeout_in_ms=BARRIER_TIMEOUT_S * 1000
    )


def to_host(tree: Any) -> Any:
    """Gathers (possibly multi-process) arrays into numpy arrays on every process."""
    if jax.process_count() > 1:
        barrier("gather")
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)
