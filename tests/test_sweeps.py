"""Sweeps at scale: every sweep file runs, programs split and shard without changing results,
killed sweeps resume to identical results, several processes write one results file."""

from __future__ import annotations

import csv
import functools
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from jaxmmcl import runner
from jaxmmcl.cli import main
from jaxmmcl.config import TRACED_KEYS, ConfigError, flatten
from jaxmmcl.experiment import EXPERIMENTS
from jaxmmcl.results import read_results
from jaxmmcl.runner import run_sweep
from jaxmmcl.sweeps import SWEEPS_DIR, load_sweep, read_yaml

SWEEP_FILES = sorted(SWEEPS_DIR.glob("*.yaml"))
TINY_SCALE = {
    "model.widths": [16, 16],
    "train.batch_size": 32,
    "train.steps": 20,
    "train.warmup_steps": 0,
    "train.log_every": 10,
    "eval.n_fit": 64,
    "eval.n_test": 64,
    "eval.nonlinear": "mlp",
    "eval.mlp_epochs": 20,
    "eval.val_batches": 2,
    "eval.val_batch_size": 32,
}
# The image/text experiment's (sweeps/imgtxt.yaml) at the same purpose.
TINY_IMGTXT_SCALE = {
    "data.image_size": 16,
    "data.n_train": 32,
    "data.n_val": 16,
    "data.n_test": 16,
    "model.stage_sizes": [1],
    "model.widths": [4],
    "model.embedding_size": 8,
    "model.text_channels": [4, 4, 4],
    "train.batch_size": 8,
    "train.steps": 4,
    "train.warmup_steps": 0,
    "train.log_every": 2,
    "eval.mlp_epochs": 5,
}
TINY_SCALES = {"simulation": TINY_SCALE, "imgtxt": TINY_IMGTXT_SCALE}
# Six runs in one group: with 4 devices the program pads them to 8.
SMALL = {
    "name": "small",
    "base": {
        "simulation": {"n_c": 2, "n_s": 2, "n_m": 2},
        "model": {"widths": [16, 16]},
        "train": {"batch_size": 32, "steps": 40, "log_every": 10, "learning_rate": 1e-3},
        "eval": {
            "n_fit": 64,
            "n_test": 64,
            "nonlinear": "mlp",
            "mlp_epochs": 20,
            "val_batch_size": 32,
        },
    },
    "axes": {"simulation.p_change": [0.5, 1.0], "seed": [0, 1, 2]},
}
SCORES = ("r2_linear", "r2_nonlinear", "val_loss", "loss")


def _regression_axes(axes: dict, traced_keys=TRACED_KEYS) -> dict:
    """A sweep's axes cut down to one compiled group per shape-changing case kept: every named
    case and the first two values of every plain axis that only set traced keys (they share
    the group), the first case or value of every other axis, seed 0."""
    cut = {}
    for name, values in axes.items():
        if isinstance(values, dict) and set(values) == {"zip"}:
            cut[name] = {"zip": {k: v[:1] for k, v in values["zip"].items()}}
        elif isinstance(values, dict):
            traced = {k: c for k, c in values.items() if set(flatten(c)) <= set(traced_keys)}
            cut[name] = traced or dict([next(iter(values.items()))])
        elif name in traced_keys:
            cut[name] = values[:2]
        else:
            cut[name] = values[:1]
    return cut


REGRESSION = Path(__file__).parent / "fixtures" / "regression"
RESULT_KEYS = ("run", "encoder", "factor", "status")


def _assert_equal_to_fixture(out: Path, name: str) -> None:
    """results.csv and losses.csv of ``out`` equal the recorded ones (float32 rounding at most).
    ``JAXMMCL_RECORD_FIXTURES=1`` records them instead (for a change meant to change results)."""
    fixture = REGRESSION / name
    if os.environ.get("JAXMMCL_RECORD_FIXTURES") == "1":
        fixture.mkdir(parents=True, exist_ok=True)
        for file in ("results.csv", "losses.csv"):
            (fixture / file).write_bytes((out / file).read_bytes())
        return
    for file, keys in (("results.csv", RESULT_KEYS), ("losses.csv", ("run", "step"))):
        with (fixture / file).open() as f:
            want = list(csv.DictReader(f))
        with (out / file).open() as f:
            got = list(csv.DictReader(f))
        assert [[r[k] for k in keys] for r in got] == [[r[k] for k in keys] for r in want]
        for column in want[0]:
            if column in keys or not _numeric(want[0][column]):
                assert [r[column] for r in got] == [r[column] for r in want], (file, column)
                continue
            np.testing.assert_allclose(
                [float(r[column] or "nan") for r in got],
                [float(r[column] or "nan") for r in want],
                rtol=1e-5,
                atol=1e-6,
                err_msg=f"{name}/{file}: {column}",
            )


