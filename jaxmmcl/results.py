"""Result files: atomic writes, the CSV schema of results and losses, YAML, loading.

``results.csv`` holds one row per run x readout x factor (and, with ``eval.per_latent``, per
factor component). Its columns, in order: ``run``, ``group``, ``seed``, the sweep's parameter
columns, then :data:`KEY_COLUMNS`, the metrics' score columns (:func:`score_columns`, those a
sweep fills) and :data:`RUN_COLUMNS`; ``subset`` and ``latent`` only when its evaluation has
them. ``losses.csv`` holds ``run``, ``step``,
``loss``. :mod:`jaxmmcl.frames` reads both as DataFrames. Every file is written through a
temporary file and a rename, so an interrupted sweep never leaves a truncated one.
"""

from __future__ import annotations

import csv
import io
import os
import re
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import yaml

from jaxmmcl.errors import ConfigError
from jaxmmcl.evaluation.metrics import metric_columns

if TYPE_CHECKING:
    from matplotlib.figure import Figure

STATUSES = ("ok", "diverged", "failed")
"""The outcomes of a run (:func:`jaxmmcl.training.run_status`)."""
FIXED_COLUMNS = ("run", "group", "seed")
KEY_COLUMNS = ("encoder", "subset", "factor", "role", "latent")
"""What a row scores: the readout's encoding, the subset of views whose content it reads
(``eval.readout: subsets``), the factor, the factor's role for the encoding's view (``c``,
``c_perm``, ``s``, ``m``, ``z``; empty when the view does not observe the factor), and the
factor component (per-latent rows; empty on block rows)."""
RUN_COLUMNS = ("val_loss", "loss", "status")
"""A run's validation loss, final training loss and :data:`STATUSES` entry."""


def score_columns() -> tuple[str, ...]:
    """The factor score columns: every registered metric's
    (:func:`jaxmmcl.evaluation.metrics.metric_columns`), in registry order."""
    return tuple(metric_columns())


def result_columns(param_columns: Sequence[str], rows: Sequence[dict[str, Any]]) -> list[str]:
    """The columns of ``results.csv`` for ``rows`` (module docstring). The factor score
    columns and ``subset`` and ``latent`` are written only when some row has a value in them
    (the scores ``eval.metrics`` asks for, the subsets and components of the readouts)."""
    optional = {"subset", "latent", *score_columns()}
    columns = [*FIXED_COLUMNS, *param_columns, *KEY_COLUMNS, *score_columns(), *RUN_COLUMNS]
    return [c for c in columns if c not in optional or any(_filled(r.get(c)) for r in rows)]


def _filled(value: Any) -> bool:
    return value is not None and value != "" and not (isinstance(value, float) and value != value)


def replace_atomic(path: str | Path, write: Callable[[IO[bytes]], None]) -> None:
    """Calls ``write`` on a temporary file in ``path``'s folder, then renames it to ``path``."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:12]}.tmp")
    # Mode 0o666 lets the umask set the permissions, as for any new file (tempfile.mkstemp
    # would leave the result readable by its owner only).
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` (UTF-8) to ``path`` through a temporary file in the same folder and a
    rename."""
    replace_atomic(path, lambda f: f.write(text.encode()))


def save_png(figure: Figure, path: str | Path) -> None:
    """Writes a matplotlib figure as a PNG, atomically like :func:`write_atomic`."""
    replace_atomic(path, lambda f: figure.savefig(f, format="png"))


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Writes rows as CSV with the given column order, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(
        buffer, fieldnames=list(columns), lineterminator="\n", restval="", extrasaction="ignore"
    )
    writer.writeheader()
    writer.writerows(rows)
    write_atomic(path, buffer.getvalue())


def _parse(value: str) -> Any:
    for kind in (int, float):
        try:
            return kind(value)
        except ValueError:
            pass
    return {"True": True, "False": False}.get(value, value)


_REQUIRED_COLUMNS = ("run", "group", "seed", "encoder", "factor", "status")
_LOSS_COLUMNS = ("run", "step", "loss")


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Reads a ``results.csv`` (or the folder holding it) into a list of typed rows (numbers,
    booleans, strings; an empty cell is ``""``). :func:`jaxmmcl.load_results` gives a
    DataFrame.

    Raises:
      ConfigError: naming the file (and line) when it is missing, lacks a column the runner
        writes, holds no rows, or holds a row that is cut short or has an unknown status (a
        file truncated by a crash or an edit).
    """
    path = Path(path)
    return read_rows(path / "results.csv" if path.is_dir() else path, _REQUIRED_COLUMNS)


def read_losses(path: str | Path) -> list[dict[str, Any]]:
    """Reads a ``losses.csv`` (or the folder holding it) as :func:`read_results` does."""
    path = Path(path)
    return read_rows(path / "losses.csv" if path.is_dir() else path, _LOSS_COLUMNS)


def read_rows(path: Path, required: Sequence[str]) -> list[dict[str, Any]]:
    """The typed rows of a CSV the runner wrote, checked as :func:`read_results` says."""
    where = repr(str(path))
    if not path.is_file():
        raise ConfigError(f"{where}: no such file")
    with path.open(newline="") as f:
        reader = csv.DictReader(f)
        header = reader.fieldnames or []
        missing = [c for c in required if c not in header]
        if missing:
            raise ConfigError(f"{where}: not a file of results (no column {missing[0]})")
        rows = []
        for row in reader:
            line = reader.line_num
            if None in row or any(v is None for v in row.values()):
                raise ConfigError(f"{where}, line {line}: cut short or too long (a damaged file)")
            if "status" in row and row["status"] not in STATUSES:
                raise ConfigError(f"{where}, line {line}: unknown status {row['status']!r}")
            rows.append({k: _parse(v) for k, v in row.items()})
    if not rows:
        raise ConfigError(f"{where}: no results (only a header)")
    return rows


class _Loader(yaml.SafeLoader):
    """YAML 1.1 with ``1e-3`` read as a float (plain YAML 1.1 wants ``1.0e-3``), and a key
    repeated in one mapping an error (plain YAML keeps the last value without a word)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, str | int | float | bool) and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str):
    """Parses YAML text with :class:`_Loader`."""
    return yaml.load(text, Loader=_Loader)


def yaml_error_line(where: str, err: yaml.YAMLError) -> str:
    """One line for a YAML error: ``where``, line and column, and the problem."""
    mark = getattr(err, "problem_mark", None)
    problem = getattr(err, "problem", None) or str(err).splitlines()[0]
    if mark is None:
        return f"{where}: invalid YAML ({problem})"
    return f"{where}, line {mark.line + 1}, column {mark.column + 1}: invalid YAML ({problem})"
