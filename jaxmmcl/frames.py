"""Results as pandas DataFrames: the analysis side of ``results.csv`` and ``losses.csv``.

Column types come from what the runner writes, not from pandas' guesses: ``run``, ``group``,
``seed`` and ``step`` are ``int64``; a column whose every value is a number is ``int64`` (all
integers) or ``float64``; ``True``/``False`` columns are ``bool``; every other column is a string
column. An empty cell is missing (``NaN``/``<NA>``) in a numeric or boolean column (``latent`` on
factor rows is ``Int64`` with ``<NA>`` there) and stays ``""`` in a string column, so that a
``groupby`` over ``role`` or ``subset`` keeps every row. Every grid parameter is a column under
its axis name or dotted key (``setting``, ``simulation.p_change``), as in ``results.csv``.

Given a sequence of folders, the frames are concatenated with a leading ``sweep`` column: the
folder's name (its path as given, when two folders share a name). The columns are the union of
the sweeps'; a parameter one sweep lacks is missing on its rows.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jaxmmcl.errors import ConfigError
from jaxmmcl.results import KEY_COLUMNS, read_losses, read_results, score_columns

if TYPE_CHECKING:
    import pandas as pd

PathLike = str | Path


def load_results(paths: PathLike | Sequence[PathLike]) -> pd.DataFrame:
    """One row per row of ``results.csv`` (one run x readout x factor), typed as the module
    says.

    Args:
      paths: a sweep folder (or its ``results.csv``), or a sequence of them; a sequence adds
        the ``sweep`` column.

    Raises:
      ConfigError: naming the file (and line) that is missing, is not a file of results, or is
        damaged (:func:`jaxmmcl.results.read_results`).
    """
    return _frame(paths, read_results)


def load_losses(paths: PathLike | Sequence[PathLike]) -> pd.DataFrame:
    """One row per logged training loss: ``run``, ``step``, ``loss``, then the run's ``group``,
    ``seed``, grid parameters and ``status`` from ``results.csv`` (so a curve can be grouped by
    setting without a join), typed as the module says.

    Args:
      paths: a sweep folder, or a sequence of them; a sequence adds the ``sweep`` column.

    Raises:
      ConfigError: as :func:`load_results`, for ``losses.csv`` or ``results.csv``.
    """
    return _frame(paths, _loss_rows)


def _loss_rows(path: Path) -> list[dict[str, Any]]:
    folder = path.parent if path.suffix == ".csv" else path
    # What differs between a run's rows in results.csv (``loss``: losses.csv has its own).
    per_row = {*KEY_COLUMNS, *score_columns(), "val_loss", "loss"}
    per_run: dict[int, dict[str, Any]] = {}
    for row in read_results(folder):
        per_run.setdefault(row["run"], {k: v for k, v in row.items() if k not in per_row})
    rows = []
    for row in read_losses(folder):
        if row["run"] not in per_run:
            raise ConfigError(
                f"{str(folder / 'losses.csv')!r}: run {row['run']} has no row in results.csv"
            )
        rows.append({**row, **per_run[row["run"]]})
    return rows


def _frame(paths: PathLike | Sequence[PathLike], read) -> pd.DataFrame:
    if isinstance(paths, str | Path):
        return _typed(read(Path(paths)), sweep=None)
    folders = [Path(p) for p in paths]
    if not folders:
        raise ConfigError("no sweep folder given")
    names = [f.parent.name if f.suffix == ".csv" else f.name for f in folders]
    if len(set(names)) < len(names):
        names = [str(f) for f in folders]
    rows = [
        {"sweep": name, **row} for name, f in zip(names, folders, strict=True) for row in read(f)
    ]
    return _typed(rows, sweep=names)


def _typed(rows: list[dict[str, Any]], sweep: list[str] | None) -> pd.DataFrame:
    # pandas is imported here, not with the package: the CLI never needs it.
    import pandas as pd

    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    frame = pd.DataFrame({c: _column([row.get(c, "") for row in rows]) for c in columns})
    if sweep is not None:
        frame["sweep"] = pd.Categorical(frame["sweep"], categories=list(dict.fromkeys(sweep)))
    return frame


def _column(values: list[Any]) -> pd.Series:
    import pandas as pd

    present = [v for v in values if v != ""]
    missing = len(present) < len(values)
    nullable = [None if v == "" else v for v in values]
    if present and all(isinstance(v, bool) for v in present):
        return pd.Series(nullable, dtype="boolean" if missing else bool)
    if present and all(isinstance(v, int) and not isinstance(v, bool) for v in present):
        return pd.Series(nullable, dtype="Int64" if missing else "int64")
    if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
        return pd.Series([float("nan") if v == "" else float(v) for v in values], dtype="float64")
    return pd.Series([str(v) for v in values], dtype="str")
