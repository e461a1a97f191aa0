"""Result tables and sweep reports: tidy CSV rows, the paper-style table, figures and Markdown.

``results.csv`` holds one row per run x encoder x factor. :func:`write_report` turns a sweep
folder into ``NAME.md`` (tables) and PNG figures, as described by the sweep file's optional
``report:`` section, a list of one-key mappings::

    report:
      - table: {rows: setting, columns: mechanism, score: r2_nonlinear}
      - lines: {x: train.learning_rate, hue: simulation.p_change, score: r2_nonlinear,
                factors: [c, s, m], where: {mechanism: multimodal}, title: "..."}
      - heatmap: {x: simulation.p_change, y: simulation.causal_strength, factor: s}

Kinds and their keys (every column key names a run parameter column of ``results.csv``):

* ``table``: ``rows`` (default ``setting``), ``columns`` (default ``mechanism``), ``score``
  (a per-factor score). The paper's Table 1 layout (:func:`paper_table`) and grouped bars.
* ``lines``: ``x`` (required), ``score``, ``factors`` (own-modality names, default: all found),
  ``hue`` (one line per value of this column; may be ``seed``), ``where``, ``xscale``
  (``linear``/``log``; default: log when the x values are positive and span a factor >= 20).
  The score against x: mean over seeds, a band of ± 1 std; one panel per encoder, or a single
  panel for per-run scores (``val_loss``, ``loss``).
* ``heatmap``: ``x``, ``y`` (required), ``factor`` (own-modality name, default ``s``),
  ``score``, ``where``. The mean over seeds per (x, y) cell, one panel per encoder.

Every kind also takes ``title`` (the figure and section title) and ``name`` (the short name in
the PNG file name ``NAME-KIND-SHORT.png``). ``where`` maps columns (or ``seed``) to a value or a
list of accepted values and keeps only matching runs. Own-modality factor names: ``c``
(content), ``c_perm`` (modality 2's permuted content), ``s`` (style: h1 on s, h2 on s_tilde) and
``m`` (modality-specific: h1 on m1, h2 on m2). Without a ``report:`` section (or with
``report: null``), :func:`default_report` chooses from the axes; ``report: []`` draws nothing but
the training-loss figure, which every report has.

Files are written atomically (a temporary file renamed into place), so an interrupted sweep
never leaves a truncated table or figure.
"""

from __future__ import annotations

import collections
import csv
import glob
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxmmcl.errors import ConfigError
from jaxmmcl.results import (
    FIXED_COLUMNS,
    KEY_COLUMNS,
    load_results,
    read_rows,
    read_yaml,
    save_png,
    write_atomic,
)
from jaxmmcl.structure import ROLES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

# Scores with one value per run x encoder x factor, and scores with one value per run (repeated
# on every row of the run).
FACTOR_SCORES = ("r2_nonlinear", "r2_linear", "acc_linear", "acc_nonlinear", "mcc")
RUN_SCORES = ("val_loss", "loss")
# Factor names as seen from each encoding's own modality, in display order.
OWN_FACTORS = ROLES
REPORT_KINDS = ("table", "lines", "heatmap")
# results.csv columns that are not run parameters (the rest are axes and the keys they vary).
_NOT_PARAMS = {*FIXED_COLUMNS, *KEY_COLUMNS, "status", *FACTOR_SCORES, *RUN_SCORES}
SCORE_LABELS = {
    "r2_nonlinear": "nonlinear R²",
    "r2_linear": "linear R²",
    "acc_linear": "linear accuracy",
    "acc_nonlinear": "nonlinear accuracy",
    "mcc": "MCC",
    "val_loss": "validation loss",
    "loss": "final training loss",
}
_REQUIRED = object()
# Per kind: key -> default (_REQUIRED: must be given; None: optional, left out when absent).
_KIND_KEYS: dict[str, dict[str, Any]] = {
    "table": {"rows": "setting", "columns": "mechanism", "score": "r2_nonlinear"},
    "lines": {
        "x": _REQUIRED,
        "score": "r2_nonlinear",
        "where": {},
        "factors": None,
        "hue": None,
        "xscale": None,
    },
    "heatmap": {
        "x": _REQUIRED,
        "y": _REQUIRED,
        "factor": "s",
        "score": "r2_nonlinear",
        "where": {},
    },
}
for _keys in _KIND_KEYS.values():
    _keys |= {"title": None, "name": None}


