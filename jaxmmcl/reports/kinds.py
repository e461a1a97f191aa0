"""The report kinds a sweep's ``report:`` section may list: the registry :data:`KINDS`.

A kind is its keys with their defaults (``_REQUIRED``: must be given; None: optional) and the
function that turns the result rows into one report section (Markdown tables and a figure). A
new kind is one module with a ``section`` and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from jaxmmcl.reports import heatmap, latents, lines, subsets, table
from jaxmmcl.reports.common import _Section


class Kind(NamedTuple):
    """A report kind.

    Attributes:
      keys: the kind's keys -> default (besides ``title`` and ``name``, which every kind takes).
      section: ``(rows, entry, param_columns) -> section``.
      factor_scores_only: the kind takes per-factor scores only (not ``val_loss``, ``loss``).
    """

    keys: dict[str, Any]
    section: Callable[[list[dict[str, Any]], dict[str, Any], Sequence[str]], _Section]
    factor_scores_only: bool = False


KINDS: dict[str, Kind] = {
    "table": Kind(table.KEYS, table.section, factor_scores_only=True),
    "lines": Kind(lines.KEYS, lines.section),
    "heatmap": Kind(heatmap.KEYS, heatmap.section),
    "latents": Kind(latents.KEYS, latents.section, factor_scores_only=True),
    "subsets": Kind(subsets.KEYS, subsets.section, factor_scores_only=True),
}
"""Report kind name -> :class:`Kind`."""
