"""Results as DataFrames (jaxmmcl.frames), read from the regression fixtures' sweep folders and
checked against pandas' own CSV reader."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import jaxmmcl
from jaxmmcl.errors import ConfigError

FIXTURES = Path(__file__).parent / "fixtures" / "regression"


def test_results_typed_and_equal_to_the_file():
    frame = jaxmmcl.load_results(FIXTURES / "multiview")
    oracle = pd.read_csv(FIXTURES / "multiview" / "results.csv")
    assert list(frame.columns) == list(oracle.columns)
    assert len(frame) == len(oracle)
    for name in ("run", "group", "seed"):
        assert frame[name].dtype == np.int64
    assert frame["simulation.statistical"].dtype == bool
    assert frame["r2_linear"].dtype == np.float64
    np.testing.assert_array_equal(frame["r2_linear"], oracle["r2_linear"])
    # Per-latent rows carry their component; factor rows have none (nullable integers).
    assert frame["latent"].dtype == "Int64"
    np.testing.assert_array_equal(frame["latent"].isna(), oracle["latent"].isna())
    # Empty labels stay "" so that a groupby over them keeps every row.
    assert pd.api.types.is_string_dtype(frame["role"])
    assert not frame["role"].isna().any()
    assert frame.groupby(["encoder", "subset", "role"]).size().sum() == len(frame)


def test_several_sweeps_concatenate_with_a_sweep_column():
    frame = jaxmmcl.load_results([FIXTURES / "table1", FIXTURES / "discrete"])
    assert frame.columns[0] == "sweep"
    assert list(frame["sweep"].cat.categories) == ["table1", "discrete"]
    sizes = [len(pd.read_csv(FIXTURES / name / "results.csv")) for name in ("table1", "discrete")]
    assert frame["sweep"].value_counts()[["table1", "discrete"]].tolist() == sizes
    # A parameter only one sweep has is missing on the other's rows, typed as its own values.
    assert frame["simulation.n_classes"].dtype == "Int64"
    assert frame.loc[frame["sweep"] == "table1", "simulation.n_classes"].isna().all()
    assert frame["simulation.statistical"].dtype == "boolean"


def test_losses_carry_their_run_parameters(tmp_path):
    frame = jaxmmcl.load_losses(FIXTURES / "table1")
    losses = pd.read_csv(FIXTURES / "table1" / "losses.csv")
    runs = pd.read_csv(FIXTURES / "table1" / "results.csv").drop_duplicates("run")
    oracle = losses.merge(runs[["run", "seed", "setting", "status"]], on="run")
    assert len(frame) == len(losses)
    np.testing.assert_array_equal(frame["loss"], oracle["loss"])
    assert frame["step"].dtype == np.int64
    assert frame["setting"].tolist() == oracle["setting"].tolist()
    assert "r2_linear" not in frame and "encoder" not in frame
    # Two folders of the same name are told apart by their paths.
    for name in ("a", "b"):
        shutil.copytree(FIXTURES / "table1", tmp_path / name / "table1")
    both = jaxmmcl.load_losses([tmp_path / "a" / "table1", tmp_path / "b" / "table1"])
    assert both["sweep"].nunique() == 2 and len(both) == 2 * len(losses)


def test_damaged_or_missing_files_name_themselves(tmp_path):
    with pytest.raises(ConfigError, match="no such file"):
        jaxmmcl.load_results(tmp_path)
    shutil.copytree(FIXTURES / "table1", tmp_path / "t")
    lines = (tmp_path / "t" / "results.csv").read_text().splitlines()
    (tmp_path / "t" / "results.csv").write_text("\n".join([*lines[:3], lines[3][:20]]) + "\n")
    with pytest.raises(ConfigError, match="line 4: cut short"):
        jaxmmcl.load_results([tmp_path / "t"])
    with pytest.raises(ConfigError, match="no sweep folder"):
        jaxmmcl.load_results([])
