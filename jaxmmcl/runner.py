"""Running a sweep: train each group as one sharded program, evaluate it, write the results.

A sweep's groups (one static config each) are split into programs of at most as many runs as
fit in device memory (:func:`plan_sweep`). Each program trains its runs as one ``jit(vmap)``
program over the device mesh, checkpointing its state with Orbax; when it is evaluated, its rows
are stored, so a killed sweep resumed with ``resume=True`` skips finished programs and continues
the interrupted one from its last checkpoint, with results identical to an uninterrupted sweep.

Output folder layout::

    DIR/config.yaml     the resolved sweep (``jaxmmcl run DIR/config.yaml`` repeats it)
    DIR/provenance.yaml versions, devices, start and end, each program's times
                        (:mod:`jaxmmcl.provenance`)
    DIR/results.csv     one row per run x encoder x factor
    DIR/losses.csv      the mean training loss of every log_every chunk of every run
    DIR/NAME.md         tables of the sweep's report, with the figures NAME-*.png
    DIR/state/          progress of an unfinished sweep (removed when the sweep completes)
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import shutil
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import numpy as np
import yaml
from jax.sharding import Mesh
from tqdm.auto import tqdm

from jaxmmcl import interrupts, provenance, tracking
from jaxmmcl.checkpoints import GroupCheckpoint
from jaxmmcl.config import ConfigError
from jaxmmcl.distributed import barrier, is_writer, runs_mesh
from jaxmmcl.reports import write_report
from jaxmmcl.results import read_results, read_yaml, result_columns, write_atomic, write_csv
from jaxmmcl.sweeps import Run, Sweep

# Fraction of a device's memory a program may plan for; the rest is XLA's working space.
MEMORY_FRACTION = 0.5


@dataclass(frozen=True)
class Program:
    """One compiled training program of a sweep: some or all runs of one group.

    Attributes:
      group: index of the group (one static config) in the sweep.
      part: index of this program within its group (groups too large for memory are split).
      static: the group's static config (its experiment's).
      runs: the runs trained together.
    """

    group: int
    part: int
    static: Any
    runs: tuple[Run, ...]

    @property
    def name(self) -> str:
        """A stable identifier, used for the program's state files."""
        return f"group{self.group:03d}-part{self.part:03d}"


def device_memory_bytes() -> int:
    """Memory of one device: the allocator's limit on accelerators; on CPU, the host's physical
    memory shared by its local devices."""
    device = jax.local_devices()[0]
    stats = device.memory_stats() if device.platform != "cpu" else None
    if stats and "bytes_limit" in stats:
        return int(stats["bytes_limit"])
    host = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return host // jax.local_device_count()


def plan_sweep(sweep: Sweep, mesh: Mesh, max_runs: int | None = None) -> list[Program]:
    """Splits the sweep's groups into programs that fit in device memory.

    Args:
      sweep: the sweep.
      mesh: the device mesh the runs are sharded over.
      max_runs: an upper bound on runs per program (default: the experiment's
        ``program_size``, from its memory estimate).

    Raises:
      ConfigError: a group asks for what the mesh's devices cannot compute (a
        ``train.precision``), or one of its runs alone would not fit in a device's memory
        (estimated by the experiment's ``memory_per_run``).
    """
    experiment = sweep.kind
    programs = []
    memory = device_memory_bytes()
    budget = MEMORY_FRACTION * memory
    for g, (static, runs) in enumerate(sweep.groups()):
        experiment.check(static, mesh)
        need = experiment.memory_per_run(static)
        if need > budget:
            raise ConfigError(
                f"{experiment.too_large(static)}: one run needs about {_bytes(need)}, more "
                f"than {MEMORY_FRACTION:.0%} of a device's {_bytes(memory)}; lower them"
            )
        limit = experiment.program_size(static, mesh, budget)
        if max_runs is not None:
            limit = min(limit, max(max_runs, 1))
        for p, start in enumerate(range(0, len(runs), limit)):
            programs.append(Program(g, p, static, tuple(runs[start : start + limit])))
    return programs