def _mean_std(values: Iterable[float]) -> str:
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return "—"
    if np.all(np.isnan(values)):
        return "left out"
    return f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}"


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


# ---------------------------------------------------------------------------------------------
# The report section of a sweep file.


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def validate_report(spec: Any, param_columns: Sequence[str]) -> list[dict[str, dict[str, Any]]]:
    """Validates a sweep file's ``report:`` section and returns it normalised.

    Args:
      spec: the section: a list of one-key mappings ``{KIND: {key: value, ...}}``; ``None``
        stands for an empty list.
      param_columns: the run parameter columns of ``results.csv`` (axis names and the dotted
        keys they vary; ``seed`` is accepted in addition by ``hue`` and ``where``).

    Returns:
      The entries in the same one-key form with every defaulted key filled in (optional keys
      that were not given stay absent), so validating the result again returns it unchanged.

    Raises:
      ConfigError: naming the entry (``report[i].KIND.KEY``) and the bad value.
    """
    if spec is None:
        return []
    if not isinstance(spec, list):
        raise ConfigError(f"report: expected a list like [{{lines: {{x: ...}}}}], got {spec!r}")
    columns = list(param_columns)
    out = []
    for i, entry in enumerate(spec):
        if not isinstance(entry, Mapping) or len(entry) != 1:
            raise ConfigError(
                f"report[{i}]: expected a one-key mapping {{KIND: {{...}}}}, got {entry!r}"
            )
        ((kind, fields),) = entry.items()
        where = f"report[{i}]"
        if kind not in _KIND_KEYS:
            raise ConfigError(f"{where}: unknown kind {kind!r} (valid: {', '.join(REPORT_KINDS)})")
        where = f"report[{i}].{kind}"
        fields = {} if fields is None else fields
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {fields!r}")
        out.append({kind: _validate_entry(where, kind, dict(fields), columns)})
    return out


def _validate_entry(where: str, kind: str, fields: dict, columns: list[str]) -> dict[str, Any]:
    keys = _KIND_KEYS[kind]
    for key in fields:
        if key not in keys:
            raise ConfigError(f"{where}.{key}: unknown key (valid: {', '.join(keys)})")
    entry: dict[str, Any] = {}
    for key, default in keys.items():
        value = fields.get(key)
        if value is None and default is _REQUIRED:
            raise ConfigError(f"{where}.{key}: required")
        if value is None and default is not None:
            value = dict(default) if isinstance(default, dict) else default
        if value is not None:
            entry[key] = value

    def column(key: str, extra: tuple[str, ...] = ()) -> None:
        if key in entry and entry[key] not in [*columns, *extra]:
            valid = ", ".join([*columns, *extra]) or "none: the sweep has no axes"
            raise ConfigError(
                f"{where}.{key}: {entry[key]!r} is not a result column (valid: {valid})"
            )

    for key in ("x", "y", "rows", "columns"):
        column(key)
    column("hue", ("seed",))
    scores = FACTOR_SCORES if kind == "table" else (*FACTOR_SCORES, *RUN_SCORES)
    if entry["score"] not in scores:
        raise ConfigError(
            f"{where}.score: unknown score {entry['score']!r} (valid: {', '.join(scores)})"
        )
    if "factors" in entry and entry["score"] in RUN_SCORES:
        raise ConfigError(
            f"{where}.factors: score {entry['score']!r} has one value per run, not per factor"
        )
    for a, b in (("x", "y"), ("x", "hue"), ("rows", "columns")):
        if a in entry and entry.get(a) == entry.get(b):
            raise ConfigError(f"{where}.{b}: {entry[b]!r} is already {a}")
    if "factor" in entry and entry["factor"] not in OWN_FACTORS:
        raise ConfigError(
            f"{where}.factor: unknown factor {entry['factor']!r} (valid: {', '.join(OWN_FACTORS)})"
        )
    if "factors" in entry:
        factors = entry["factors"]
        if (
            not isinstance(factors, list)
            or not factors
            or len(set(map(str, factors))) < len(factors)
        ):
            raise ConfigError(
                f"{where}.factors: expected a non-empty list of distinct factors, got {factors!r}"
            )
        for f in factors:
            if f not in OWN_FACTORS:
                raise ConfigError(
                    f"{where}.factors: unknown factor {f!r} (valid: {', '.join(OWN_FACTORS)})"
                )
    if "where" in entry:
        if not isinstance(entry["where"], Mapping):
            raise ConfigError(
                f"{where}.where: expected a mapping COLUMN: VALUE, got {entry['where']!r}"
            )
        for key, value in entry["where"].items():
            if key not in [*columns, "seed"]:
                valid = ", ".join([*columns, "seed"])
                raise ConfigError(f"{where}.where.{key}: not a result column (valid: {valid})")
            ok = _is_scalar(value) or (
                isinstance(value, list) and value and all(_is_scalar(v) for v in value)
            )
            if not ok:
                raise ConfigError(
                    f"{where}.where.{key}: expected a value or a list of values, got {value!r}"
                )
        entry["where"] = dict(entry["where"])
    if "xscale" in entry and entry["xscale"] not in ("linear", "log"):
        raise ConfigError(f"{where}.xscale: expected linear or log, got {entry['xscale']!r}")
    for key in ("title", "name"):
        if key in entry and not isinstance(entry[key], str):
            raise ConfigError(f"{where}.{key}: expected a string, got {entry[key]!r}")
    if "name" in entry and not re.fullmatch(r"[A-Za-z0-9_.-]+", entry["name"]):
        raise ConfigError(f"{where}.name: {entry['name']!r} must be letters, digits, '_', '.', '-'")
    return entry


