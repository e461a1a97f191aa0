"""Sweep reports: the paper-style table, figures and Markdown, from a folder's result files.

``results.csv`` holds one row per run x readout x factor (:mod:`jaxmmcl.results`).
:func:`write_report` turns a sweep folder into ``NAME.md`` (tables) and PNG figures, as
described by the sweep file's optional ``report:`` section, a list of one-key mappings::

    report:
      - table: {rows: setting, columns: mechanism, score: r2_nonlinear}
      - lines: {x: train.learning_rate, hue: simulation.p_change, score: r2_nonlinear,
                factors: [c, s, m], where: {mechanism: multimodal}, title: "..."}
      - heatmap: {x: simulation.p_change, y: simulation.causal_strength, factor: s}

Kinds and their keys (every column key names a run parameter column of ``results.csv``), in
the registry :data:`jaxmmcl.reports.kinds.KINDS`:

* ``table``: ``rows`` (default ``setting``), ``columns`` (default ``mechanism``), ``score``
  (a per-factor score). The paper's Table 1 layout (:func:`paper_table`) and grouped bars.
* ``lines``: ``x`` (required), ``score``, ``factors`` (own-modality names, default: all found),
  ``hue`` (one line per value of this column; may be ``seed``), ``where``, ``xscale``
  (``linear``/``log``; default: log when the x values are positive and span a factor >= 20).
  The score against x: mean over seeds, a band of ± 1 std; one panel per encoder, or a single
  panel for per-run scores (``val_loss``, ``loss``).
* ``heatmap``: ``x``, ``y`` (required), ``factor`` (own-modality name, default ``s``),
  ``score``, ``where``. The mean over seeds per (x, y) cell, one panel per encoder.
* ``latents``: ``score``, ``where``. Every latent component scored alone (``eval.per_latent``)
  from every readout: subsets of views (or encodings) against components.
* ``subsets``: ``score``, ``where``. Every factor scored from every subset's readout, factors
  against subsets per encoder; ``*`` marks a factor the subset's views share (role ``c``).

Every kind also takes ``title`` (the figure and section title) and ``name`` (the short name in
the PNG file name ``NAME-KIND-SHORT.png``). ``where`` maps columns (or ``seed``) to a value or a
list of accepted values and keeps only matching runs. Factors are named by their role for each
encoding's own view (the ``role`` column): ``c`` (content), ``c_perm`` (permuted content),
``s`` (style: h1 on s, h2 on s_tilde) and ``m`` (modality-specific: h1 on m1, h2 on m2).
Without a ``report:`` section (or with ``report: null``), :func:`default_report` chooses from
the axes; ``report: []`` draws nothing but the training-loss figure, which every report has.

Files are written atomically (a temporary file renamed into place), so an interrupted sweep
never leaves a truncated table or figure.
"""

from __future__ import annotations

import csv
import glob
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from jaxmmcl import provenance
from jaxmmcl.errors import ConfigError
from jaxmmcl.reports import losses
from jaxmmcl.reports.common import (
    _by_name,
    _capital,
    _fmt,
    _left_out,
    _ordered,
    _own_factor,
    _Section,
    not_params,
)
from jaxmmcl.reports.kinds import KINDS
from jaxmmcl.reports.spec import default_report, validate_report
from jaxmmcl.reports.table import cell_legend, paper_table, table_cells
from jaxmmcl.results import read_results, read_yaml, save_png, write_atomic

__all__ = [
    "KINDS",
    "cell_legend",
    "default_report",
    "paper_table",
    "table_cells",
    "validate_report",
    "write_report",
]


def write_report(folder: str | Path, sweep_dict: Mapping[str, Any] | None = None) -> list[Path]:
    """Writes the report of a sweep folder: ``NAME.md`` and its PNG figures.

    Reads ``results.csv``, ``losses.csv`` (optional: without it there is no loss figure) and,
    when ``sweep_dict`` is ``None``, ``config.yaml``. The report is the sweep's ``report:``
    section (see the module docstring), or :func:`default_report` of its axes when the section
    is absent or null; the training-loss figure is always added, and ``provenance.yaml``, when
    the folder has one, as the last section. Runs that diverged or failed
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
    rows = read_results(results)
    if sweep_dict is None:
        config = folder / "config.yaml"
        if not config.is_file():
            raise ConfigError(f"report {str(folder)!r}: no config.yaml in this folder")
        sweep_dict = read_yaml(config.read_text()) or {}
    name = str(sweep_dict.get("name") or folder.name)
    with results.open(newline="") as f:
        header = next(csv.reader(f), [])
    params = [c for c in header if c not in not_params()]
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
        else:
            sections.append((kind, KINDS[kind].section(rows, fields, params)))
        if fields.get("name"):
            sections[-1][1].short = fields["name"]
    sections.append(("losses", losses.section(rows, folder / "losses.csv", params)))

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
    if (folder / provenance.FILE).is_file():
        lines.append(provenance.markdown(read_yaml((folder / provenance.FILE).read_text()) or {}))
    markdown = folder / f"{name}.md"
    write_atomic(markdown, "\n".join(lines))
    written.append(markdown)
    # Figures of an earlier report that this one did not draw would be read as current.
    for stale in set(folder.glob(f"{glob.escape(name)}-*.png")) - set(written):
        stale.unlink(missing_ok=True)
    return written


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
    )
    if _by_name(rows):
        text += "Scores are per encoding and per factor of the encoding's own modality."
    else:
        text += (
            "Scores are per encoding: hk encodes view k; tables and figures name each "
            "encoding's own factors by their role (c: content, s: style, m: modality-specific"
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
