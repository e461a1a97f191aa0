"""The experiments a sweep can run: their interface, :class:`Experiment`, and the registry
:data:`EXPERIMENTS`, selected by a sweep file's top-level ``experiment:`` key.

* ``simulation`` (the default): the paper's numerical simulation and its neighbours, latents
  through mechanisms into views (:mod:`jaxmmcl.config`, :mod:`jaxmmcl.grid`,
  :mod:`jaxmmcl.evaluation.protocol`);
* ``imgtxt``: image/caption pairs of the Multimodal3DIdent format
  (:mod:`jaxmmcl.imgtxt.sweep`).

The runner (:mod:`jaxmmcl.runner`) plans, checkpoints, resumes, tracks and writes every
experiment's runs the same way; an experiment says how its run configs are parsed, how large a
run is, how a program of runs trains and how its runs are scored. A new experiment is one
class with these methods and one line in :data:`EXPERIMENTS`.
"""

from __future__ import annotations

import dataclasses
import gc
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

import jax
import numpy as np
from jax.sharding import Mesh

from jaxmmcl import config, grid
from jaxmmcl.distributed import pad_runs, padded_size, to_host
from jaxmmcl.evaluation import protocol
from jaxmmcl.evaluation.protocol import EvalResult, evaluate_grid, factors, readouts
from jaxmmcl.grid import GridResult, train_grid
from jaxmmcl.imgtxt.sweep import EXPERIMENT as IMAGE_TEXT
from jaxmmcl.precision import check_supported
from jaxmmcl.training import memory_per_run, step_flops


class Trained(Protocol):
    """What the runner reads of a trained program (R runs)."""

    @property
    def loss_history(self) -> np.ndarray:
        """``(R, n_chunks)`` mean training loss per ``train.log_every`` chunk."""

    @property
    def final_loss(self) -> np.ndarray:
        """``(R,)``."""

    @property
    def status(self) -> np.ndarray:
        """``(R,)`` ``ok``, ``diverged`` or ``failed``."""

    @property
    def compile_seconds(self) -> float: ...


class Experiment(Protocol):
    """An experiment of the shared runner.

    A run config (``run_config``) has ``static`` (hashable; runs with equal ones form a group,
    and it has ``train.steps`` and ``train.log_every``), ``hyper`` (traced values), ``seed``
    and ``flat()`` (every dotted key). ``traced_keys`` maps the traced dotted keys to their
    ``hyper`` fields.
    """

    name: str
    traced_keys: Mapping[str, str]

    def keys(self) -> list[str]:
        """Every valid dotted key."""

    def run_config(self, flat: Mapping[str, Any]) -> Any:
        """A validated run config from dotted keys; raises ConfigError naming a bad one."""

    def defaults(self) -> dict[str, Any]:
        """Every key's default, nested."""

    def stack(self, hypers: list) -> Any:
        """Runs' ``hyper`` stacked into arrays with a leading run axis."""

    def check(self, static: Any, mesh: Mesh) -> None:
        """Raises ConfigError for a group the mesh's devices cannot run."""

    def memory_per_run(self, static: Any) -> float:
        """Bytes of device memory one run needs, roughly."""

    def program_size(self, static: Any, mesh: Mesh, budget: float) -> int:
        """The most runs one program trains, given ``budget`` bytes per device."""

    def too_large(self, static: Any) -> str:
        """The keys that set a run's size (``key=value, ...``), for the message that one run
        does not fit."""

    def padded(self, runs: int, mesh: Mesh) -> int:
        """Runs a program of ``runs`` computes (padding included)."""

    def describe(self, static: Any) -> str:
        """The static config in one line (``--dry-run``)."""

    def prepare(self, static: Any) -> None:
        """Reads or draws what the group's runs share (data), before anything is written:
        raises ConfigError for bad data."""

    def train_flops(self, static: Any) -> float:
        """FLOPs of training one run."""

    def eval_flops(self, static: Any) -> float:
        """FLOPs of scoring one run."""

    def train(
        self,
        static: Any,
        seeds: np.ndarray,
        hypers: Any,
        *,
        progress: Callable[[int, int], None] | None,
        on_chunk: Callable[[int, np.ndarray], None] | None,
        checkpoint: Any,
        mesh: Mesh,
    ) -> Trained:
        """Trains R runs as one program on ``mesh``: ``progress(steps_done, steps)`` and
        ``on_chunk(step, (R,) losses)`` after every chunk (first replaying restored chunks),
        resuming from and saving to ``checkpoint``
        (:class:`jaxmmcl.checkpoints.GroupCheckpoint`)."""

    def evaluate(
        self, static: Any, seeds: np.ndarray, hypers: Any, trained: Any
    ) -> list[list[dict[str, Any]]]:
        """Per run, its result rows: ``encoder``, ``subset``, ``factor``, ``role`` (and
        ``latent``), score columns, ``val_loss``, ``loss``, ``status``."""

    def files(self, static: Any) -> dict[str, str]:
        """Extra files of the output folder: name -> text."""

    def release(self) -> None:
        """Frees what a finished program compiled, if the next does not reuse it."""


