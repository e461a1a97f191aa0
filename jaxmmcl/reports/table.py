"""The ``table`` kind: the paper's Table 1 layout and grouped bars.

Keys: ``rows`` (default ``setting``), ``columns`` (default ``mechanism``), ``score`` (a
per-factor score). Each cell is the mean ± std over seeds of the per-seed average over the
encodings, each scored on its own factor of that role (c, s, m).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmmcl.reports.common import (
    _left_out,
    _mean_std,
    _number,
    _own_factor,
    _Section,
    _stats,
    score_label,
)

KEYS = {"rows": "setting", "columns": "mechanism", "score": "r2_nonlinear"}


def table_cells(
    rows: Sequence[dict[str, Any]], row_axis: str, column_axis: str, score: str
) -> dict[tuple[Any, Any, str], list[float]]:
    """Per-seed values behind :func:`paper_table`.

    Returns:
      (row value, column value, block) -> one value per seed: the mean over the two encodings,
      each scored on its own modality's block; NaN for a run that is not ok (diverged or
      failed). Blocks ``c``, ``s``,
      ``m``; a block the runs do not have or do not score (``m`` with ``n_m: 0``; an accuracy
      of a continuous block) maps to an empty list.
    """
    per_seed: dict[tuple[Any, Any, str], dict[Any, list[float]]] = {}
    for r in rows:
        for block in ("c", "s", "m"):
            per_seed.setdefault((r[row_axis], r[column_axis], block), {})
            if _own_factor(r) != block:
                continue
            value = _number(r[score]) if r["status"] == "ok" else math.nan
            # An ok run without the score (an accuracy of a continuous block) adds nothing;
            # NaN marks runs that are not ok only.
            if r["status"] != "ok" or math.isfinite(value):
                per_seed[r[row_axis], r[column_axis], block].setdefault(r["seed"], []).append(value)
    return {key: [float(np.mean(v)) for v in seeds.values()] for key, seeds in per_seed.items()}


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
    m1; h2: c, s_tilde, m2). Runs that diverged or failed are left out of the statistics and
    counted below.
    """
    row_values = list(dict.fromkeys(r[row_axis] for r in rows))
    col_values = list(dict.fromkeys(r[column_axis] for r in rows))
    cells = table_cells(rows, row_axis, column_axis, score)
    header = [row_axis] + [f"{c}: {b}" for c in col_values for b in ("c", "s", "m")]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for rv in row_values:
        row = [_mean_std(cells.get((rv, cv, b), [])) for cv in col_values for b in ("c", "s", "m")]
        lines.append("| " + " | ".join([str(rv), *row]) + " |")
    left_out = _left_out(rows)
    note = f"\n{left_out} left out.\n" if left_out else "\n"
    return "\n".join(lines) + "\n" + note


def section(rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]) -> _Section:
    """The section of a ``table`` entry."""
    del params
    from jaxmmcl.reports import figures

    row_axis, column_axis, score = entry["rows"], entry["columns"], entry["score"]
    title = entry.get("title") or f"{score_label(score)} by {row_axis} and {column_axis}"
    explanation = (
        "Each cell: mean ± std over seeds of the per-seed average of the two encodings, each "
        "scored on its own modality's block (c: content, s: style, m: modality-specific). "
        "Bars: the same means, error bars ± 1 std over seeds."
    )
    cells = table_cells(rows, row_axis, column_axis, score)
    stats = {key: _stats(values) for key, values in cells.items()}
    row_values = list(dict.fromkeys(r[row_axis] for r in rows))
    column_values = list(dict.fromkeys(r[column_axis] for r in rows))
    figure = figures.table_bars(
        stats,
        row_values,
        column_values,
        row_axis=row_axis,
        score_label=score_label(score),
        title=title,
        caption="bars: mean over seeds of the two encodings' scores; error bars: ± 1 std",
    )
    table = paper_table(rows, row_axis=row_axis, column_axis=column_axis, score=score)
    table += "\n" + cell_legend(rows, column_axis) + "\n"
    return _Section(title, explanation, table, figure, f"{row_axis}-{column_axis}-{score}")


def cell_legend(rows: Sequence[dict[str, Any]], column_axis: str) -> str:
    """In words, what each column of :func:`paper_table` averages: per value of
    ``column_axis`` and block, the encodings and the ground-truth blocks they are scored on,
    and whether the encodings share one encoder."""
    lines = []
    for column in dict.fromkeys(r[column_axis] for r in rows):
        mine = [r for r in rows if r[column_axis] == column]
        shared = {r.get("model.shared_encoder") for r in mine} == {True}
        parts = []
        for block, name in (("c", "content"), ("s", "style"), ("m", "modality-specific")):
            pairs = dict.fromkeys(
                (r["encoder"], r["factor"]) for r in mine if _own_factor(r) == block
            )
            if pairs:
                scored = " and ".join(f"{e} on {f}" for e, f in pairs)
                parts.append(f"{block} ({name}) averages {scored}")
            else:
                parts.append(f"{block}: no such block in these runs")
        if "model.shared_encoder" not in mine[0]:
            encoders = ""
        elif shared:
            encoders = ", one encoder shared by both modalities (h1 = g(x1), h2 = g(x2))"
        else:
            encoders = ", one encoder per modality (h1 = g1(x1), h2 = g2(x2))"
        lines.append(f"- **{column}**{encoders}: " + "; ".join(parts) + ".")
    return "\n".join(lines) + "\n"