def default_report(axes: Mapping[str, Any]) -> list[dict[str, dict[str, Any]]]:
    """The report drawn for a sweep file without a ``report:`` section.

    ``table`` when the axes include ``setting`` and ``mechanism`` (the paper's layout).
    Otherwise, ignoring ``seed`` and axes with a single value: ``lines`` over each plain axis
    whose values are all numbers, with ``hue`` = the other axis when there is exactly one other;
    when no axis is numeric, ``lines`` over the first axis (categorical x); and a ``heatmap``
    of style (``s``) when exactly two plain axes are numeric. Entries are in normalised form.
    """
    if {"setting", "mechanism"} <= set(axes):
        return [{"table": {"rows": "setting", "columns": "mechanism", "score": "r2_nonlinear"}}]
    varying = [name for name, values in axes.items() if name != "seed" and len(values) > 1]
    numeric = [
        name
        for name in varying
        if not isinstance(axes[name], Mapping) and all(_is_number(v) for v in axes[name])
    ]
    entries: list[dict[str, dict[str, Any]]] = []
    for x in numeric or varying[:1]:
        lines: dict[str, Any] = {"x": x, "score": "r2_nonlinear", "where": {}}
        others = [name for name in varying if name != x]
        if len(others) == 1:
            lines["hue"] = others[0]
        entries.append({"lines": lines})
    if len(numeric) == 2:
        x, y = numeric
        heatmap = {"x": x, "y": y, "factor": "s", "score": "r2_nonlinear", "where": {}}
        entries.append({"heatmap": heatmap})
    return entries


# ---------------------------------------------------------------------------------------------
# Aggregation.


