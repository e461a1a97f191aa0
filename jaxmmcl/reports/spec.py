"""The ``report:`` section of a sweep file: validation against the kinds' keys, and the
default report drawn without one."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from jaxmmcl.errors import ConfigError
from jaxmmcl.reports.common import (
    _REQUIRED,
    OWN_FACTORS,
    RUN_SCORES,
    _is_number,
    _is_scalar,
)
from jaxmmcl.reports.kinds import KINDS
from jaxmmcl.results import score_columns


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
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r} (valid: {', '.join(KINDS)})")
        where = f"report[{i}].{kind}"
        fields = {} if fields is None else fields
        if not isinstance(fields, Mapping):
            raise ConfigError(f"{where}: expected a mapping of keys, got {fields!r}")
        out.append({kind: _validate_entry(where, kind, dict(fields), columns)})
    return out


def _validate_entry(where: str, kind: str, fields: dict, columns: list[str]) -> dict[str, Any]:
    keys = KINDS[kind].keys | {"title": None, "name": None}
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
    scores = score_columns()
    if not KINDS[kind].factor_scores_only:
        scores += tuple(RUN_SCORES)
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
