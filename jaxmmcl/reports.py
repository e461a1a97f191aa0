"""Result tables: tidy CSV rows (one per run x encoder x factor) and the paper-style table.

Files are written atomically (a temporary file renamed into place), so an interrupted sweep
never leaves a truncated table.
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

FIXED_COLUMNS = ("run", "group", "seed")
SCORE_COLUMNS = ("encoder", "factor", "r2_linear", "r2_nonlinear", "loss", "status")
# Which block each encoding's "style" and "modality-specific" columns refer to: its own
# modality's (h1 sees s and m1, h2 sees s_tilde and m2).
_OWN_BLOCK = {"s": {"h1": "s", "h2": "s_tilde"}, "m": {"h1": "m1", "h2": "m2"}}


def write_atomic(path: str | Path, text: str) -> None:
    """Writes ``text`` to ``path`` through a temporary file in the same folder and a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", newline="") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_csv(path: str | Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Writes rows as CSV with the given column order, atomically."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(columns), lineterminator="\n")
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


def load_results(path: str | Path) -> list[dict[str, Any]]:
    """Reads a ``results.csv`` (or the folder holding it) into a list of typed rows."""
    path = Path(path)
    if path.is_dir():
        path = path / "results.csv"
    with path.open(newline="") as f:
        return [{k: _parse(v) for k, v in row.items()} for row in csv.DictReader(f)]


def _mean_std(values: Iterable[float]) -> str:
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return "—"
    if np.all(np.isnan(values)):
        return "diverged"
    return f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}"


def paper_table(
    rows: Sequence[dict[str, Any]],
    *,
    row_axis: str = "setting",
    column_axis: str = "mechanism",
    score: str = "r2_nonlinear",
) -> str:
    """The paper's Table 1 layout as Markdown.

    One line per value of ``row_axis``; for each value of ``column_axis`` three columns: content
    ``c``, style ``s`` and modality-specific ``m``. Each cell is the mean ± std over seeds of the
    per-seed average over the two encodings, each scored on its own modality's block (h1: c, s,
    m1; h2: c, s_tilde, m2). Diverged runs are left out of the statistics and counted below.
    """
    row_values = list(dict.fromkeys(r[row_axis] for r in rows))
    col_values = list(dict.fromkeys(r[column_axis] for r in rows))

    def cell(row_value, col_value, block):
        per_seed: dict[Any, list[float]] = {}
        for r in rows:
            if r[row_axis] != row_value or r[column_axis] != col_value:
                continue
            wanted = _OWN_BLOCK[block][r["encoder"]] if block in _OWN_BLOCK else block
            if r["factor"] == wanted:
                value = float(r[score]) if r["status"] == "ok" else math.nan
                per_seed.setdefault(r["seed"], []).append(value)
        return _mean_std(np.mean(v) for v in per_seed.values())

    header = [row_axis] + [f"{c}: {b}" for c in col_values for b in ("c", "s", "m")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rv in row_values:
        cells = [cell(rv, cv, b) for cv in col_values for b in ("c", "s", "m")]
        lines.append("| " + " | ".join([str(rv), *cells]) + " |")
    diverged = len({r["run"] for r in rows if r["status"] != "ok"})
    note = f"\n{diverged} diverged run(s) left out.\n" if diverged else "\n"
    return "\n".join(lines) + "\n" + note