def _number(value: Any) -> float:
    """A score cell as a float; an empty cell (a score a block does not have) is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _own_factor(row: Mapping[str, Any]) -> str | None:
    """The role of a row's factor for its encoding's view (``None``: the view does not observe
    it, or a per-latent row)."""
    if row.get("latent", "") != "":
        return None
    return row.get("role") or None


def _encoders(rows: Iterable[Mapping[str, Any]]) -> list[str]:
    """The encodings of ``rows``, in order of first appearance."""
    return list(dict.fromkeys(r["encoder"] for r in rows))


def _matches(row: Mapping[str, Any], where: Mapping[str, Any]) -> bool:
    for key, accepted in where.items():
        accepted = accepted if isinstance(accepted, list) else [accepted]
        # Compared as values (1 == 1.0) and as text, since CSV cells and YAML values may parse
        # to different types (a case label "1" is read back from the CSV as the integer 1).
        value = row.get(key)
        if value not in accepted and str(value) not in {str(a) for a in accepted}:
            return False
    return True


def _ordered(values: Iterable[Any]) -> list[Any]:
    """Distinct values: numbers sorted, anything else in order of first appearance."""
    unique = list(dict.fromkeys(values))
    return sorted(unique) if all(_is_number(v) for v in unique) else unique


def _stats(values: Iterable[float]) -> tuple[float, float, int]:
    """(mean, std, n) of the finite values; (NaN, NaN, 0) when there are none."""
    values = np.asarray([v for v in values if math.isfinite(v)], dtype=float)
    if values.size == 0:
        return math.nan, math.nan, 0
    return float(values.mean()), float(values.std()), int(values.size)


def _gather(
    rows: Iterable[dict[str, Any]], score: str, keys: Sequence[str], factors: Sequence[str]
) -> dict[tuple, dict[Any, float]]:
    """Finite values of ``score`` of the ok rows, one per run, grouped into cells.

    Returns:
      cell -> {run: value}. A cell is the row's values of ``keys``, followed for per-factor
      scores by the encoder and the own-modality factor (only those in ``factors``).
    """
    cells: dict[tuple, dict[Any, float]] = {}
    for r in rows:
        if r["status"] != "ok":
            continue
        key = tuple(r[k] for k in keys)
        if score in FACTOR_SCORES:
            own = _own_factor(r)
            if own not in factors:
                continue
            key += (r["encoder"], own)
        value = _number(r.get(score))
        if math.isfinite(value):
            cells.setdefault(key, {})[r["run"]] = value
    return cells


def _pooled(rows: Sequence[dict[str, Any]], keys: Sequence[str], params: Sequence[str]) -> list:
    """Parameter columns other than the seed that vary inside a cell of ``keys``: runs that
    differ in them are averaged together, which the report says."""
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault(tuple(r[k] for k in keys), []).append(r)
    return [
        c
        for c in params
        if c not in keys and any(len({r.get(c) for r in cell}) > 1 for cell in cells.values())
    ]


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _digits(score: str) -> int:
    return 2 if score in FACTOR_SCORES else 3


def _cell(stats: tuple[float, float, int], digits: int) -> str:
    mean, std, n = stats
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n else "—"


def _capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def _md_table(header: Sequence[Any], body: Iterable[Sequence[Any]]) -> str:
    def line(cells):
        return "| " + " | ".join(_fmt(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "---|" * len(header), *map(line, body)]) + "\n"


def _n_note(counts: Iterable[int]) -> str:
    counts = sorted({n for n in counts if n})
    if not counts:
        return "no runs"
    n = str(counts[0]) if len(counts) == 1 else f"{counts[0]}-{counts[-1]}"
    return f"n = {n} run{'s' if counts[-1] > 1 else ''} per point"


def _scope_note(where: Mapping[str, Any], pooled: Sequence[str]) -> str:
    parts = []
    if where:
        parts.append("only runs with " + ", ".join(f"{k} = {_fmt(v)}" for k, v in where.items()))
    if pooled:
        parts.append("runs differing in " + ", ".join(pooled) + " averaged together")
    return "; ".join(parts)


# ---------------------------------------------------------------------------------------------
# Report sections: Markdown text and a figure each. jaxmmcl.figures (matplotlib) is imported in
# the functions that draw, so that importing jaxmmcl does not import matplotlib.


@dataclass
class _Section:
    """One part of the report.

    Attributes:
      title: the heading (and the figure's title).
      explanation: one line saying what the numbers are.
      table: Markdown table(s), or "".
      figure: the figure, or None (a skipped section).
      short: the short name in the PNG file name.
    """

    title: str
    explanation: str
    table: str = ""
    figure: Figure | None = None
    short: str = ""


def _table_section(rows: list[dict[str, Any]], entry: dict[str, Any]) -> _Section:
    from jaxmmcl import figures

    row_axis, column_axis, score = entry["rows"], entry["columns"], entry["score"]
    title = entry.get("title") or f"{SCORE_LABELS[score]} by {row_axis} and {column_axis}"
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
        score_label=SCORE_LABELS[score],
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


def _lines_section(
    rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]
) -> _Section:
    from jaxmmcl import figures

    x, hue, score = entry["x"], entry.get("hue"), entry["score"]
    per_factor = score in FACTOR_SCORES
    title = entry.get("title") or f"{SCORE_LABELS[score]} vs {x}" + (f" by {hue}" if hue else "")
    short = x.rsplit(".", 1)[-1] + (f"-by-{hue.rsplit('.', 1)[-1]}" if hue else "")
    short += "" if score == "r2_nonlinear" else f"-{score}"
    ok = [r for r in rows if r["status"] == "ok" and _matches(r, entry["where"])]
    present = {_own_factor(r) for r in ok}
    factors = entry.get("factors") or [f for f in OWN_FACTORS if f in present]
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
        score_label=SCORE_LABELS[score],
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
    explanation = f"{SCORE_LABELS[score]} of {what}; cells: mean ± std over seeds ({n_note})"
    explanation += f"; {scope}." if scope else "."
    return _Section(title, explanation, _md_table(header, body), figure, short)


def _heatmap_section(
    rows: list[dict[str, Any]], entry: dict[str, Any], params: Sequence[str]
) -> _Section:
    from jaxmmcl import figures

    x, y, factor, score = entry["x"], entry["y"], entry["factor"], entry["score"]
    per_factor = score in FACTOR_SCORES
    label = SCORE_LABELS[score] + (f" of {factor}" if per_factor else "")
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


def _losses_section(
    rows: list[dict[str, Any]], losses_path: Path, params: Sequence[str]
) -> _Section:
    from jaxmmcl import figures

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


def write_report(folder: str | Path, sweep_dict: Mapping[str, Any] | None = None) -> list[Path]:
    """Writes the report of a sweep folder: ``NAME.md`` and its PNG figures.

    Reads ``results.csv``, ``losses.csv`` (optional: without it there is no loss figure) and,
    when ``sweep_dict`` is ``None``, ``config.yaml``. The report is the sweep's ``report:``
    section (see the module docstring), or :func:`default_report` of its axes when the section
    is absent or null; the training-loss figure is always added. Runs that diverged or failed
    are left out of every mean and listed in the Markdown. Every file is written atomically.

    Args:
      folder: the sweep's output folder.
      sweep_dict: the resolved sweep (``name``, ``description``, ``axes``, ``report``), as
        saved in ``config.yaml``.

    Returns:
      The written files: the PNGs (``NAME-KIND-SHORT.png``, ``NAME-losses.png``), then
      ``NAME.md``.

    Raises:
      ConfigError: a missing results.csv or config.yaml, or an invalid report section.
    """
    folder = Path(folder)
    results = folder / "results.csv"
    if not results.is_file():
        raise ConfigError(f"report {str(folder)!r}: no results.csv in this folder")
    rows = load_results(results)
    if sweep_dict is None:
        config = folder / "config.yaml"
        if not config.is_file():
            raise ConfigError(f"report {str(folder)!r}: no config.yaml in this folder")
        sweep_dict = read_yaml(config.read_text()) or {}
    name = str(sweep_dict.get("name") or folder.name)
    with results.open(newline="") as f:
        header = next(csv.reader(f), [])
    params = [c for c in header if c not in _NOT_PARAMS]
    spec = sweep_dict.get("report")
    if spec is None:
        entries = default_report(sweep_dict.get("axes") or {})
    else:
        entries = validate_report(spec, params)

    sections = []
    for entry in entries:
        ((kind, fields),) = entry.items()
        missing = [c for c in (fields["score"], *fields.get("where", {})) if c not in header]
        if missing:
            title = fields.get("title") or f"{kind} of {fields['score']}"
            sections.append(
                (kind, _Section(title, f"Skipped: results.csv has no column {missing[0]}."))
            )
        elif kind == "table":
            sections.append((kind, _table_section(rows, fields)))
        elif kind == "lines":
            sections.append((kind, _lines_section(rows, fields, params)))
        else:
            sections.append((kind, _heatmap_section(rows, fields, params)))
        if fields.get("name"):
            sections[-1][1].short = fields["name"]
    sections.append(("losses", _losses_section(rows, folder / "losses.csv", params)))

    written: list[Path] = []
    used: set[str] = set()
    lines = [f"# {name}\n"]
    description = str(sweep_dict.get("description") or "").strip()
    if description:
        lines.append(description + "\n")
    lines.append(_summary(rows, params) + "\n")
    for kind, section in sections:
        lines.append(f"## {_capital(section.title)}\n")
        lines.append(_capital(section.explanation) + "\n")
        if section.figure is not None:
            stem = f"{name}-{kind}" + (f"-{section.short}" if section.short else "")
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", stem)
            file = stem
            copy = 2
            while file in used:
                file, copy = f"{stem}-{copy}", copy + 1
            used.add(file)
            path = folder / f"{file}.png"
            save_png(section.figure, path)
            written.append(path)
            lines.append(f"![{section.title}]({path.name})\n")
        if section.table:
            lines.append(section.table)
    markdown = folder / f"{name}.md"
    write_atomic(markdown, "\n".join(lines))
    written.append(markdown)
    # Figures of an earlier report that this one did not draw would be read as current.
    for stale in set(folder.glob(f"{glob.escape(name)}-*.png")) - set(written):
        stale.unlink(missing_ok=True)
    return written


def _left_out(rows: Sequence[dict[str, Any]]) -> str:
    """``"3 runs (2 diverged, 1 failed)"`` for the runs whose status is not ok; "" if none."""
    status = {r["run"]: r["status"] for r in rows if r["status"] != "ok"}
    if not status:
        return ""
    detail = ", ".join(f"{n} {s}" for s, n in sorted(collections.Counter(status.values()).items()))
    return f"{len(status)} run{'s' if len(status) != 1 else ''} ({detail})"


def _own_note(rows: Sequence[dict[str, Any]]) -> str:
    """``"; h1 is scored on s and m1, h2 on s_tilde and m2"``: the factors whose names differ
    from their role, per encoding."""
    own: dict[str, list[str]] = {}
    for r in rows:
        role = _own_factor(r)
        if role and role != r["factor"] and r["factor"] not in own.setdefault(r["encoder"], []):
            own[r["encoder"]].append(r["factor"])
    parts = [f"{e} on {' and '.join(f)}" for e, f in own.items() if f]
    return (
        "; "
        + ", ".join(parts[:1]).replace(" on ", " is scored on ", 1)
        + "".join(f", {p}" for p in parts[1:])
        if parts
        else ""
    )


def _summary(rows: Sequence[dict[str, Any]], params: Sequence[str]) -> str:
    """One paragraph: runs, seeds, groups, the runs left out, how to read the scores."""
    runs = {r["run"]: r for r in rows}
    seeds = _ordered(r["seed"] for r in runs.values())
    groups = {r["group"] for r in runs.values()}
    text = (
        f"{len(runs)} runs ({len(seeds)} seed{'s' if len(seeds) != 1 else ''}: "
        f"{', '.join(map(_fmt, seeds))}) in {len(groups)} compiled group(s). "
        "Scores are per encoding: hk encodes view k; tables and figures name each encoding's "
        "own factors by their role (c: content, s: style, m: modality-specific"
        + _own_note(rows)
        + ")."
    )
    not_ok = [r for r in runs.values() if r["status"] != "ok"]
    if not_ok:
        listed = [
            f"run {r['run']} ({r['status']}; "
            + ", ".join(f"{p}={_fmt(r.get(p))}" for p in [*params, "seed"])
            + ")"
            for r in not_ok[:10]
        ]
        more = f" and {len(not_ok) - 10} more" if len(not_ok) > 10 else ""
        text += (
            f"\n\n**{_left_out(rows)} left out of every mean:** " + "; ".join(listed) + more + "."
        )
    return text
