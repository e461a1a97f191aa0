"""The training-loss section every report ends with."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from jaxmmcl.reports.common import _fmt, _number, _Section
from jaxmmcl.results import read_rows


def _group_labels(rows: Sequence[dict[str, Any]], params: Sequence[str]) -> dict[Any, str]:
    """Run -> a label of its group naming the parameters that set the groups apart."""
    runs = {r["run"]: r for r in rows}
    groups: dict[Any, list[dict[str, Any]]] = {}
    for r in runs.values():
        groups.setdefault(r["group"], []).append(r)
    if len(groups) == 1:
        return dict.fromkeys(runs, "all runs")
    constant = {
        g: {p: members[0].get(p) for p in params if len({m.get(p) for m in members}) == 1}
        for g, members in groups.items()
    }
    # Parameters constant within each group, each kept only if it separates groups that the
    # ones kept before do not (a named axis and the keys it sets separate them alike).
    shown: list[str] = []
    for p in params:
        if not all(p in c for c in constant.values()):
            continue
        before = {tuple(c[k] for k in shown) for c in constant.values()}
        if len({tuple(c[k] for k in [*shown, p]) for c in constant.values()}) > len(before):
            shown.append(p)
    labels = {}
    for g, members in groups.items():
        what = ", ".join(f"{p}={_fmt(constant[g][p])}" for p in shown[:3])
        for m in members:
            labels[m["run"]] = f"group {g}" + (f": {what}" if what else "")
    return labels


def section(rows: list[dict[str, Any]], losses_path: Path, params: Sequence[str]) -> _Section:
    """The training-loss curves of ``losses.csv``."""
    from jaxmmcl.reports import figures

    title = "Training loss"
    if not losses_path.is_file():
        return _Section(title, "Skipped: no losses.csv in this folder.")
    runs = {r["run"] for r in rows}
    curves: dict[Any, tuple[list[float], list[float]]] = {}
    for r in read_rows(losses_path, ("run", "step", "loss")):
        if r["run"] in runs:
            steps, values = curves.setdefault(r["run"], ([], []))
            steps.append(_number(r["step"]))
            values.append(_number(r["loss"]))
    if not curves:
        return _Section(title, "Skipped: losses.csv holds no curve of these runs.")
    diverged = {r["run"] for r in rows if r["status"] != "ok"}
    explanation = (
        "Mean training loss of every logging interval: a faint line per run (dotted: diverged "
        "or failed), "
        "a thick line per compiled group (mean over its ok runs)."
    )
    figure = figures.loss_curves(
        {run: (np.asarray(s), np.asarray(v)) for run, (s, v) in curves.items()},
        _group_labels(rows, params),
        diverged,
        title=title,
        caption="faint: one run each (dotted: diverged or failed); thick: mean over the group's "
        "ok runs",
    )
    return _Section(title, explanation, "", figure, "")
