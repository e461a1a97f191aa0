"""The command line and sweep files: end to end, determinism, and bad input."""

from __future__ import annotations

import csv
import os
import shutil
import subprocess
import sys
from pathlib import Path

import jax
import pytest
import yaml

from jaxmmcl.cli import main
from jaxmmcl.config import ConfigError, run_config_from_dict
from jaxmmcl.results import read_results
from jaxmmcl.sweeps import SWEEPS_DIR, load_sweep


def write_sweep(tmp_path, spec, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_cli_run_writes_results_config_and_table(tmp_path, tiny_sweep, capsys):
    sweep = write_sweep(tmp_path, tiny_sweep)
    assert main(["run", str(sweep), "--out", str(tmp_path / "out"), "--quiet"]) == 0
    rows = read_results(tmp_path / "out")
    # 2 settings x 2 seeds x (multi-view: 2 encoders x 3 factors + multimodal: 2 x 5).
    assert len(rows) == 4 * (6 + 10)
    expected = ["run", "group", "seed", "setting", "mechanism", "simulation.p_change",
                "simulation.causal_strength", "simulation.shared_mixing", "model.shared_encoder",
                "simulation.n_m", "encoder", "factor", "role", "r2_linear", "r2_nonlinear",
                "val_loss", "loss", "status"]  # fmt: skip
    assert list(rows[0]) == expected
    assert {r["factor"] for r in rows if r["mechanism"] == "multi-view"} == {"c", "s", "s_tilde"}
    assert {r["status"] for r in rows} == {"ok"}
    assert {r["group"] for r in rows} == {0, 1}
    table = (tmp_path / "out" / "tiny.md").read_text()
    assert "| independent |" in table and "multimodal: c" in table
    assert "| independent |" in capsys.readouterr().out

    # What made the folder: versions, devices, times of each program; shown by the report.
    import jax

    prov = yaml.safe_load((tmp_path / "out" / "provenance.yaml").read_text())
    env = prov["environment"]
    assert env["versions"]["jax"] == jax.__version__ and env["versions"]["python"]
    assert (env["backend"], env["devices"], env["processes"]) == ("cpu", jax.device_count(), 1)
    assert len(env["git_commit"] or "0" * 40) == 40
    assert prov["started"] <= prov["finished"]
    assert [p["runs"] for p in prov["programs"].values()] == [4, 4]
    assert all(0 < p["compile_s"] < p["wall_s"] for p in prov["programs"].values())
    assert "## Provenance" in table and f"jax {jax.__version__}" in table

    # The saved config repeats the sweep exactly; the same sweep gives identical results.
    again = tmp_path / "again"
    assert main(["run", str(tmp_path / "out" / "config.yaml"), "--out", str(again), "--quiet"]) == 0
    first = (tmp_path / "out" / "results.csv").read_text()
    assert (again / "results.csv").read_text() == first
    losses = list(csv.DictReader((tmp_path / "out" / "losses.csv").open()))
    assert len(losses) == 8 * 2

    # `report` rebuilds the table from the files alone.
    table_path = tmp_path / "out" / "tiny.md"
    table_path.unlink()
    assert main(["report", str(tmp_path / "out")]) == 0
    assert table_path.read_text() == table
    assert main(["report", str(tmp_path / "nothing-here")]) == 2


def test_set_overrides_and_scales(tmp_path, tiny_sweep):
    tiny_sweep["scales"] = {"big": {"train.steps": 40}}
    path = write_sweep(tmp_path, tiny_sweep)
    sweep = load_sweep(path, scale="big", overrides={"seed": 7, "train.batch_size": 16})
    assert len(sweep.runs) == 4
    assert {r.config.seed for r in sweep.runs} == {7}
    assert {r.config.static.train.steps for r in sweep.runs} == {40}
    assert {r.config.static.train.batch_size for r in sweep.runs} == {16}
    assert len(sweep.groups()) == 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "simulation.n_c=-1"], "simulation.n_c: expected an integer >= 1, got -1"),
        (["--set", "train.batch_size=0"], "train.batch_size: expected an integer >= 2, got 0"),
        (["--set", "train.temperature=-1"], "train.temperature: expected a number in (0.0,"),
        (["--set", "simulation.p_change=0.5"], "simulation.p_change=0.5: this key is set by"),
        (["--set", "simulation.nc=2"], "simulation.nc: unknown key"),
        (["--set", "simulation.mixing=spline"], "simulation.mixing: expected one of mlp, linear"),
        (["--set", "train.learning_rate=fast"], "train.learning_rate: expected a number"),
        (["--set", "train.steps"], "expected key=value"),
        (["--scale", "huge"], "--scale: unknown scale 'huge'"),
    ],
)
def test_bad_input_exits_2_with_one_line_and_writes_nothing(
    tmp_path, tiny_sweep, capsys, args, message
):
    sweep = write_sweep(tmp_path, tiny_sweep)
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
    assert not out.exists()


