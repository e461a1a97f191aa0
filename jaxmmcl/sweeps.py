"""Sweep files: a base config plus grid axes, expanded into runs and grouped into programs.

A sweep file is YAML::

    name: table1
    experiment: simulation        # optional: which experiment (jaxmmcl.experiment.EXPERIMENTS)
    default_scale: cpu            # optional: the scale used when none is given
    base:                         # nested or dotted keys; omitted keys take the paper's values
      simulation: {n_c: 5, n_s: 5}
    scales:                       # optional named overrides, selected with --scale
      cpu: {train.steps: 5000}
    axes:                         # the grid: the product of all axes, in this order
      setting:                    # a named axis: labelled cases, each a mapping of dotted keys
        independent: {simulation.p_change: 1.0}
        causal: {simulation.p_change: 0.75, simulation.causal_strength: 1.0}
      train.learning_rate: [1.0e-4, 1.0e-3]   # a plain axis: one dotted key, a list of values
      dims:                       # a zipped axis: several keys stepping together
        zip: {simulation.n_s: [1, 3], simulation.n_m: [3, 1]}
      seed: [0, 1, 2]
    report:                       # optional: tables and figures (see jaxmmcl.reports)
      - lines: {x: train.learning_rate}

Runs whose static configs are equal form one group, trained as one compiled program; the traced
keys (the experiment's ``traced_keys``: :data:`jaxmmcl.config.TRACED_KEYS` for the simulation)
and the seed vary freely inside a group. Every run is validated when the sweep is loaded, before
anything runs.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from jaxmmcl.config import ConfigError, flatten
from jaxmmcl.experiment import EXPERIMENTS, Experiment
from jaxmmcl.reports import validate_report
from jaxmmcl.results import (
    FIXED_COLUMNS,
    KEY_COLUMNS,
    RUN_COLUMNS,
    read_yaml,
    score_columns,
    yaml_error_line,
)

SWEEP_KEYS = (
    "name",
    "experiment",
    "summary",
    "description",
    "default_scale",
    "base",
    "scales",
    "axes",
    "report",
)

# The experiments' sweep files are package data (the repository's top-level sweeps/ links
# here), so that an installed jaxmmcl finds them wherever it runs.
SWEEPS_DIR = Path(str(resources.files("jaxmmcl") / "experiments"))


def available_sweeps() -> list[str]:
    """Names of the packaged sweep files (``jaxmmcl reproduce NAME``, ``load_sweep(NAME)``)."""
    return sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))


@dataclass(frozen=True)
class Run:
    """One run of a sweep.

    Attributes:
      index: position in the sweep's product order.
      config: the validated run config (the experiment's: ``static``, ``hyper``, ``seed``).
      params: the grid values of this run: dotted key -> value, and axis name -> case label.
    """

    index: int
    config: Any
    params: dict[str, Any]


@dataclass
class Sweep:
    """A parsed sweep file (scale and overrides already applied).

    Attributes:
      name: the sweep's name.
      base: flat dotted-key base config.
      axes: axis name -> list of values (plain axis), mapping label -> overrides (named axis)
        or ``{"zip": {key: values}}`` (zipped axis).
      summary: one line (``jaxmmcl reproduce --list`` shows it).
      description: free text.
      report: the report section, validated (see :func:`jaxmmcl.reports.validate_report`);
        None draws the default report.
      experiment: the experiment's name in :data:`jaxmmcl.experiment.EXPERIMENTS`.
    """

    name: str
    base: dict[str, Any]
    axes: dict[str, Any]
    summary: str = ""
    description: str = ""
    report: list[dict[str, Any]] | None = None
    experiment: str = "simulation"
    runs: list[Run] = field(init=False)

    def __post_init__(self):
        self.runs = _expand(self.base, self.axes, self.kind)
        if self.report is not None:
            self.report = validate_report(self.report, self.param_columns)

    @property
    def param_columns(self) -> list[str]:
        """Result columns describing a run: axis names, then every dotted key an axis varies."""
        named = [
            name
            for name, values in self.axes.items()
            if isinstance(values, Mapping) and not _is_zip(values)
        ]
        keys: list[str] = []
        for name, values in self.axes.items():
            if _is_zip(values):
                keys += [k for k in values["zip"] if k not in keys]
            elif isinstance(values, Mapping):
                for case in values.values():
                    keys += [k for k in flatten(case) if k not in keys]
            elif name not in keys:
                keys.append(name)
        return named + [k for k in keys if k != "seed"]

    @property
    def kind(self) -> Experiment:
        """The experiment (:data:`jaxmmcl.experiment.EXPERIMENTS`)."""
        return EXPERIMENTS[self.experiment]

    def groups(self) -> list[tuple[Any, list[Run]]]:
        """Runs grouped by static config, in order of first appearance."""
        groups: dict[Any, list[Run]] = {}
        for run in self.runs:
            groups.setdefault(run.config.static, []).append(run)
        return list(groups.items())

    def to_dict(self) -> dict[str, Any]:
        """The resolved sweep in the file format: running it again repeats this sweep.

        ``base`` holds every key (defaults filled in), so later changes of the defaults do not
        change what the saved sweep means.
        """
        base = flatten(self.kind.defaults()) | self.base
        spec: dict[str, Any] = {"name": self.name}
        if self.experiment != "simulation":
            spec["experiment"] = self.experiment
        spec |= {
            "summary": self.summary,
            "description": self.description,
            "base": unflatten(base),
            "axes": self.axes,
        }
        if self.report is not None:
            spec["report"] = self.report
        return spec


def _keys_set_by(name: str, values: Any) -> set[str]:
    """Dotted keys one axis sets: its zipped keys, its named cases' keys, or its own name."""
    if _is_zip(values):
        return set(values["zip"]) if isinstance(values["zip"], Mapping) else set()
    if isinstance(values, Mapping):
        return {k for case in values.values() if isinstance(case, Mapping) for k in flatten(case)}
    return {name}


def _axis_keys(axes: Mapping[str, Any]) -> set[str]:
    """Dotted keys set by named or zipped axes (``--set`` cannot change them)."""
    keys: set[str] = set()
    for name, values in axes.items():
        if isinstance(values, Mapping):
            keys |= _keys_set_by(name, values)
    return keys


def _is_zip(values: Any) -> bool:
    return isinstance(values, Mapping) and set(values) == {"zip"}


def unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    """Inverse of :func:`jaxmmcl.config.flatten`."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *path, leaf = key.split(".")
        node = tree
        for part in path:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _check_keys(keys: Sequence[str], where: str, experiment: Experiment) -> None:
    valid = set(experiment.keys())
    for key in keys:
        if key not in valid:
            raise ConfigError(f"{where}{key}: unknown key")


def _check_disjoint(axes: dict[str, Any]) -> None:
    """Two axes that set the same key would silently overwrite each other's values."""
    owner: dict[str, str] = {}
    for name, values in axes.items():
        for key in sorted(_keys_set_by(name, values)):
            if key in owner:
                raise ConfigError(
                    f"axes.{name}: sets {key}, which axis {owner[key]!r} also sets (an axis "
                    "would overwrite the other's values)"
                )
            owner[key] = name


def _check_names(axes: dict[str, Any]) -> None:
    """A named or zipped axis is a results.csv column: it must not share a result column's
    name (the column would overwrite the axis's labels after the whole sweep has run)."""
    # ``step`` is a column of losses.csv, ``sweep`` the frames' column of a list of sweeps.
    reserved = {*FIXED_COLUMNS, *KEY_COLUMNS, *RUN_COLUMNS, *score_columns(), "step", "sweep"}
    for name, values in axes.items():
        if isinstance(values, Mapping) and name in reserved:
            raise ConfigError(
                f"axes.{name}: the name of a result column; call the axis something else "
                f"(reserved: {', '.join(sorted(reserved))})"
            )


def _expand(base: dict[str, Any], axes: dict[str, Any], experiment: Experiment) -> list[Run]:
    _check_disjoint(axes)
    _check_names(axes)
    choices = []
    for name, values in axes.items():
        if _is_zip(values):
            choices.append(_zip_cases(name, values["zip"], experiment))
        elif isinstance(values, Mapping):
            if not values:
                raise ConfigError(f"axes.{name}: a named axis needs at least one case")
            cases = []
            for label, overrides in values.items():
                if not isinstance(overrides, Mapping):
                    raise ConfigError(f"axes.{name}.{label}: expected a mapping, got {overrides!r}")
                flat = flatten(overrides)
                _check_keys(list(flat), f"axes.{name}.{label}: ", experiment)
                cases.append(({name: str(label)} | flat, flat))
            choices.append(cases)
        else:
            _check_keys([name], "axes.", experiment)
            if not isinstance(values, list) or not values:
                raise ConfigError(f"axes.{name}: expected a non-empty list, got {values!r}")
            choices.append([({name: v}, {name: v}) for v in values])
    runs = []
    for index, combo in enumerate(itertools.product(*choices)):
        params: dict[str, Any] = {}
        overrides = dict(base)
        for shown, values in combo:
            params |= shown
            overrides |= values
        runs.append(Run(index, experiment.run_config(overrides), params))
    return runs


def _zip_cases(name: str, columns: Any, experiment: Experiment) -> list[tuple[dict, dict]]:
    if not isinstance(columns, Mapping) or not columns:
        raise ConfigError(f"axes.{name}.zip: expected a mapping of keys to lists, got {columns!r}")
    _check_keys(list(columns), f"axes.{name}.zip.", experiment)
    lengths = set()
    for key, values in columns.items():
        if not isinstance(values, list) or not values:
            raise ConfigError(f"axes.{name}.zip.{key}: expected a non-empty list, got {values!r}")
        lengths.add(len(values))
    if len(lengths) > 1:
        shown = {key: len(values) for key, values in columns.items()}
        raise ConfigError(f"axes.{name}.zip: the lists differ in length {shown}")
    cases = []
    for i in range(lengths.pop()):
        values = {key: columns[key][i] for key in columns}
        cases.append((values, values))
    return cases


def parse_value(text: str) -> Any:
    """Parses a ``--set`` value as YAML (``0.5`` -> float, ``true`` -> bool, ``[1, 2]`` -> list)."""
    try:
        return read_yaml(text)
    except yaml.YAMLError:
        return text


def parse_overrides(items: Sequence[str]) -> dict[str, Any]:
    """Parses ``key=value`` strings; raises ConfigError for malformed items."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = parse_value(value)
    return out


def _apply(
    base: dict, axes: dict, overrides: Mapping[str, Any], where: str, experiment: Experiment
) -> None:
    """Applies overrides in place: a plain axis's key replaces that axis's values (a scalar
    becomes a one-value axis), any other key sets the base config. A ``--set`` of a key that a
    named axis sets is refused (the axis would silently win); a scale may set such a key as
    the base value of cases that leave it alone."""
    fixed_by_axes = _axis_keys(axes)
    for key, value in overrides.items():
        if key in axes and not isinstance(axes[key], Mapping):
            axes[key] = value if isinstance(value, list) else [value]
        elif key in axes:
            raise ConfigError(f"{where}{key}: a named or zipped axis cannot be overridden")
        elif key in fixed_by_axes and where == "--set ":
            raise ConfigError(f"{where}{key}={value!r}: this key is set by a named axis")
        else:
            _check_keys([key], where, experiment)
            base[key] = value


def load_sweep(
    source: str | Path | Mapping[str, Any],
    *,
    scale: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> Sweep:
    """Reads and validates a sweep: a YAML file, a packaged experiment or a mapping.

    Args:
      source: the sweep file's path, the name of a packaged experiment
        (:func:`available_sweeps`: ``"table1"``, ...; a file of that name comes first), or the
        sweep as a mapping.
      scale: a name under ``scales``; default: the file's ``default_scale``, if any. A scale
        may also replace the values of plain axes.
      overrides: dotted key -> value applied last. A key that is a plain axis replaces that
        axis's values (a scalar becomes a one-value axis).

    Raises:
      ConfigError: for a missing file, malformed YAML, unknown keys or invalid values.
    """
    if isinstance(source, Mapping):
        spec = dict(source)
    else:
        path = Path(source)
        if not path.exists() and str(source) in available_sweeps():
            path = SWEEPS_DIR / f"{source}.yaml"
        if path.is_dir():
            raise ConfigError(f"sweep file {str(path)!r}: is a directory, not a sweep file")
        if not path.is_file():
            raise ConfigError(f"sweep file {str(path)!r}: no such file")
        try:
            spec = read_yaml(path.read_text())
        except yaml.YAMLError as err:
            raise ConfigError(yaml_error_line(f"sweep file {str(path)!r}", err)) from None
        if not isinstance(spec, Mapping):
            raise ConfigError(f"sweep file {str(path)!r}: expected a mapping at the top level")
    for key in spec:
        if key not in SWEEP_KEYS:
            raise ConfigError(f"{key}: unknown sweep section (valid: {', '.join(SWEEP_KEYS)})")
    for section in ("base", "scales", "axes"):
        if not isinstance(spec.get(section) or {}, Mapping):
            raise ConfigError(f"{section}: expected a mapping, got {spec[section]!r}")
    experiment = spec.get("experiment", "simulation")
    if experiment not in EXPERIMENTS:
        raise ConfigError(
            f"experiment: expected one of {', '.join(EXPERIMENTS)}, got {experiment!r}"
        )
    kind = EXPERIMENTS[experiment]
    base = flatten(spec.get("base") or {})
    scales = spec.get("scales") or {}
    scale = scale if scale is not None else spec.get("default_scale")
    axes = dict(spec.get("axes") or {})
    if scale is not None:
        if scale not in scales:
            have = ", ".join(map(str, scales)) or "none"
            raise ConfigError(f"--scale: unknown scale {scale!r} (this sweep has: {have})")
        if not isinstance(scales[scale] or {}, Mapping):
            raise ConfigError(f"scales.{scale}: expected a mapping, got {scales[scale]!r}")
        _apply(base, axes, flatten(scales[scale] or {}), f"scales.{scale}.", kind)
    _apply(base, axes, overrides or {}, "--set ", kind)
    _check_keys(list(base), "base.", kind)
    name = str(spec.get("name") or (Path(source).stem if not isinstance(source, Mapping) else ""))
    # The report is written as <out>/<name>.md: a name must be a plain file name.
    if name and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise ConfigError(
            f"name: expected a plain file name (letters, digits, '.', '_', '-'), got {name!r}"
        )
    return Sweep(
        name=name,
        base=base,
        axes=axes,
        summary=str(spec.get("summary") or ""),
        description=str(spec.get("description") or ""),
        report=spec.get("report"),
        experiment=experiment,
    )
