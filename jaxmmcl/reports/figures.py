"""Figures of a sweep report, drawn with matplotlib's Agg renderer.

The functions take numbers already aggregated by :mod:`jaxmmcl.reports` and return a
:class:`matplotlib.figure.Figure` (:func:`jaxmmcl.results.save_png` writes one). Figures are
built without ``pyplot``, so drawing neither needs a display nor changes the backend or the open
figures of the calling program (a notebook, say).
"""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

# One colour per own-modality factor, the same in every figure.
FACTOR_COLORS = {"c": "tab:blue", "c_perm": "tab:purple", "s": "tab:orange", "m": "tab:green"}
FACTOR_LABELS = {
    "c": "c (content)",
    "c_perm": "c_perm (permuted content)",
    "s": "s (style)",
    "m": "m (modality-specific)",
}
ENCODER_TITLES = {
    "h1": "h1 = g1(x1), scored on c, s, m1",
    "h2": "h2 = g2(x2), scored on c, s_tilde, m2",
}
_LINESTYLES = ("-", "--", ":", "-.")
_MARKERS = ("o", "s", "^", "D", "v", "P", "X")
_DPI = 120


def _figure(width: float, height: float) -> Figure:
    fig = Figure(figsize=(width, height), dpi=_DPI, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _fmt(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _wrap(label: Any, width: int = 16) -> str:
    return "\n".join(textwrap.wrap(_fmt(label), width)) or _fmt(label)


def _title(fig: Figure, title: str, caption: str) -> None:
    # The caption says what line, band and bar mean, so that the PNG reads without the Markdown.
    fig.suptitle(f"{title}\n{caption}", fontsize=10)


def _score_limits(lo: float, hi: float, bounded: bool) -> tuple[float, float]:
    """Y limits: R^2 and accuracies always show [0, 1] so panels and figures compare."""
    if not bounded:
        pad = 0.05 * (hi - lo) if hi > lo else 0.05 * max(abs(hi), 1.0)
        return lo - pad, hi + pad
    return min(-0.05, lo - 0.05), max(1.05, hi + 0.05)


def table_bars(
    stats: Mapping[tuple[Any, Any, str], tuple[float, float, int]],
    row_values: Sequence[Any],
    column_values: Sequence[Any],
    *,
    row_axis: str,
    score_label: str,
    title: str,
    caption: str,
) -> Figure:
    """Grouped bars of the paper-table layout.

    Args:
      stats: (row value, column value, block) -> (mean, std, n) for blocks c, s, m; n = 0 for a
        block the runs do not have (no bar, marked "n/a").
      row_values: groups along x, in order.
      column_values: one panel each.
    """
    fig = _figure(1.5 + len(column_values) * (1.0 + 0.9 * len(row_values)), 4.8)
    axes = fig.subplots(1, len(column_values), sharey=True, squeeze=False)[0]
    width = 0.8 / 3
    means = [m for m, _, n in stats.values() if n]
    lo, hi = (min(means), max(means)) if means else (0.0, 1.0)
    for ax, cv in zip(axes, column_values, strict=True):
        for b, block in enumerate(("c", "s", "m")):
            for i, rv in enumerate(row_values):
                mean, std, n = stats.get((rv, cv, block), (np.nan, np.nan, 0))
                x = i + (b - 1) * width
                if n == 0:
                    ax.text(x, 0.02, "n/a", ha="center", va="bottom", fontsize=7, rotation=90)
                    continue
                ax.bar(x, mean, width, yerr=std, capsize=3, color=FACTOR_COLORS[block])
        ax.set_xticks(range(len(row_values)), [_wrap(v) for v in row_values], fontsize=8)
        ax.set_title(_fmt(cv))
        ax.set_xlabel(row_axis)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel(score_label)
    axes[0].set_ylim(*_score_limits(lo, hi, bounded=True))
    handles = [Line2D([], [], color=FACTOR_COLORS[b], lw=8) for b in ("c", "s", "m")]
    fig.legend(handles, [FACTOR_LABELS[b] for b in ("c", "s", "m")], loc="outside lower center",
               ncols=3, fontsize=8)  # fmt: skip
    _title(fig, title, caption)
    return fig


def line_panels(
    x_values: Sequence[Any],
    panels: Mapping[str | None, Mapping[tuple[str | None, Any], tuple[np.ndarray, np.ndarray]]],
    *,
    x_label: str,
    score_label: str,
    bounded: bool,
    xscale: str | None,
    hue_label: str | None,
    title: str,
    caption: str,
) -> Figure:
    """Score against x, one panel per encoder.

    Args:
      x_values: the x positions: numbers are drawn on a numeric axis, anything else as evenly
        spaced categories in the given order.
      panels: encoder (``None`` for per-run scores: one untitled panel) -> (factor or ``None``,
        hue value or ``None``) -> (means, stds) aligned with ``x_values`` (NaN: no data).
        Without hue, colour marks the factor; with hue, colour marks the hue value and line
        style and marker the factor.
      bounded: the score is an R^2 or an accuracy (the y axis then always shows [0, 1]).
      xscale: ``"linear"`` or ``"log"``; ``None``: log when the numeric x values are positive
        and span a factor >= 20.
    """
    numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in x_values)
    xs = np.asarray(x_values, dtype=float) if numeric else np.arange(len(x_values), dtype=float)
    if xscale is None:
        spread = numeric and xs.min() > 0 and xs.max() / xs.min() >= 20
        xscale = "log" if spread else "linear"
    factors = list(dict.fromkeys(f for series in panels.values() for f, _ in series))
    hues = list(dict.fromkeys(h for series in panels.values() for _, h in series))
    with_hue = hues != [None]
    hue_colors = _hue_colors(hues) if with_hue else {}
    # Roles have their own colours; factors named otherwise (the image/text experiment's) get
    # the qualitative cycle, and a marker each, since there may be more than ten.
    named = [f for f in factors if f is not None and f not in FACTOR_COLORS]
    named_colors = _hue_colors([str(f) for f in named]) if named else {}

    def factor_style(f: int, factor: Any) -> tuple[Any, str, str]:
        """(colour, line style, marker) of the factor's lines and legend entry."""
        if with_hue:
            return "black", _LINESTYLES[f % len(_LINESTYLES)], _MARKERS[f % len(_MARKERS)]
        if factor is None or factor in FACTOR_COLORS:
            return FACTOR_COLORS.get(factor, "tab:gray"), "-", "o"
        i = named.index(factor)
        return named_colors[str(factor)], "-", _MARKERS[i % len(_MARKERS)]

    fig = _figure(5.2 * len(panels) + 1.2, 4.4)
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False)[0]
    # The y range covers the bands, not only the means.
    extent = [
        v
        for series in panels.values()
        for mean, std in series.values()
        for v in (*(mean - np.nan_to_num(std)), *(mean + np.nan_to_num(std)))
        if np.isfinite(v)
    ]
    for ax, (encoder, series) in zip(axes, panels.items(), strict=True):
        for (factor, hue), (mean, std) in series.items():
            color, style, marker = factor_style(factors.index(factor), factor)
            color = hue_colors[hue] if with_hue else color
            ok = np.isfinite(mean)
            ax.plot(xs[ok], mean[ok], linestyle=style, marker=marker, color=color, ms=4)
            band = ok & np.isfinite(std)
            ax.fill_between(xs[band], (mean - std)[band], (mean + std)[band], color=color,
                            alpha=0.1 if with_hue else 0.18, linewidth=0)  # fmt: skip
        if encoder is not None:
            ax.set_title(ENCODER_TITLES.get(encoder, encoder), fontsize=10)
        ax.set_xscale(xscale)
        if numeric:
            ax.set_xticks(xs, [_fmt(v) for v in x_values], fontsize=8)
            ax.minorticks_off()
        else:
            ax.set_xticks(xs, [_wrap(v) for v in x_values], fontsize=8)
        ax.set_xlabel(x_label)
        ax.grid(alpha=0.3)
        if bounded:
            ax.axhline(0.0, color="black", linewidth=0.6)
    axes[0].set_ylabel(score_label)
    if extent:
        axes[0].set_ylim(*_score_limits(min(extent), max(extent), bounded))

    handles, labels = [], []
    if factors != [None]:
        for f, factor in enumerate(factors):
            color, style, marker = factor_style(f, factor)
            handles.append(Line2D([], [], color=color, linestyle=style, marker=marker))
            labels.append(FACTOR_LABELS.get(factor, factor))
    for hue in hues if with_hue else []:
        handles.append(Line2D([], [], color=hue_colors[hue], lw=3))
        labels.append(f"{hue_label} = {_fmt(hue)}")
    if handles:
        fig.legend(handles, labels, loc="outside right center", fontsize=8)
    _title(fig, title, caption)
    return fig