def test_missing_sweep_file_and_unknown_experiment(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert main(["reproduce", "table9", "--out", str(tmp_path / "o")]) == 2
    assert "table9" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_bad_axis_values_name_the_axis(tmp_path, tiny_sweep):
    tiny_sweep["axes"]["simulation.n_s"] = [1, -3]
    with pytest.raises(ConfigError, match=r"simulation.n_s: expected an integer >= 0, got -3"):
        load_sweep(write_sweep(tmp_path, tiny_sweep))
    tiny_sweep["axes"]["simulation.n_s"] = [2]
    tiny_sweep["axes"]["setting"]["independent"]["simulation.p_change"] = 1.5
    with pytest.raises(
        ConfigError, match=r"simulation.p_change: expected a number in \[0.0, 1.0\]"
    ):
        load_sweep(write_sweep(tmp_path, tiny_sweep))
    tiny_sweep["axes"]["simulation.n_s"] = "five"
    with pytest.raises(ConfigError, match=r"axes\.simulation\.n_s: expected a non-empty list"):
        load_sweep(write_sweep(tmp_path, tiny_sweep))


def test_config_round_trip_and_type_checks():
    cfg = run_config_from_dict({"simulation.n_c": 3, "train": {"learning_rate": 1e-3}, "seed": 5})
    assert run_config_from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ConfigError, match=r"simulation\.n_c: expected an integer >= 1, got 2\.5"):
        run_config_from_dict({"simulation.n_c": 2.5})
    with pytest.raises(ConfigError, match=r"model\.shared_encoder: expected true or false"):
        run_config_from_dict({"model.shared_encoder": "yes"})
    assert cfg.static.widths() == (130, 650, 650, 650, 650, 130)  # paper ratios for d = 13


def test_table1_sweep_validates_at_both_scales():
    from jaxmmcl.sweeps import SWEEPS_DIR

    for scale in ("cpu", "paper"):
        sweep = load_sweep(SWEEPS_DIR / "table1.yaml", scale=scale)
        assert len(sweep.runs) == 30 and len(sweep.groups()) == 2
    paper = load_sweep(SWEEPS_DIR / "table1.yaml", scale="paper").runs[-1].config
    assert paper.static.train.batch_size == 6144 and paper.static.train.steps == 300_000
    assert paper.static.widths() == (150, 750, 750, 750, 750, 150)
    assert paper.hyper.learning_rate == 1e-4


def test_set_values_parse_as_yaml_with_exponent_floats():
    from jaxmmcl.sweeps import parse_overrides

    parsed = parse_overrides(["train.learning_rate=2e-3", "model.widths=[8, 8]", "x=true", "y=a"])
    assert parsed == {"train.learning_rate": 0.002, "model.widths": [8, 8], "x": True, "y": "a"}


def test_image_text_experiments_are_sweeps(capsys):
    assert main(["reproduce", "imgtxt", "--dry-run", "--set", "seed=[0, 1]"]) == 0
    out = capsys.readouterr().out
    devices = len(jax.devices())  # one run per CPU device and program
    assert f"16 runs in 1 groups, {16 // devices} programs" in out and "image/text 64px" in out
    assert main(["reproduce", "imgtxt3", "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "2 runs in 1 groups" in out and "3 views (changed: alpharot," in out
    assert main(["reproduce", "imgtxt", "--set", "model.encoding_size=13", "--dry-run"]) == 2
    assert main(["reproduce", "table1", "--data", "somewhere"]) == 2
    assert main(["reproduce", "imgtxt", "--data", "somewhere"]) == 2
    assert main(["reproduce", "imgtxt3", "--data", "somewhere"]) == 2
    assert main(["reproduce", "imgtxt3", "--set", "model.encoding_size=4", "--dry-run"]) == 2
    assert main(["reproduce", "imgtxt3", "--set", "data.changed=[nose]", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert "model.encoding_size: expected an integer from 1 to model.max_encoding_size (12)" in err
    assert "--data: only for reproduce imgtxt, not 'table1'" in err
    assert "--data: no such folder" in err and "not 'imgtxt3'" in err
    assert "model.encoding_size: expected model.max_encoding_size (24) with data.changed" in err
    assert "data.changed: expected distinct fields of shape, xpos" in err


def test_reproduce_list_names_every_experiment_with_its_summary(capsys):
    assert main(["reproduce", "--list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = [line.split()[0] for line in lines]
    assert names == sorted(p.stem for p in SWEEPS_DIR.glob("*.yaml"))
    assert all(len(line.split(maxsplit=1)) == 2 for line in lines)  # a summary on every line
    assert main(["reproduce"]) == 2
    assert "--list" in capsys.readouterr().err


def test_the_top_level_sweeps_folder_is_the_package_data():
    # One copy of the sweep files: the repository's sweeps/ links to the installed ones.
    top = Path(__file__).resolve().parent.parent / "sweeps"
    assert top.resolve() == SWEEPS_DIR.resolve()


def test_a_built_wheel_reproduces_from_an_empty_directory(tmp_path):
    # Build the wheel from a copy of the sources (no build/ or egg-info left in the checkout),
    # install it alone into a fresh folder and run it with -S: no site-packages .pth hooks, so
    # neither this checkout's editable install nor its sweeps/ can be what is found.
    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    shutil.copytree(root / "jaxmmcl", src / "jaxmmcl", ignore=shutil.ignore_patterns("__pycache__"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "--quiet"]
    subprocess.run([*pip, "wheel", "--no-deps", "-w", tmp_path / "dist", src], check=True)
    (wheel,) = (tmp_path / "dist").glob("jaxmmcl-*.whl")
    site = tmp_path / "site"
    subprocess.run([*pip, "install", "--no-deps", "--target", site, wheel], check=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    dependencies = [p for p in sys.path if p.endswith("site-packages")]
    code = (
        "import sys; sys.path[:0] = [sys.argv[1]]; sys.path += sys.argv[2:];"
        "import jaxmmcl; from jaxmmcl.cli import main;"
        "print(jaxmmcl.__file__); sys.exit(main(['reproduce', 'table1', '--dry-run']))"
    )
    proc = subprocess.run(
        [sys.executable, "-S", "-c", code, site, *dependencies],
        cwd=empty,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"},
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.splitlines()[0].startswith(str(site))
    assert "sweep 'table1': 30 runs" in proc.stdout
    assert list(empty.iterdir()) == []  # a dry run writes nothing
