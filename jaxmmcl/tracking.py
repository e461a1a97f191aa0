"""Live tracking of a sweep in TensorBoard or Weights & Biases (``--log``, ``jaxmmcl export``).

Every jaxmmcl run is one tracked run, named ``run-NNNN`` (its index in the sweep), whose
hyperparameters are its seed and grid parameters (the parameter columns of ``results.csv``).
It receives ``train/loss``, the mean training loss of each logging interval at the interval's
last step, as training reaches it, and once the run is evaluated its ``val_loss`` and final
scores: ``score/ENCODER[/SUBSET]/FACTOR/COLUMN`` for every score column of its factor rows
(``results.csv``), at the last training step.

Trackers are called on the host between compiled chunks (:func:`jaxmmcl.grid.train_grid`'s
``on_chunk``), never inside them, and by the writing process only. A registered tracker
(:data:`TRACKERS`) is a class built as ``Tracker(out, sweep_name, sweep_id)`` with the methods
of :class:`Tracker`:

* ``tensorboard``: event files under ``DIR/tensorboard/run-NNNN/``, scalars and the
  hyperparameters (TensorBoard's HParams plugin); needs the ``tensorboard`` package.
* ``wandb``: one W&B run per jaxmmcl run, grouped by the sweep's name, in the project
  ``$WANDB_PROJECT`` (default ``jaxmmcl``), its files under ``DIR/wandb/``; works offline
  (``WANDB_MODE=offline``). Needs the ``wandb`` package.

A program resumed from a checkpoint starts its runs again: TensorBoard's folders of those runs
are written anew with the whole history (the restored intervals first); W&B continues the run
of the same id (``resume="allow"``), keeping the values it already has for repeated steps.
"""

from __future__ import annotations

import hashlib
import importlib.util
import math
import os
import shutil
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from jaxmmcl.errors import ConfigError
from jaxmmcl.results import KEY_COLUMNS, score_columns


@dataclass(frozen=True)
class TrackedRun:
    """One run as a tracker sees it: ``index`` in the sweep and its hyperparameters (seed and
    grid parameters, by column name)."""

    index: int
    params: Mapping[str, Any]

    @property
    def name(self) -> str:
        return f"run-{self.index:04d}"


