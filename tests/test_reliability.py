"""Reliability through the CLI: failed runs, bad input, one writer per folder, interrupts."""

from __future__ import annotations

import csv

import pytest
import yaml
from conftest import TINY

from jaxmmcl.cli import main


def write_sweep(tmp_path, spec, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_blown_up_runs_are_failed_left_out_and_do_not_change_the_good_ones(tmp_path):
    def run(rates, name):
        spec = {"name": name, "base": TINY, "axes": {"train.learning_rate": rates, "seed": [0, 1]}}
        out = tmp_path / name
        assert main(["run", str(write_sweep(tmp_path, spec, f"{name}.yaml")), "--out", str(out),
                     "--quiet"]) == 0  # fmt: skip
        return out

    mixed, good = run([1e-3, 10.0], "mixed"), run([1e-3], "good")
    rows = read_csv(mixed / "results.csv")
    status = {(r["train.learning_rate"], r["seed"]): r["status"] for r in rows}
    assert status == {("0.001", "0"): "ok", ("0.001", "1"): "ok",
                      ("10.0", "0"): "failed", ("10.0", "1"): "failed"}  # fmt: skip
    # A failed run's loss ends far above where it started (and above 0, a constant encoder's).
    assert all(float(r["loss"]) > 1e3 for r in rows if r["status"] == "failed")
    # Training is bitwise the same; scores agree to float32 rounding (the evaluation programs
    # batch runs per device, and XLA rounds a batch of one run differently from larger ones).
    ok_rows = [r for r in rows if r["status"] == "ok"]
    good_rows = read_csv(good / "results.csv")
    assert len(ok_rows) == len(good_rows)
    for a, b in zip(ok_rows, good_rows, strict=True):
        assert [a[k] for k in ("seed", "encoder", "factor", "loss", "status")] == [
            b[k] for k in ("seed", "encoder", "factor", "loss", "status")
        ]
        for k in ("r2_linear", "r2_nonlinear", "val_loss"):
            assert float(a[k]) == pytest.approx(float(b[k]), rel=1e-5, abs=1e-6), k
    report = (mixed / "mixed.md").read_text()
    assert "2 runs (2 failed) left out of every mean" in report


def test_failed_means_worse_than_the_start_and_than_a_constant_encoder():
    import jax.numpy as jnp

    from jaxmmcl.losses import symmetric_info_nce
    from jaxmmcl.training import run_status

    # A constant encoder's loss is exactly 0: every distance is 0.
    h = jnp.ones((8, 3))
    assert float(symmetric_info_nce(h, h, h, h, jnp.float32(0.5))) == pytest.approx(0, abs=1e-6)
    status = run_status(
        diverged=[False, False, False, False, True],
        initial_loss=[0.1, 0.1, -0.5, 0.1, 0.1],
        final_loss=[0.2, -0.3, -0.2, 0.05, float("nan")],
    )
    assert status.tolist() == ["failed", "ok", "ok", "ok", "diverged"]