def _numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return text == ""
    return True


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.stem)
def test_sweep_file_validates_at_both_scales_and_runs_tiny(path, tmp_path):
    # The regression fixtures: every sweep file, tiny, gives the recorded results.
    for scale in ("cpu", "paper"):
        assert load_sweep(path, scale=scale).runs
    spec = read_yaml(path.read_text())
    # A scale's values for a plain axis would replace the cut axis: the cut wins.
    cpu = {k: v for k, v in (spec["scales"]["cpu"] or {}).items() if k not in spec["axes"]}
    experiment = spec.get("experiment", "simulation")
    spec["scales"]["cpu"] = cpu | TINY_SCALES[experiment]
    spec["axes"] = _regression_axes(spec["axes"], EXPERIMENTS[experiment].traced_keys)
    sweep = load_sweep(spec, scale="cpu")
    rows = run_sweep(sweep, tmp_path, show_progress=False)
    # Four steps of an image/text run may end above its first chunk's loss ("failed").
    allowed = {"ok"} if experiment == "simulation" else {"ok", "failed"}
    assert rows and {r["status"] for r in rows} <= allowed
    assert np.isfinite([r["r2_linear"] for r in rows if "r2_linear" in r]).all()
    assert (tmp_path / f"{sweep.name}.md").is_file()
    assert list(tmp_path.glob(f"{sweep.name}-*.png"))
    _assert_equal_to_fixture(tmp_path, path.stem)


def test_every_paper_experiment_has_a_sweep():
    names = {p.stem for p in SWEEP_FILES}
    assert {"table1", "table4", "dims", "encoding_size", "intervention", "discrete"} <= names
    strength = load_sweep(SWEEPS_DIR / "strength.yaml")
    assert len(strength.runs) == 192 and len(strength.groups()) == 1


def test_zipped_axis_steps_keys_together():
    spec = {
        "name": "zip",
        "axes": {"dims": {"zip": {"simulation.n_s": [1, 3], "simulation.n_m": [3, 1]}}},
    }
    sweep = load_sweep(spec)
    pairs = [(r.config.static.simulation.n_s, r.config.static.simulation.n_m) for r in sweep.runs]
    assert pairs == [(1, 3), (3, 1)]
    assert sweep.param_columns == ["simulation.n_s", "simulation.n_m"]
    spec["axes"]["dims"]["zip"]["simulation.n_m"] = [3]
    with pytest.raises(ConfigError, match="differ in length"):
        load_sweep(spec)
    with pytest.raises(ConfigError, match=r"simulation\.n_s"):
        load_sweep(
            spec | {"axes": {"d": {"zip": {"simulation.n_s": [1]}}}},
            overrides={"simulation.n_s": 2},
        )


def test_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "out"
    assert main(["run", str(path), "--out", str(out), "--dry-run", "--max-runs", "4"]) == 0
    text = capsys.readouterr().out
    assert "6 runs in 1 groups, 2 programs" in text and "FLOP training" in text
    assert text.count("group000-part00") == 2
    assert not out.exists()


def test_split_programs_give_the_same_results(tmp_path):
    sweep = load_sweep(SMALL)
    whole = run_sweep(sweep, tmp_path / "whole", show_progress=False)
    split = run_sweep(sweep, tmp_path / "split", show_progress=False, max_runs=4)
    for key in SCORES:
        np.testing.assert_allclose(
            [r[key] for r in split], [r[key] for r in whole], rtol=1e-4, atol=1e-5
        )


def test_out_folder_is_guarded(tmp_path, tiny_sweep):
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(tiny_sweep))
    out = str(tmp_path / "out")
    assert main(["run", str(path), "--out", out, "--quiet"]) == 0
    # A second run neither silently overwrites nor mixes sweeps.
    assert main(["run", str(path), "--out", out, "--quiet"]) == 2
    other = ["--set", "train.steps=30"]
    assert main(["run", str(path), "--out", out, "--quiet", "--resume", *other]) == 2
    # Resuming a finished sweep only rewrites the report; --force starts over.
    before = (tmp_path / "out" / "results.csv").read_text()
    assert main(["run", str(path), "--out", out, "--quiet", "--resume"]) == 0
    assert (tmp_path / "out" / "results.csv").read_text() == before
    assert main(["run", str(path), "--out", out, "--quiet", "--force", *other]) == 0


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("JAX_NUM_CPU_DEVICES", None)
    return env | extra


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "jaxmmcl.cli", *args, "--quiet"]


def _assert_same_results(a: Path, b: Path, **tolerance) -> None:
    rows_a, rows_b = read_results(a), read_results(b)
    assert [(r["run"], r["encoder"], r["factor"]) for r in rows_a] == [
        (r["run"], r["encoder"], r["factor"]) for r in rows_b
    ]
    for key in SCORES:
        np.testing.assert_allclose([r[key] for r in rows_a], [r[key] for r in rows_b], **tolerance)


