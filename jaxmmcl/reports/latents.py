"""The ``latents`` kind: every latent component scored alone from every readout, as a heatmap of
readouts (rows: the subsets of views, or the encodings) against components (columns).

It reads the per-latent rows (``eval.per_latent``). With ``eval.readout: subsets`` a row of the
heatmap is a subset of views, its cell the mean over the subset's views and the seeds of the
score of one component from the encoding's dimensions that hold the subset's content: the
theory of Yao et al. says the components every view of the subset observes are recovered and
the others are not. Keys: ``score`` (a metric with per-latent rows, ``r2_nonlinear`` by
default), ``where``; the columns are ``factor[component]``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from jaxmmcl.reports.common import (
    _cell,
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
    """The section of a ``latents`` entry."""
    from jaxmmcl.reports import figures

    del params
    score = entry["score"]
    title = entry.get("title") or f"{score_label(score)} of every latent component"
    ok = [
        r
        for r in rows
        if r["status"] == "ok" and r.get("latent", "") != "" and _matches(r, entry["where"])
    ]
    if not any(math.isfinite(_number(r.get(score))) for r in ok):
        return _Section(title, f"Skipped: no per-latent {score} in the selected ok runs.")

    def readout(r):
        return r.get("subset") or r["encoder"]

    readouts = list(dict.fromkeys(readout(r) for r in ok))
    components = list(dict.fromkeys(f"{r['factor']}[{r['latent']}]" for r in ok))
    cells: dict[tuple[str, str], dict[Any, list[float]]] = {}
    for r in ok:
        key = (readout(r), f"{r['factor']}[{r['latent']}]")
        cells.setdefault(key, {}).setdefault(r["run"], []).append(_number(r[score]))
    # Per run, the mean over the readout's views; then mean and spread over runs.
    stats = {
        key: _stats(float(np.mean(values)) for values in runs.values())
        for key, runs in cells.items()
    }
    grid = np.asarray(
        [[stats.get((y, x), (np.nan, np.nan, 0))[0] for x in components] for y in readouts]
    )
    n_note = _n_note(v[2] for v in stats.values())
    label = "subset of views" if any(r.get("subset") for r in ok) else "encoding"
    figure = figures.heatmaps(
        components,
        readouts,
        {None: grid},
        x_label="latent component",
        y_label=label,
        score_label=score_label(score),
        bounded=True,
        digits=2,
        title=title,
        caption=f"cells: mean over the {label}'s encodings, then over seeds ({n_note})",
    )
    body = [
        [y, *(_cell(stats.get((y, x), (np.nan, np.nan, 0)), 2) for x in components)]
        for y in readouts
    ]
    explanation = (
        f"{score_label(score)} of each latent component alone, from each {label}'s readout; "
        f"cells: mean ± std over seeds of the mean over the {label}'s encodings ({n_note})."
    )
    return _Section(title, explanation, _md_table([label, *components], body), figure, score)