def describe_plan(sweep: Sweep, programs: list[Program], mesh: Mesh) -> str:
    """A plain-text table of the plan (what ``--dry-run`` prints): one line per program."""
    experiment = sweep.kind
    lines = [
        f"sweep {sweep.name!r}: {len(sweep.runs)} runs in {len(sweep.groups())} groups, "
        f"{len(programs)} programs, {mesh.size} device(s)",
        f"{'program':<18}{'runs':>5} {'padded':>6}  {'memory/device':>13}  "
        f"{'train FLOP':>10}  {'eval FLOP':>10}  static config",
    ]
    total_train = total_eval = 0.0
    for program in programs:
        static = program.static
        runs = len(program.runs)
        padded = experiment.padded(runs, mesh)
        memory = experiment.memory_per_run(static) * padded / mesh.size
        train = experiment.train_flops(static) * runs
        evaluation = experiment.eval_flops(static) * runs
        total_train += train
        total_eval += evaluation
        lines.append(
            f"{program.name:<18}{runs:>5} {padded:>6}  {_bytes(memory):>13}  "
            f"{train:>10.2e}  {evaluation:>10.2e}  {experiment.describe(static)}"
        )
    lines.append(f"total: {total_train:.2e} FLOP training, {total_eval:.2e} FLOP evaluation")
    return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError


def run_params(sweep: Sweep, run: Run) -> dict[str, Any]:
    """A run's ``seed`` and grid parameters, by ``results.csv`` column."""
    flat = run.config.flat()
    params = {col: run.params.get(col, flat.get(col)) for col in sweep.param_columns}
    return {"seed": run.config.seed, **params}


class SweepProgress:
    """One progress display for a whole sweep: run-steps done of all programs, the current
    program's steps/s, time left."""

    def __init__(self, programs: list[Program], enabled: bool):
        total = sum(len(p.runs) * p.static.train.steps for p in programs)
        self._bar = tqdm(
            total=total,
            unit="run-step",
            unit_scale=True,
            disable=not enabled,
            file=sys.stderr,
            dynamic_ncols=True,
            smoothing=0.05,
        )
        self._count = len(programs)
        self._base = 0
        self._runs = 1
        # (steps, time) of the current program's first report: its rate excludes compilation
        # and any steps restored from a checkpoint.
        self._first: tuple[int, float] | None = None

    def start(self, k: int, program: Program) -> None:
        """Marks the start of the ``k``-th program."""
        self._base = self._bar.n
        self._runs = len(program.runs)
        self._first = None
        self._bar.set_description(f"program {k + 1}/{self._count} ({self._runs} runs)")
        self._bar.set_postfix_str("compiling", refresh=True)

    def skip(self, program: Program) -> None:
        """Counts a program finished in an earlier session."""
        self._bar.update(len(program.runs) * program.static.train.steps)

    def steps(self, done: int, total: int) -> None:
        """Progress callback of :func:`jaxmmcl.grid.train_grid` (after every chunk; a
        signal that arrived during the chunk stops the sweep here)."""
        interrupts.check()
        now = time.perf_counter()
        if self._first is None:
            self._first = (done, now)
        self._bar.update(self._base + done * self._runs - self._bar.n)
        first_done, first_time = self._first
        rate = (done - first_done) / (now - first_time) if now > first_time else 0.0
        self._bar.set_postfix_str(f"step {done}/{total}, {rate:.1f} steps/s", refresh=True)

    def note(self, text: str) -> None:
        """Shows what the current program is doing (compiling, evaluating)."""
        self._bar.set_postfix_str(text, refresh=True)

    def close(self) -> None:
        self._bar.close()


LOCK_FILE = ".lock"


