"""Live tracking (--log) and export to TensorBoard and W&B, read back with TensorBoard's own
event reader and W&B's own record protos, checked against the sweep's CSV files."""

from __future__ import annotations

import csv
import glob
import json
import struct
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest
import yaml
from conftest import TINY

from jaxmmcl import tracking
from jaxmmcl.checkpoints import GroupCheckpoint
from jaxmmcl.cli import main
from jaxmmcl.config import Hyperparams, run_config_from_dict, stack_hyperparams
from jaxmmcl.grid import train_grid
from jaxmmcl.results import read_results

# Two runs in one group: a traced axis and a seed.
SWEEP = {
    "name": "tracked",
    "base": TINY,
    "axes": {"simulation.p_change": [1.0, 0.5], "seed": [0]},
}


def _run(tmp_path: Path, *flags: str) -> Path:
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(SWEEP))
    out = tmp_path / "out"
    assert main(["run", str(sweep), "--out", str(out), "--quiet", *flags]) == 0
    return out


def _csv(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _expected(out: Path, run: int):
    """The run's logged losses by step and its final values by tracked name, from the CSVs."""
    losses = {
        int(r["step"]): float(r["loss"]) for r in _csv(out / "losses.csv") if r["run"] == str(run)
    }
    rows = [r for r in read_results(out) if r["run"] == run]
    values, status = tracking.final_values(rows)
    return losses, values, status


def _tensorboard(folder: Path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    events = EventAccumulator(str(folder))
    events.Reload()
    scalars = {
        tag: {e.step: e.value for e in events.Scalars(tag)} for tag in events.Tags()["scalars"]
    }
    data = events.SummaryMetadata("_hparams_/session_start_info").plugin_data.content
    start = plugin_data_pb2.HParamsPluginData.FromString(data).session_start_info
    hparams = {k: getattr(v, v.WhichOneof("kind")) for k, v in start.hparams.items()}
    return scalars, hparams


def _check_tensorboard(out: Path) -> None:
    for run in (0, 1):
        losses, values, _ = _expected(out, run)
        scalars, hparams = _tensorboard(out / "tensorboard" / f"run-{run:04d}")
        steps = sorted(losses)
        assert sorted(scalars["train/loss"]) == steps == [10, 20]
        np.testing.assert_allclose(
            [scalars["train/loss"][s] for s in steps], [losses[s] for s in steps], rtol=1e-6
        )
        for name, value in values.items():
            np.testing.assert_allclose(scalars[name][steps[-1]], value, rtol=1e-6)
        assert "score/h1/c/r2_linear" in values and "val_loss" in values
        assert hparams == {"seed": 0.0, "simulation.p_change": [1.0, 0.5][run]}


def test_tensorboard_live_and_exported(tmp_path):
    out = _run(tmp_path, "--log", "tensorboard")
    _check_tensorboard(out)
    # Export rewrites every run's folder from the CSVs: the same values as live.
    live = {p.name: p.read_bytes() for p in (out / "tensorboard").rglob("events.*")}
    assert main(["export", str(out), "--to", "tensorboard"]) == 0
    assert {p.name for p in (out / "tensorboard").rglob("events.*")}.isdisjoint(live)
    _check_tensorboard(out)


def _wandb_records(path: str):
    """The records of a W&B transaction log (``.wandb``): a 7-byte header, then LevelDB-style
    32 KiB blocks of chunks (checksum, length, type: full, first, middle, last)."""
    from wandb.proto import wandb_internal_pb2

    data = Path(path).read_bytes()
    assert struct.unpack("<4sHB", data[:7])[:2] == (b":W&B", 0xBEE1)
    pos, record = 7, b""
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if left < 7 or (kind == 0 and length == 0):  # the block's zero padding
            pos += left
            continue
        record += data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            yield wandb_internal_pb2.Record.FromString(record)
            record = b""


def _check_wandb(out: Path) -> None:
    for run in (0, 1):
        losses, values, status = _expected(out, run)
        (path,) = glob.glob(str(out / "wandb" / f"offline-run-*-{run:04d}" / "*.wandb"))
        history, summary, header = {}, {}, None
        for record in _wandb_records(path):
            kind = record.WhichOneof("record_type")
            if kind == "run":
                header = record.run
            elif kind == "history":
                items = {
                    i.key or "/".join(i.nested_key): json.loads(i.value_json)
                    for i in record.history.item
                }
                history[items["_step"]] = items
            elif kind == "summary":
                for item in record.summary.update:
                    summary[item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        assert (header.run_group, header.display_name) == ("tracked", f"run-{run:04d}")
        config = {i.key: json.loads(i.value_json) for i in header.config.update}
        assert config["seed"] == 0 and config["simulation.p_change"] == [1.0, 0.5][run]
        assert sorted(history) == sorted(losses)
        for step, loss in losses.items():
            np.testing.assert_allclose(history[step]["train/loss"], loss, rtol=1e-6)
        for name, value in values.items():
            np.testing.assert_allclose(summary[name], value, rtol=1e-6)
        assert summary["status"] == status == "ok"


def test_wandb_offline_live_and_exported(tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    out = _run(tmp_path, "--log", "wandb")
    _check_wandb(out)
    # Exported again: the same ids, so W&B continues those runs (offline: one more folder each).
    assert main(["export", str(out), "--to", "wandb"]) == 0
    folders = [Path(p).name for p in glob.glob(str(out / "wandb" / "offline-run-*"))]
    ids = sorted(name.split("-", 3)[3] for name in folders)  # offline-run-DATE_TIME-ID
    assert len(ids) == 4 and ids[0] == ids[1] != ids[2] == ids[3]


def test_missing_tracker_package_is_refused_before_anything_is_written(
    tmp_path, monkeypatch, capsys
):
    real = tracking.importlib.util.find_spec
    monkeypatch.setattr(
        tracking.importlib.util, "find_spec", lambda name: None if name == "wandb" else real(name)
    )
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(SWEEP))
    assert main(["run", str(sweep), "--out", str(tmp_path / "out"), "--log", "wandb"]) == 2
    assert "pip install 'jaxmmcl[wandb]'" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    assert main(["export", str(tmp_path), "--to", "tensorboard"]) == 2
    assert "not a sweep folder" in capsys.readouterr().err


def test_a_restored_grid_replays_its_history_to_on_chunk(tmp_path):
    # A fixed training set: its epoch order is part of the checkpointed state.
    config = {**TINY, "simulation": {**TINY["simulation"], "n_train": 128}}
    static = run_config_from_dict(config).static
    hypers = stack_hyperparams([Hyperparams(p_change=0.75), Hyperparams(p_change=1.0)])
    seen: list[list] = [[], []]
    for calls in seen:
        checkpoint = GroupCheckpoint(tmp_path / "ckpt", 0)
        try:
            train_grid(
                static,
                jnp.asarray([0, 1]),
                hypers,
                on_chunk=lambda step, losses, calls=calls: calls.append((step, losses.copy())),
                checkpoint=checkpoint,
            )
        finally:
            checkpoint.close()
    # The second call restored the finished state and trained nothing: the same history.
    assert [s for s, _ in seen[1]] == [s for s, _ in seen[0]] == [10, 20]
    for (_, a), (_, b) in zip(*seen, strict=True):
        np.testing.assert_array_equal(a, b)
        assert a.shape == (2,)


def test_wandb_that_cannot_start_stops_the_sweep_with_one_line(tmp_path, monkeypatch, capsys):
    wandb = pytest.importorskip("wandb")
    wandb.teardown()  # W&B keeps its first settings (offline, from the test above) per process
    monkeypatch.setenv("WANDB_MODE", "online")
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc: not logged in
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb-config"))
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(SWEEP))
    assert main(["run", str(sweep), "--out", str(tmp_path / "out"), "--log", "wandb"]) == 2
    err = capsys.readouterr().err
    assert "--log wandb: W&B could not start run-0000" in err and "--resume" in err
    assert "Traceback" not in err
    wandb.teardown()
