"""Shared pieces of the report kinds: score names, row selection, aggregation over seeds, and
Markdown formatting. Helpers keep a leading underscore: they are the package's, not the API."""

from __future__ import annotations

import collections
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from jaxmmcl.evaluation.metrics import metric_columns
from jaxmmcl.results import FIXED_COLUMNS, KEY_COLUMNS, RUN_COLUMNS, score_columns
from jaxmmcl.structure import ROLES

if TYPE_CHECKING:
    from matplotlib.figure import Figure

RUN_SCORES = {"val_loss": "validation loss", "loss": "final training loss"}
"""Scores with one value per run -> their labels."""
# Factor names as seen from each encoding's own modality, in display order.

OWN_FACTORS = ROLES


def score_label(score: str) -> str:
    """A score's name in titles and axes."""
    return (metric_columns() | RUN_SCORES)[score]


def not_params() -> set[str]:
    """The result columns that are not a sweep's parameters."""
    return {*FIXED_COLUMNS, *KEY_COLUMNS, *RUN_COLUMNS, *score_columns()}


_REQUIRED = object()
# Per kind: key -> default (_REQUIRED: must be given; None: optional, left out when absent).


def _mean_std(values: Iterable[float]) -> str:
    values = np.asarray(list(values), dtype=float)
    if values.size == 0:
        return "—"
    if np.all(np.isnan(values)):
        return "left out"
    return f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}"


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_scalar(value: Any) -> bool:
    return isinstance(value, str | int | float | bool)


def _number(value: Any) -> float:
    """A score cell as a float; an empty cell (a score a block does not have) is NaN."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _own_factor(row: Mapping[str, Any], by_name: bool = False) -> str | None:
    """The role of a row's factor for its encoding's view (``None``: the view does not observe
    it, or a per-latent row); with ``by_name`` (:func:`_by_name`), the factor's name."""
    if row.get("latent", "") != "":
        return None
    return row["factor"] if by_name else row.get("role") or None


def _by_name(rows: Iterable[Mapping[str, Any]]) -> bool:
    """Whether factors go by name: no row has a role (an experiment without the simulation's
    roles, such as the image/text one, scores every factor of each encoding's own modality)."""
    return not any(r.get("role") for r in rows)


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
      scores by the encoder and the own-modality factor (only those in ``factors``; factor
      names where no row has a role).
    """
    cells: dict[tuple, dict[Any, float]] = {}
    per_factor = score in score_columns()
    rows = list(rows)
    by_name = _by_name(rows)
    for r in rows:
        if r["status"] != "ok":
            continue
        key = tuple(r[k] for k in keys)
        if per_factor:
            own = _own_factor(r, by_name)
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
    return 2 if score in score_columns() else 3


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


def _left_out(rows: Sequence[dict[str, Any]]) -> str:
    """``"3 runs (2 diverged, 1 failed)"`` for the runs whose status is not ok; "" if none."""
    status = {r["run"]: r["status"] for r in rows if r["status"] != "ok"}
    if not status:
        return ""
    detail = ", ".join(f"{n} {s}" for s, n in sorted(collections.Counter(status.values()).items()))
    return f"{len(status)} run{'s' if len(status) != 1 else ''} ({detail})"