@contextlib.contextmanager
def folder_lock(out: Path):
    """Holds an exclusive lock on ``out`` (created if missing) for the ``with`` block.

    The lock is ``flock`` on ``out/.lock``, which the kernel releases when the process ends in
    any way, so a crashed sweep never leaves a stale lock behind. The file holds the pid of the
    process that locked it, for the message a second writer gets.

    Raises:
      ConfigError: ``out`` cannot be created, or another process holds its lock.
    """
    try:
        out.mkdir(parents=True, exist_ok=True)
        fd = os.open(out / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise ConfigError(f"--out {str(out)!r}: cannot write there ({err.strerror})") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError(
                f"--out {str(out)!r}: another jaxmmcl process (pid {holder}) is writing there; "
                "wait for it or choose another folder"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def _check_out(out: Path) -> None:
    """Raises ConfigError when ``out`` cannot be a folder of results; reads, never writes."""
    if out.exists() and not out.is_dir():
        raise ConfigError(f"--out {str(out)!r}: exists and is not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise ConfigError(f"--out {str(out)!r}: cannot write there ({str(parent)!r})")


def is_finished(out: Path) -> bool:
    """Whether ``out`` holds a finished sweep: its results, and no state of one in progress."""
    return (out / "results.csv").is_file() and not (out / "state").exists()


def _check_folder(out: Path, sweep: Sweep, resume: bool, force: bool) -> None:
    """Raises ConfigError when ``out`` may not take ``sweep``; reads, never writes."""
    saved = out / "config.yaml"
    if force or not saved.exists():
        return
    if not resume:
        raise ConfigError(
            f"--out {str(out)!r}: already holds a sweep; pass --resume to continue it "
            "or --force to start over"
        )
    if yaml.safe_load(saved.read_text()) != _roundtrip(sweep.to_dict()):
        raise ConfigError(
            f"--resume: {str(out)!r} holds a different sweep than the one given "
            f"(compare with {str(saved)!r}); use another --out or --force"
        )


PLAN_FILE = "plan.json"


def _plan(programs: list[Program]) -> dict[str, list[int]]:
    """Program name -> the indices of its runs."""
    return {p.name: [run.index for run in p.runs] for p in programs}


def _check_plan(out: Path, programs: list[Program], resume: bool) -> None:
    """Raises ConfigError when a resumed sweep's programs are not the ones it started with
    (their checkpoints would not fit): another device count or ``--max-runs``. Reads only."""
    saved = out / "state" / PLAN_FILE
    if not resume or not saved.is_file():
        return
    try:
        planned = json.loads(saved.read_text())
    except ValueError:  # a damaged record: the programs' own records still guard each result
        return
    if planned != _plan(programs):
        raise ConfigError(
            f"--resume: {str(out)!r} was planned as {len(planned)} program(s) "
            f"({', '.join(f'{n}: {len(r)} runs' for n, r in list(planned.items())[:3])}...), "
            f"this process plans {len(programs)}; resume it with the device count "
            "(JAX_NUM_CPU_DEVICES) and --max-runs it started with"
        )


def _roundtrip(tree: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(tree, sort_keys=False))


def run_sweep(
    sweep: Sweep,
    out_dir: str | Path,
    *,
    show_progress: bool = True,
    resume: bool = False,
    force: bool = False,
    checkpoint_every: float = 300.0,
    max_runs: int | None = None,
    mesh: Mesh | None = None,
    log: Sequence[str] = (),
) -> list[dict]:
    """Runs every program of ``sweep`` and writes the result files into ``out_dir``.

    Args:
      sweep: the sweep.
      out_dir: the output folder.
      show_progress: one progress bar for the whole sweep on stderr.
      resume: continue the sweep already in ``out_dir`` (which must be the same sweep).
      force: discard whatever ``out_dir`` holds.
      checkpoint_every: seconds between checkpoints of a training program (0: every chunk).
      max_runs: at most this many runs per program (default: as many as fit in memory).
      mesh: the device mesh (default: all devices of all processes).
      log: trackers that follow the runs live (:data:`jaxmmcl.tracking.TRACKERS`:
        ``"tensorboard"``, ``"wandb"``).

    Returns:
      The result rows (as written to ``results.csv``).

    With ``resume``, a sweep that already finished in ``out_dir`` is not run again: its
    results are read back (and a line on stderr says so).

    Raises:
      ConfigError: ``out_dir`` holds another sweep, or holds one and neither ``resume`` nor
        ``force`` is set; it cannot be written; or another process is writing to it.
    """
    out = Path(out_dir)
    mesh = mesh if mesh is not None else runs_mesh()
    programs = plan_sweep(sweep, mesh, max_runs)
    _check_out(out)
    tracking.require(log)
    if not (resume and is_finished(out)):
        for static, _ in sweep.groups():
            sweep.kind.prepare(static)
    with folder_lock(out) if is_writer() else contextlib.nullcontext():
        return _run_sweep(
            sweep, out, programs, mesh, show_progress, resume, force, checkpoint_every, log
        )


def _run_sweep(
    sweep: Sweep,
    out: Path,
    programs: list[Program],
    mesh: Mesh,
    show_progress: bool,
    resume: bool,
    force: bool,
    checkpoint_every: float,
    log: Sequence[str],
) -> list[dict]:
    _check_folder(out, sweep, resume, force)
    _check_plan(out, programs, resume and not force)
    if resume and not force and is_finished(out):
        if is_writer():
            print(
                f"--resume: {str(out)!r} holds this sweep, finished; nothing to do "
                "(--force runs it again)",
                file=sys.stderr,
            )
        return read_results(out)
    # Every process checks the folder before any writes to it: a process that looked after
    # process 0 had written config.yaml would take the new sweep for an old one.
    barrier("folder checked")
    writer = is_writer()
    state_dir = out / "state"
    if writer:
        if force:
            shutil.rmtree(state_dir, ignore_errors=True)
        state_dir.mkdir(parents=True, exist_ok=True)
        write_atomic(out / "config.yaml", yaml.safe_dump(sweep.to_dict(), sort_keys=False))
        prov = _start_provenance(out, resume and not force)
        trackers = tracking.Trackers(log, out, sweep.name, tracking.sweep_id(out, prov["started"]))
    else:
        trackers = tracking.Trackers((), out, sweep.name, "")
    barrier("folder written")
    start = time.perf_counter()
    try:
        rows, loss_rows, timings = _run_programs(
            sweep, state_dir, programs, mesh, show_progress and writer, checkpoint_every, trackers
        )
    finally:
        trackers.close()
    interrupts.check()
    if writer:
        prov |= {"finished": provenance.now(), "programs": timings}
        write_atomic(out / provenance.FILE, yaml.safe_dump(prov, sort_keys=False))
        _write_outputs(sweep, out, rows, loss_rows)
        shutil.rmtree(state_dir, ignore_errors=True)
    if show_progress and writer:
        elapsed = time.perf_counter() - start
        print(
            f"{len(sweep.runs)} runs in {len(programs)} programs, {elapsed:.0f} s",
            file=sys.stderr,
        )
    return sorted(rows, key=lambda r: r["run"])


def _run_programs(
    sweep: Sweep,
    state_dir: Path,
    programs: list[Program],
    mesh: Mesh,
    show_progress: bool,
    checkpoint_every: float,
    trackers: tracking.Trackers,
) -> tuple[list[dict], list[dict], dict[str, dict]]:
    """Runs the programs not finished in ``state_dir`` (reading back those that are), storing
    each one's record there; returns the result rows, loss rows and timings of all."""
    if is_writer():
        write_atomic(state_dir / PLAN_FILE, json.dumps(_plan(programs)))
    finished = {p.name for p in programs if (state_dir / f"{p.name}.json").is_file()}
    progress = SweepProgress(programs, show_progress)
    rows: list[dict[str, Any]] = []
    loss_rows: list[dict[str, Any]] = []
    timings: dict[str, dict[str, Any]] = {}
    for k, program in enumerate(programs):
        interrupts.check()
        record = state_dir / f"{program.name}.json"
        if program.name in finished:
            stored = json.loads(record.read_text())
            rows += stored["rows"]
            loss_rows += stored["losses"]
            if "timing" in stored:  # absent in the records of older versions
                timings[program.name] = stored["timing"]
            progress.skip(program)
            continue
        progress.start(k, program)
        t0 = time.perf_counter()
        rows_k, losses_k, compile_s = _run_program(
            sweep, program, state_dir, mesh, checkpoint_every, progress, trackers
        )
        timing = {
            "runs": len(program.runs),
            "wall_s": round(time.perf_counter() - t0, 2),
            "compile_s": round(compile_s, 2),
        }
        timings[program.name] = timing
        if is_writer():
            write_atomic(record, json.dumps({"rows": rows_k, "losses": losses_k, "timing": timing}))
            shutil.rmtree(state_dir / "checkpoints" / program.name, ignore_errors=True)
        rows += rows_k
        loss_rows += losses_k
        sweep.kind.release()
    progress.close()
    return rows, loss_rows, timings


def _start_provenance(out: Path, resumed: bool) -> dict[str, Any]:
    """Writes ``provenance.yaml`` for a sweep starting (or resumed) in ``out``; returns it."""
    path = out / provenance.FILE
    earlier = None
    if resumed and path.is_file():
        with contextlib.suppress(yaml.YAMLError):  # a damaged record: the start is lost only
            earlier = read_yaml(path.read_text())
    started = earlier.get("started") if isinstance(earlier, dict) else None
    prov = {"started": started or provenance.now()}
    prov["environment"] = provenance.environment()
    write_atomic(path, yaml.safe_dump(prov, sort_keys=False))
    return prov


def _run_program(
    sweep: Sweep,
    program: Program,
    state_dir: Path,
    mesh: Mesh,
    checkpoint_every: float,
    progress: SweepProgress,
    trackers: tracking.Trackers,
) -> tuple[list[dict], list[dict], float]:
    """Trains and evaluates one program; returns its result rows, its loss rows and the
    seconds spent compiling its training programs."""
    experiment = sweep.kind
    static, runs = program.static, list(program.runs)
    seeds = np.asarray([run.config.seed for run in runs])
    hypers = experiment.stack([run.config.hyper for run in runs])
    checkpoint = GroupCheckpoint(state_dir / "checkpoints" / program.name, checkpoint_every)
    on_chunk = None
    if trackers:
        trackers.start([tracking.TrackedRun(run.index, run_params(sweep, run)) for run in runs])

        def on_chunk(step: int, losses: np.ndarray) -> None:
            trackers.log_losses(
                step, {run.index: float(x) for run, x in zip(runs, losses, strict=True)}
            )

    try:
        trained = experiment.train(
            static,
            seeds,
            hypers,
            progress=progress.steps,
            on_chunk=on_chunk,
            checkpoint=checkpoint,
            mesh=mesh,
        )
    finally:
        checkpoint.close()
    progress.note("evaluating")
    scored = experiment.evaluate(static, seeds, hypers, trained)
    rows = [
        {"run": run.index, "group": program.group, **run_params(sweep, run)} | row
        for run, run_rows in zip(runs, scored, strict=True)
        for row in run_rows
    ]
    if trackers:
        trackers.finish({run.index: [r for r in rows if r["run"] == run.index] for run in runs})
    losses = [
        {
            "run": run.index,
            "step": min((c + 1) * static.train.log_every, static.train.steps),
            "loss": float(loss),
        }
        for i, run in enumerate(runs)
        for c, loss in enumerate(trained.loss_history[i])
    ]
    if is_writer():
        for name, text in experiment.files(static).items():
            write_atomic(state_dir.parent / name, text)
    return rows, losses, trained.compile_seconds


def _write_outputs(sweep: Sweep, out: Path, rows: list[dict], loss_rows: list[dict]) -> None:
    rows = sorted(rows, key=lambda r: r["run"])
    write_csv(out / "results.csv", rows, result_columns(sweep.param_columns, rows))
    write_csv(
        out / "losses.csv", sorted(loss_rows, key=lambda r: r["run"]), ["run", "step", "loss"]
    )
    write_report(out, sweep.to_dict())
