"""The ``lines`` kind: a score against a numeric (or categorical) axis.

Keys: ``x`` (required), ``score``, ``factors`` (own factor roles, default: all found; factor
names in order of appearance where the rows have no roles), ``hue``
(one line per value of this column; may be ``seed``), ``where``, ``xscale`` (``linear``/``log``;
default: log when the x values are positive and span a factor >= 20). The score against x:
mean over seeds, a band of ± 1 std; one panel per encoder, or a single panel for per-run scores
(``val_loss``, ``loss``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmmcl.reports.common import (
    _REQUIRED,
    OWN_FACTORS,
    _by_name,
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
    "score": "r2_nonlinear",
    "where": {},
    "factors": None,
    "hue": None,
    "xscale": None,
}


def section(rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]) -> _Section:
    """The section of a ``lines`` entry."""
    from jaxmmcl.reports import figures

    x, hue, score = entry["x"], entry.get("hue"), entry["score"]
    per_factor = score in score_columns()
    title = entry.get("title") or f"{score_label(score)} vs {x}" + (f" by {hue}" if hue else "")
    short = x.rsplit(".", 1)[-1] + (f"-by-{hue.rsplit('.', 1)[-1]}" if hue else "")
    short += "" if score == "r2_nonlinear" else f"-{score}"
    ok = [r for r in rows if r["status"] == "ok" and _matches(r, entry["where"])]
    by_name = _by_name(ok)
    present = list(dict.fromkeys(_own_factor(r, by_name) for r in ok))
    order = present if by_name else OWN_FACTORS
    factors = entry.get("factors") or [f for f in order if f in present]
    keys = [hue, x] if hue else [x]
    cells = _gather(ok, score, keys, factors)
    if not cells:
        return _Section(title, f"Skipped: no finite {score} values in the selected ok runs.")
    x_values = _ordered(k[len(keys) - 1] for k in cells)
    hue_values = _ordered(k[0] for k in cells) if hue else [None]
    if per_factor:
        scored = {k[len(keys) :] for k in cells}
        columns = [(e, f) for e in _encoders(ok) for f in factors if (e, f) in scored]
    else:
        columns = [(None, None)]

    def stats(h, xv, e, f):
        key = ((h,) if hue else ()) + (xv,) + ((e, f) if per_factor else ())
        return _stats(cells.get(key, {}).values())

    panels: dict[Any, dict[tuple, tuple[np.ndarray, np.ndarray]]] = {}
    for e, f in columns:
        for h in hue_values:
            values = [stats(h, xv, e, f) for xv in x_values]
            means = np.asarray([v[0] for v in values])
            if np.isfinite(means).any():
                panels.setdefault(e, {})[f, h] = (means, np.asarray([v[1] for v in values]))
    pooled = _pooled(ok, keys, [p for p in params if p != "seed"])
    scope = _scope_note(entry["where"], pooled)
    n_note = _n_note(len(v) for v in cells.values())
    caption = f"line: mean over seeds; band: ± 1 std over seeds ({n_note})"
    figure = figures.line_panels(
        x_values,
        panels,
        x_label=x,
        score_label=score_label(score),
        bounded=per_factor,
        xscale=entry.get("xscale"),
        hue_label=hue,
        title=title,
        caption=caption + (f"\n{scope}" if scope else ""),
    )
    header = ([hue] if hue else []) + [x]
    header += [f"{e}: {f}" for e, f in columns] if per_factor else [score]
    body = [
        ([h] if hue else [])
        + [xv]
        + [_cell(stats(h, xv, e, f), _digits(score)) for e, f in columns]
        for h in hue_values
        for xv in x_values
    ]
    what = "each encoding's own-modality factor blocks" if per_factor else "each run"
    what = "every factor of each encoding's modality" if per_factor and by_name else what
    explanation = f"{score_label(score)} of {what}; cells: mean ± std over seeds ({n_note})"
    explanation += f"; {scope}." if scope else "."
    return _Section(title, explanation, _md_table(header, body), figure, short)
