"""The ``heatmap`` kind: a score over two axes.

Keys: ``x``, ``y`` (required), ``factor`` (own factor role, default ``s``), ``score``,
``where``. The mean over seeds per (x, y) cell, one panel per encoder.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmmcl.reports.common import (
    _REQUIRED,
    _cell,
    _digits,
    _encoders,
    _gather,
    _matches,
    _md_table,
    _n_note,
    _ordered,
    _own_factor,
    _pooled,
    _scope_note,
    _Section,
    _stats,
    score_label,
)
from jaxmmcl.results import score_columns

KEYS = {
    "x": _REQUIRED,
    "y": _REQUIRED,
    "factor": "s",
    "score": "r2_nonlinear",
    "where": {},
}


def section(rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]) -> _Section:
    """The section of a ``heatmap`` entry."""
    from jaxmmcl.reports import figures

    x, y, factor, score = entry["x"], entry["y"], entry["factor"], entry["score"]
    per_factor = score in score_columns()
    label = score_label(score) + (f" of {factor}" if per_factor else "")
    title = entry.get("title") or f"{label} over {x} and {y}"
    short = f"{x.rsplit('.', 1)[-1]}-{y.rsplit('.', 1)[-1]}" + (f"-{factor}" if per_factor else "")
    short += "" if score == "r2_nonlinear" else f"-{score}"
    ok = [r for r in rows if r["status"] == "ok" and _matches(r, entry["where"])]
    cells = _gather(ok, score, [y, x], [factor])
    if not cells:
        return _Section(title, f"Skipped: no finite {score} values in the selected ok runs.")
    x_values = _ordered(k[1] for k in cells)
    y_values = _ordered(k[0] for k in cells)
    encoders = [e for e in _encoders(ok) if any(k[2] == e for k in cells)] if per_factor else [None]
    tail = {e: ((e, factor) if per_factor else ()) for e in encoders}
    stats = {
        e: [
            [_stats(cells.get((yv, xv, *tail[e]), {}).values()) for xv in x_values]
            for yv in y_values
        ]
        for e in encoders
    }
    pooled = _pooled(ok, [y, x], [p for p in params if p != "seed"])
    scope = _scope_note(entry["where"], pooled)
    n_note = _n_note(len(v) for v in cells.values())
    figure = figures.heatmaps(
        x_values,
        y_values,
        {e: np.asarray([[s[0] for s in line] for line in grid]) for e, grid in stats.items()},
        x_label=x,
        y_label=y,
        score_label=label,
        bounded=per_factor,
        digits=_digits(score),
        title=title,
        caption=f"cells: mean over seeds ({n_note})" + (f"\n{scope}" if scope else ""),
    )
    tables = []
    for e in encoders:
        block = next(
            (r["factor"] for r in ok if r["encoder"] == e and _own_factor(r) == factor), factor
        )
        heading = f"{e}, factor {factor} (block {block}):\n\n" if per_factor else ""
        body = [
            [yv] + [_cell(s, _digits(score)) for s in line]
            for yv, line in zip(y_values, stats[e], strict=True)
        ]
        tables.append(heading + _md_table([f"{y} \\ {x}", *x_values], body))
    explanation = f"{label}; rows: {y}, columns: {x}; cells: mean ± std over seeds ({n_note})"
    explanation += f"; {scope}." if scope else "."
    return _Section(title, explanation, "\n".join(tables), figure, short)