def _hue_colors(hues: Sequence[Any]) -> dict[Any, Any]:
    """Ordered hues (numbers) on a sequential colour map, categories on a qualitative one."""
    if all(isinstance(h, int | float) and not isinstance(h, bool) for h in hues):
        cmap = colormaps["viridis"]
        steps = np.linspace(0.0, 0.85, len(hues)) if len(hues) > 1 else [0.0]
        return {h: cmap(float(t)) for h, t in zip(hues, steps, strict=True)}
    cmap = colormaps["tab10"]
    return {h: cmap(i % 10) for i, h in enumerate(hues)}


def heatmaps(
    x_values: Sequence[Any],
    y_values: Sequence[Any],
    panels: Mapping[str | None, np.ndarray],
    *,
    x_label: str,
    y_label: str,
    score_label: str,
    bounded: bool,
    digits: int,
    title: str,
    caption: str,
) -> Figure:
    """One annotated heatmap per encoder with a shared colour scale.

    Args:
      panels: encoder (``None``: one untitled panel) -> means of shape
        ``(len(y_values), len(x_values))``; NaN cells (no data) are grey and marked "—".
      digits: decimals of the cell annotations.
    """
    fig = _figure(1.6 + len(panels) * (1.2 + 0.9 * max(len(x_values), 3)),
                  1.8 + 0.55 * max(len(y_values), 3))  # fmt: skip
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    finite = np.concatenate([m[np.isfinite(m)] for m in panels.values()])
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
    if bounded:
        lo, hi = min(lo, 0.0), max(hi, 1.0)
    norm = Normalize(lo, hi if hi > lo else lo + 1.0)
    cmap = colormaps["viridis"].with_extremes(bad="lightgrey")
    image = None
    for ax, (encoder, means) in zip(axes, panels.items(), strict=True):
        image = ax.imshow(np.ma.masked_invalid(means), cmap=cmap, norm=norm, origin="lower",
                          aspect="auto")  # fmt: skip
        for (i, j), value in np.ndenumerate(means):
            # Dark text on the bright end of viridis, light text on the dark end.
            shade = "black" if np.isfinite(value) and norm(value) > 0.6 else "white"
            text = f"{value:.{digits}f}" if np.isfinite(value) else "—"
            ax.text(j, i, text, ha="center", va="center", fontsize=8,
                    color=shade if np.isfinite(value) else "black")  # fmt: skip
        ax.set_xticks(range(len(x_values)), [_wrap(v, 10) for v in x_values], fontsize=8)
        ax.set_yticks(range(len(y_values)), [_wrap(v, 14) for v in y_values], fontsize=8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        if encoder is not None:
            ax.set_title(ENCODER_TITLES.get(encoder, encoder), fontsize=9)
    fig.colorbar(image, ax=list(axes), label=score_label, shrink=0.9)
    _title(fig, title, caption)
    return fig


def loss_curves(
    curves: Mapping[Any, tuple[np.ndarray, np.ndarray]],
    run_groups: Mapping[Any, str],
    diverged: set,
    *,
    title: str,
    caption: str,
) -> Figure:
    """Training loss against step: one faint line per run, coloured by group, and the group mean.

    Args:
      curves: run -> (steps, losses).
      run_groups: run -> group label (the legend entry).
      diverged: runs drawn dotted and left out of the group means.
    """
    groups = list(dict.fromkeys(run_groups[r] for r in curves))
    cmap = colormaps["tab10"]
    colors = {g: cmap(i % 10) for i, g in enumerate(groups)}
    fig = _figure(8.0, 4.6)
    ax = fig.subplots()
    for run, (steps, losses) in curves.items():
        style = ":" if run in diverged else "-"
        ax.plot(steps, losses, style, color=colors[run_groups[run]], alpha=0.3, linewidth=0.8)
    for g in groups:
        members = [r for r in curves if run_groups[r] == g and r not in diverged]
        by_step: dict[float, list[float]] = {}
        for r in members:
            for step, loss in zip(*curves[r], strict=True):
                if np.isfinite(loss):
                    by_step.setdefault(float(step), []).append(float(loss))
        steps = sorted(by_step)
        mean = [np.mean(by_step[s]) for s in steps]
        ax.plot(steps, mean, color=colors[g], linewidth=2.2, label=f"{g} (mean of {len(members)})")
    ax.set_xlabel("training step")
    ax.set_ylabel("training loss (mean over each logging interval)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    _title(fig, title, caption)
    return fig