def test_killed_sweep_resumes_to_identical_results(tmp_path):
    spec = SMALL | {"base": SMALL["base"] | {"train": SMALL["base"]["train"] | {"steps": 3000}}}
    path = tmp_path / "long.yaml"
    path.write_text(yaml.safe_dump(spec))
    out = tmp_path / "killed"
    process = subprocess.Popen(
        _cli("run", str(path), "--out", str(out), "--checkpoint-every", "0"),
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    checkpoints = out / "state" / "checkpoints"
    deadline = time.monotonic() + 300
    while not any(checkpoints.glob("*/[0-9]*")):
        assert process.poll() is None, "the sweep ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (out / "results.csv").exists()
    started = yaml.safe_load((out / "provenance.yaml").read_text())["started"]

    assert main(["run", str(path), "--out", str(out), "--quiet", "--resume"]) == 0
    provenance = yaml.safe_load((out / "provenance.yaml").read_text())
    assert provenance["started"] == started and provenance["finished"] >= started
    assert sum(p["runs"] for p in provenance["programs"].values()) == 6
    assert main(["run", str(path), "--out", str(tmp_path / "whole"), "--quiet"]) == 0
    assert (out / "results.csv").read_text() == (tmp_path / "whole" / "results.csv").read_text()
    assert (out / "losses.csv").read_text() == (tmp_path / "whole" / "losses.csv").read_text()
    assert not (out / "state").exists()


def test_device_counts_and_groupings_give_bitwise_the_same_results(tmp_path):
    # The kernel ridge too: its solver must not be partitioned over the CPU devices. --threads
    # fixes XLA's CPU thread pool, whose size decides how some products split their sums.
    spec = SMALL | {"base": SMALL["base"] | {"eval": {"n_fit": 64, "n_test": 64}}}

    def run(name, devices, spec):
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(spec))
        out = tmp_path / name
        subprocess.run(
            _cli("run", str(path), "--out", str(out), "--threads", "4"),
            env=_env(JAX_NUM_CPU_DEVICES=str(devices)),
            check=True,
            capture_output=True,
        )
        return [(out / f).read_text().splitlines() for f in ("results.csv", "losses.csv")]

    four = run("four", 4, spec)
    assert run("two", 2, spec) == four
    # Run 0 alone (a group of one run: two devices, one a copy) equals run 0 of the six.
    alone = run("alone", 2, spec | {"axes": {"simulation.p_change": [0.5], "seed": [0]}})
    for lines_alone, lines_four in zip(alone, four, strict=True):
        assert lines_alone == [line for line in lines_four if line.startswith(("run,", "0,"))]


def test_the_cli_gives_jax_one_cpu_device_per_core_unless_told_otherwise():
    probe = (
        "import jax; from jaxmmcl.distributed import use_cpu_cores; n = use_cpu_cores(); "
        "print(n, len(jax.devices()))"
    )
    cores = len(os.sched_getaffinity(0))
    run = functools.partial(
        subprocess.run, [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    )
    assert run(env=_env()).stdout.split() == [str(cores), str(cores)]
    assert run(env=_env(JAX_NUM_CPU_DEVICES="3")).stdout.split() == ["None", "3"]
    # Once JAX runs, the count stands (no error).
    late = "import jax; jax.numpy.ones(1); " + probe
    out = subprocess.run(
        [sys.executable, "-c", late], env=_env(), capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["None", "1"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_no_process_writes_the_folder_before_every_process_has_checked_it(tmp_path, monkeypatch):
    # A peer that checked the folder after process 0 wrote config.yaml refused to run (the
    # two-process test's failure on a loaded machine). Record what a peer would see.
    out = tmp_path / "out"
    seen = []
    monkeypatch.setattr(
        runner, "barrier", lambda name: seen.append((name, (out / "config.yaml").exists()))
    )
    run_sweep(load_sweep(SMALL | {"axes": {"seed": [0]}}), out, show_progress=False)
    assert seen == [("folder checked", False), ("folder written", True)]


def test_two_processes_write_one_results_file(tmp_path):
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(SMALL))
    out = tmp_path / "multi"
    coordinator = f"localhost:{_free_port()}"
    processes = [
        subprocess.Popen(
            _cli("run", str(path), "--out", str(out), "--checkpoint-every", "0"),
            env=_env(
                JAX_NUM_CPU_DEVICES="2",
                JAXMMCL_COORDINATOR=coordinator,
                JAXMMCL_NUM_PROCESSES="2",
                JAXMMCL_PROCESS_ID=str(i),
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    for process in processes:
        _, err = process.communicate(timeout=600)
        assert process.returncode == 0, err.decode()[-2000:]
    assert sorted(p.name for p in out.iterdir() if p.suffix in (".csv", ".yaml")) == [
        "config.yaml",
        "losses.csv",
        "provenance.yaml",
        "results.csv",
    ]
    environment = yaml.safe_load((out / "provenance.yaml").read_text())["environment"]
    assert (environment["processes"], environment["devices"]) == (2, 4)
    assert main(["run", str(path), "--out", str(tmp_path / "single"), "--quiet"]) == 0
    _assert_same_results(out, tmp_path / "single", rtol=1e-4, atol=1e-5)