class Tracker(Protocol):
    """What a tracker does, in the order the runner calls it."""

    def start(self, runs: Sequence[TrackedRun]) -> None:
        """Opens these runs (one program's; earlier programs' runs are finished)."""

    def log_losses(self, step: int, losses: Mapping[int, float]) -> None:
        """The training loss of the interval ending at ``step``, by run index."""

    def finish(self, rows: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
        """The runs' ``results.csv`` rows, by run index: logs their final values and closes
        them."""

    def close(self) -> None:
        """Releases everything (called once, also when the sweep stops early)."""


def final_values(rows: Sequence[Mapping[str, Any]]) -> tuple[dict[str, float], str]:
    """``(values, status)`` of one run's result rows: ``val_loss``, ``loss`` and every score
    of its factor rows (per-latent rows are left to ``results.csv``) by tracked name."""
    values: dict[str, float] = {}
    where_columns = [k for k in KEY_COLUMNS if k not in ("role", "latent")]
    for row in rows:
        if row.get("latent", "") != "":
            continue
        where = "/".join(str(row[k]) for k in where_columns if row.get(k, "") != "")
        for column in score_columns():
            value = row.get(column, "")
            if value != "":
                values[f"score/{where}/{column}"] = float(value)
    first = rows[0]
    values["val_loss"] = float(first["val_loss"])
    values["loss"] = float(first["loss"])
    return values, str(first["status"])


class TensorBoard:
    """Event files under ``out/tensorboard/run-NNNN/`` (module docstring)."""

    def __init__(self, out: Path, sweep_name: str, sweep_id: str):
        from tensorboard.compat.proto import event_pb2, summary_pb2
        from tensorboard.plugins.hparams import summary_v2
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self._event, self._summary, self._hparams = event_pb2, summary_pb2, summary_v2
        self._writer_class = EventFileWriter
        self._root = out / "tensorboard"
        self._writers: dict[int, Any] = {}
        self._last_step = 0

    def start(self, runs: Sequence[TrackedRun]) -> None:
        for run in runs:
            folder = self._root / run.name
            shutil.rmtree(folder, ignore_errors=True)
            writer = self._writer_class(str(folder))
            summary = self._hparams.hparams_pb(dict(_hparam_values(run.params)), trial_id=run.name)
            writer.add_event(self._event.Event(wall_time=time.time(), step=0, summary=summary))
            self._writers[run.index] = writer

    def _scalars(self, index: int, step: int, values: Mapping[str, float]) -> None:
        value = [self._summary.Summary.Value(tag=k, simple_value=v) for k, v in values.items()]
        event = self._event.Event(
            wall_time=time.time(), step=step, summary=self._summary.Summary(value=value)
        )
        self._writers[index].add_event(event)

    def log_losses(self, step: int, losses: Mapping[int, float]) -> None:
        self._last_step = step
        for index, loss in losses.items():
            self._scalars(index, step, {"train/loss": loss})

    def finish(self, rows: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
        for index, run_rows in rows.items():
            values, _ = final_values(run_rows)
            self._scalars(index, self._last_step, values)
            self._writers.pop(index).close()

    def close(self) -> None:
        for writer in self._writers.values():
            writer.close()
        self._writers.clear()


class WandB:
    """One W&B run per jaxmmcl run (module docstring)."""

    def __init__(self, out: Path, sweep_name: str, sweep_id: str):
        import wandb

        self._wandb = wandb
        self._out = out
        self._group = sweep_name
        self._id = sweep_id
        self._runs: dict[int, Any] = {}

    def start(self, runs: Sequence[TrackedRun]) -> None:
        for run in runs:
            try:
                self._runs[run.index] = self._init(run)
            except self._wandb.errors.Error as err:
                # Not logged in, no network: say so on one line (the sweep resumes with
                # --resume once W&B works, or offline).
                raise ConfigError(
                    f"--log wandb: W&B could not start {run.name} ({err}); log in, or set "
                    "WANDB_MODE=offline, and continue with --resume"
                ) from None

    def _init(self, run: TrackedRun):
        return self._wandb.init(
            project=os.environ.get("WANDB_PROJECT", "jaxmmcl"),
            group=self._group,
            name=run.name,
            id=f"{self._id}-{run.index:04d}",
            resume="allow",
            config=dict(run.params),
            dir=str(self._out),
            reinit="create_new",
            settings=self._wandb.Settings(console="off", x_disable_stats=True, silent=True),
        )

    def log_losses(self, step: int, losses: Mapping[int, float]) -> None:
        for index, loss in losses.items():
            self._runs[index].log({"train/loss": loss}, step=step)

    def finish(self, rows: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
        for index, run_rows in rows.items():
            values, status = final_values(run_rows)
            run = self._runs.pop(index)
            run.summary.update({**values, "status": status})
            run.finish(exit_code=0 if status == "ok" else 1)

    def close(self) -> None:
        for run in self._runs.values():
            run.finish(exit_code=1)
        self._runs.clear()


TRACKERS: dict[str, type] = {"tensorboard": TensorBoard, "wandb": WandB}
"""``--log`` name -> tracker class (module docstring); each needs the package of its name,
installed with the extra of its name (``pip install 'jaxmmcl[tensorboard]'``)."""


def require(names: Sequence[str]) -> None:
    """Raises ConfigError, before anything is written, for a name not in :data:`TRACKERS` or
    whose package is not installed."""
    for name in names:
        if name not in TRACKERS:
            raise ConfigError(f"--log {name!r}: unknown; choose from {sorted(TRACKERS)}")
        if importlib.util.find_spec(name) is None:
            raise ConfigError(
                f"--log {name}: needs the {name} package; pip install 'jaxmmcl[{name}]'"
            )


class Trackers:
    """Several trackers as one :class:`Tracker`; none is a valid (silent) choice."""

    def __init__(self, names: Sequence[str], out: Path, sweep_name: str, sweep_id: str):
        # The names were checked by the caller (require), before anything was written.
        self._trackers = [TRACKERS[n](out, sweep_name, sweep_id) for n in dict.fromkeys(names)]

    def __bool__(self) -> bool:
        return bool(self._trackers)

    def start(self, runs: Sequence[TrackedRun]) -> None:
        for tracker in self._trackers:
            tracker.start(runs)

    def log_losses(self, step: int, losses: Mapping[int, float]) -> None:
        for tracker in self._trackers:
            tracker.log_losses(step, losses)

    def finish(self, rows: Mapping[int, Sequence[Mapping[str, Any]]]) -> None:
        for tracker in self._trackers:
            tracker.finish(rows)

    def close(self) -> None:
        for tracker in self._trackers:
            tracker.close()


def sweep_id(out: Path, started: str) -> str:
    """A W&B-safe id of one sweep folder's sweep (the same on every resume)."""
    return hashlib.sha1(f"{out.resolve()}|{started}".encode()).hexdigest()[:10]


def _hparam_values(params: Mapping[str, Any]):
    """Hyperparameters as TensorBoard's HParams plugin takes them (bool, number or string)."""
    for key, value in params.items():
        if isinstance(value, bool | int | float | str) and not (
            isinstance(value, float) and math.isnan(value)
        ):
            yield key, value
        else:
            yield key, str(value)


def export_sweep(folder: str | Path, to: Sequence[str]) -> int:
    """Sends a finished sweep folder to trackers, as ``--log`` would have while it ran: each
    run's hyperparameters, training losses and final values. Exporting again replaces what an
    earlier export (or ``--log``) wrote: TensorBoard's folders are rewritten, W&B runs keep
    their ids. Returns the number of runs exported.

    Raises:
      ConfigError: an unknown or uninstalled tracker, or a folder without a finished sweep
        (its ``config.yaml``, ``results.csv`` or ``losses.csv`` missing or damaged).
    """
    from jaxmmcl.provenance import FILE as PROVENANCE
    from jaxmmcl.results import read_losses, read_results, read_yaml
    from jaxmmcl.sweeps import load_sweep

    require(to)
    folder = Path(folder)
    if not (folder / "config.yaml").is_file():
        raise ConfigError(f"{str(folder)!r}: not a sweep folder (no config.yaml)")
    sweep = load_sweep(folder / "config.yaml")
    rows, losses = read_results(folder), read_losses(folder)
    started = ""
    if (folder / PROVENANCE).is_file():
        recorded = read_yaml((folder / PROVENANCE).read_text())
        started = str(recorded.get("started", "")) if isinstance(recorded, dict) else ""
    by_run: dict[int, list[dict[str, Any]]] = {}
    for row in rows:
        by_run.setdefault(row["run"], []).append(row)
    curves: dict[int, list[dict[str, Any]]] = {}
    for row in losses:
        curves.setdefault(row["run"], []).append(row)
    trackers = Trackers(to, folder, sweep.name, sweep_id(folder, started))
    try:
        for index, run_rows in sorted(by_run.items()):
            first = run_rows[0]
            params = {"seed": first["seed"]}
            params |= {c: first[c] for c in sweep.param_columns if c in first}
            trackers.start([TrackedRun(index, params)])
            for row in curves.get(index, []):
                trackers.log_losses(row["step"], {index: row["loss"]})
            trackers.finish({index: run_rows})
    finally:
        trackers.close()
    return len(by_run)