class Simulation:
    """The numerical simulation: :mod:`jaxmmcl.config`'s run configs, trained by
    :func:`jaxmmcl.grid.train_grid`, scored by :func:`jaxmmcl.evaluation.protocol.evaluate_grid`."""

    name = "simulation"
    traced_keys = config.TRACED_KEYS

    def keys(self) -> list[str]:
        return config.all_keys()

    def run_config(self, flat: Mapping[str, Any]) -> config.RunConfig:
        return config.run_config_from_dict(flat)

    def defaults(self) -> dict[str, Any]:
        return config.RunConfig().to_dict()

    def stack(self, hypers: list[config.Hyperparams]) -> config.HyperArrays:
        return config.stack_hyperparams(hypers)

    def check(self, static: config.StaticConfig, mesh: Mesh) -> None:
        check_supported(static.train.precision, mesh.devices.flat[0].platform)

    def memory_per_run(self, static: config.StaticConfig) -> float:
        return memory_per_run(static)

    def program_size(self, static: config.StaticConfig, mesh: Mesh, budget: float) -> int:
        return max(1, int(budget // memory_per_run(static))) * mesh.size

    def too_large(self, static: config.StaticConfig) -> str:
        return f"train.batch_size={static.train.batch_size}, model.widths={list(static.widths())}"

    def padded(self, runs: int, mesh: Mesh) -> int:
        return padded_size(runs, mesh)

    def describe(self, static: config.StaticConfig) -> str:
        sim = static.simulation
        if sim.structure == "paper":
            shape = f"n=({sim.n_c},{sim.n_s},{sim.n_m})"
            shape += f" views={sim.n_views}" if sim.n_views != 2 else ""
        elif sim.structure == "pair":
            shape = f"pair n_z={sim.n_z}"
        else:
            shape = f"{sim.structure} views={[list(v) for v in sim.views]}"
        if (sim.marginal, sim.conditional) != ("normal", "mask"):
            # A generalised normal's exponent, as p=3 after its name.
            marginal = sim.marginal + (f"(p={sim.marginal_p})" if sim.marginal_p != 2 else "")
            conditional = sim.conditional
            conditional += f"(p={sim.conditional_p})" if sim.conditional_p != 2 else ""
            shape += f" {marginal}/{conditional}"
        loss = static.train.loss
        loss += f"(p={static.train.loss_p})" if static.train.loss_p != 2 else ""
        return (
            f"{shape} {sim.mixing}x{sim.mixing_layers}"
            f"{' shared-f' if sim.shared_mixing else ''} widths={list(static.widths())}"
            f" enc={static.encoding_size()}{' shared-g' if static.model.shared_encoder else ''}"
            f"{' ' + static.model.normalize if static.model.normalize != 'none' else ''}"
            f" loss={loss} batch={static.train.batch_size} steps={static.train.steps}"
            + (f" n_train={sim.n_train}" if sim.n_train else "")
        )

    def prepare(self, static: config.StaticConfig) -> None:
        """Nothing: every run draws its own simulation."""

    def train_flops(self, static: config.StaticConfig) -> float:
        return step_flops(static) * static.train.steps

    def eval_flops(self, static: config.StaticConfig) -> float:
        """Approximately: the kernel ridge's Choleskys dominate (per encoding, 16 candidates x
        3 folds of size 2n/3 and up to one refit of size n per block)."""
        if static.eval.nonlinear != "kernel_ridge":
            return 0.0
        n = static.eval.n_fit
        blocks = len(factors(static))
        return len(readouts(static)) * (48 * (2 * n / 3) ** 3 / 3 + blocks * n**3 / 3)

    def train(self, static, seeds, hypers, *, progress, on_chunk, checkpoint, mesh) -> GridResult:
        return train_grid(
            static,
            seeds,
            hypers,
            progress=progress,
            on_chunk=on_chunk,
            checkpoint=checkpoint,
            mesh=mesh,
        )

    def evaluate(self, static, seeds, hypers, trained: GridResult) -> list[list[dict]]:
        return run_rows(static, trained, evaluate_program(static, seeds, hypers, trained))

    def files(self, static: config.StaticConfig) -> dict[str, str]:
        return {}

    def release(self) -> None:
        """Frees the compiled programs of the finished training program.

        A compiled XLA:CPU executable holds its machine code in memory mappings until it is
        freed, and the process may hold only ``vm.max_map_count`` mappings (65,530 by
        default): a sweep kept every group's programs (about 1,600 mappings a group of the
        discrete sweep), and after 19 groups LLVM could map no more ("Cannot allocate
        memory") and the process crashed. The next program compiles its own (from XLA's
        persistent cache where it can).
        """
        grid.grid_programs.cache_clear()
        grid.simulation_program.cache_clear()
        protocol.programs.cache_clear()
        jax.clear_caches()
        gc.collect()


def factor_roles(static: config.StaticConfig, factors: Sequence[str]) -> dict[tuple[int, str], str]:
    """``(view, factor) -> role`` of every scored factor a view observes (the ``role`` column;
    a permuted content factor has its content's role with ``_perm``)."""
    structure = static.structure
    roles = {}
    for v in range(structure.n_views):
        for name in factors:
            base = name.removesuffix("_perm")
            if structure.observes(v, base):
                role = structure.factor(base).role
                roles[v, name] = role + ("_perm" if name != base else "")
    return roles


def run_rows(
    static: config.StaticConfig, trained: GridResult, scores: EvalResult
) -> list[list[dict[str, Any]]]:
    """Per run, its result rows: one per readout x factor, then (with ``eval.per_latent``) one
    per readout x factor component."""
    out = []
    status = trained.status
    roles = factor_roles(static, scores.factors)
    sizes = [static.structure.factor(f.removesuffix("_perm")).size for f in scores.factors]
    block = {c: v for c, v in scores.scores.items() if "@" not in c}
    latent = {c.split("@")[0]: v for c, v in scores.scores.items() if c.endswith("@latent")}
    for i in range(len(status)):
        rows = []
        diverged = bool(trained.diverged[i])
        shared = {
            "val_loss": math.nan if diverged else float(scores.val_loss[i]),
            "loss": float(trained.final_loss[i]),
            "status": str(status[i]),
        }

        def value(array, *index, i=i, diverged=diverged):
            return math.nan if diverged else float(array[(i, *index)])

        for r, readout in enumerate(scores.readouts):
            head = {"encoder": readout.encoder, "subset": readout.subset or ""}
            column = 0
            for f, factor in enumerate(scores.factors):
                key = head | {"factor": factor, "role": roles.get((readout.view, factor), "")}
                rows.append(key | {c: value(v, r, f) for c, v in block.items()} | shared)
                for component in range(sizes[f]):
                    if latent:
                        scored = {c: value(v, r, column + component) for c, v in latent.items()}
                        rows.append(key | {"latent": component} | scored | shared)
                column += sizes[f]
        out.append(rows)
    return out


def evaluate_program(
    static: config.StaticConfig,
    seeds: np.ndarray,
    hypers: config.HyperArrays,
    trained: GridResult,
) -> EvalResult:
    """Scores a trained program of R runs (``seeds`` and stacked ``hypers``, leading axis R).

    With several processes each scores a slice of the runs; inside a process the runs are
    sharded over its local devices. The scores are gathered onto every process.
    """
    inputs = (seeds, trained.simulation, trained.params, jax.device_get(hypers))
    count, index = jax.process_count(), jax.process_index()
    runs = len(seeds)
    per_process = math.ceil(runs / count)
    mine = jax.tree.map(lambda x: x[index * per_process : (index + 1) * per_process], inputs)
    if len(mine[0]) == 0:  # more processes than runs: score a copy of the first
        mine = jax.tree.map(lambda x: x[:1], inputs)
    # Every process scores per_process runs (padded), so the gather is rectangular.
    mine = pad_runs(mine, per_process)
    scores = evaluate_grid(static, *mine)
    arrays = {name: value[:per_process] for name, value in scores.scores.items()}
    arrays["val_loss"] = scores.val_loss[:per_process]
    arrays = {name: np.asarray(value)[:runs] for name, value in to_host(arrays).items()}
    val_loss = arrays.pop("val_loss")
    return dataclasses.replace(scores, scores=arrays, val_loss=val_loss)


EXPERIMENTS: dict[str, Experiment] = {"simulation": Simulation(), "imgtxt": IMAGE_TEXT}
"""Experiment name (a sweep file's ``experiment:``) -> the experiment."""
