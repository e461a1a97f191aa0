"""The ``subsets`` kind: every factor scored from every subset's readout, as a table (factors
against subsets) per encoder and a heatmap.

It reads the factor rows with a ``subset`` (``eval.readout: subsets``, or the image/text
experiment's three views): a cell is the mean ± std over seeds of the score of one factor from
the encoding's chunk that holds the subset's content. ``*`` marks the cells whose row has the
role ``c``: the factor is content of the subset (every view of the subset shares it), which
the theory says is recovered. Keys: ``score`` (a per-factor score, ``r2_nonlinear`` by
default), ``where``; factors without a finite score (a discrete factor's R^2, a continuous
factor's accuracy) are left out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmmcl.reports.common import (
    _cell,
    _encoders,
    _matches,
    _md_table,
    _n_note,
    _number,
    _Section,
    _stats,
    score_label,
)

KEYS = {"score": "r2_nonlinear", "where": {}}


def section(rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]) -> _Section:
    """The section of a ``subsets`` entry."""
    from jaxmmcl.reports import figures

    del params
    score = entry["score"]
    title = entry.get("title") or f"{score_label(score)} of every factor from every subset"
    ok = [
        r
        for r in rows
        if r["status"] == "ok"
        and r.get("subset", "") != ""
        and r.get("latent", "") == ""
        and _matches(r, entry["where"])
        and math.isfinite(_number(r.get(score)))
    ]
    if not ok:
        return _Section(
            title, f"Skipped: no {score} of a subset's readout in the selected ok runs."
        )
    subsets = list(dict.fromkeys(r["subset"] for r in ok))
    factors = list(dict.fromkeys(r["factor"] for r in ok))
    encoders = _encoders(ok)
    values: dict[tuple[str, str, str], dict[Any, float]] = {}
    content: set[tuple[str, str, str]] = set()
    for r in ok:
        key = (r["encoder"], r["factor"], r["subset"])
        values.setdefault(key, {})[r["run"]] = _number(r[score])
        if r.get("role") == "c":
            content.add(key)
    stats = {key: _stats(runs.values()) for key, runs in values.items()}
    missing = (math.nan, math.nan, 0)
    panels = {
        e: np.asarray([[stats.get((e, f, s), missing)[0] for s in subsets] for f in factors])
        for e in encoders
    }
    n_note = _n_note(v[2] for v in stats.values())
    figure = figures.heatmaps(
        subsets,
        factors,
        panels,
        x_label="subset of views",
        y_label="factor",
        score_label=score_label(score),
        bounded=True,
        digits=2,
        title=title,
        caption=f"cells: mean over seeds ({n_note})",
    )
    tables = []
    for e in encoders:
        mine = [f for f in factors if any((e, f, s) in stats for s in subsets)]
        body = [
            [f, *(_marked(stats.get((e, f, s), missing), (e, f, s) in content) for s in subsets)]
            for f in mine
        ]
        tables.append(f"{e} encoder:\n\n" + _md_table(["factor", *subsets], body))
    explanation = (
        f"{score_label(score)} of every factor from each subset's chunk of each encoding; "
        f"cells: mean ± std over seeds ({n_note}); * the subset's views share the factor "
        "(role c), which the theory says the chunk recovers."
    )
    return _Section(title, explanation, "\n".join(tables), figure, score)


def _marked(stats: tuple[float, float, int], content: bool) -> str:
    return _cell(stats, 2) + (" *" if content and stats[2] else "")
