"""Reliability through the CLI: failed runs, bad input, one writer per folder, interrupts."""

from __future__ import annotations

import csv
import os

import numpy as np
import pytest
import yaml
from conftest import TINY

from jaxmmcl.cli import main
from jaxmmcl.experiment import EXPERIMENTS
from jaxmmcl.runner import run_sweep
from jaxmmcl.sweeps import load_sweep


def write_sweep(tmp_path, spec, name="sweep.yaml"):
    path = tmp_path / name
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def read_csv(path):
    with path.open() as f:
        return list(csv.DictReader(f))


def test_blown_up_runs_are_failed_left_out_and_do_not_change_the_good_ones(tmp_path, capsys):
    def run(rates, name):
        spec = {"name": name, "base": TINY, "axes": {"train.learning_rate": rates, "seed": [0, 1]}}
        out = tmp_path / name
        assert main(["run", str(write_sweep(tmp_path, spec, f"{name}.yaml")), "--out", str(out),
                     "--quiet"]) == 0  # fmt: skip
        return out

    mixed, good = run([1e-3, 10.0], "mixed"), run([1e-3], "good")

    # --resume of a finished sweep says so and changes nothing.
    def files():
        return {p.name: p.stat().st_mtime_ns for p in good.iterdir() if p.name != ".lock"}

    before = files()
    capsys.readouterr()
    assert main(["run", str(tmp_path / "good.yaml"), "--out", str(good), "--resume",
                 "--quiet"]) == 0  # fmt: skip
    assert "finished; nothing to do" in capsys.readouterr().err
    assert files() == before
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

    # `report` refuses a damaged results.csv and never leaves an earlier report's figures.
    stale = good / "good-heatmap-old.png"
    stale.write_bytes(b"")
    assert main(["report", str(good)]) == 0
    assert not stale.exists() and (good / "good-losses.png").exists()
    text = (good / "results.csv").read_text()
    (good / "results.csv").write_text(text[: len(text) - 40])
    _refused(capsys, ["report", str(good)], "results.csv', line ")
    (good / "results.csv").write_text(text.splitlines()[0] + "\n")
    _refused(capsys, ["report", str(good)], "no results (only a header)")


def test_failed_means_worse_than_the_start_and_than_a_constant_encoder():
    import jax.numpy as jnp

    from jaxmmcl.losses import symmetric_info_nce
    from jaxmmcl.training import run_status

    # A constant encoder's loss is exactly 0: every distance is 0.
    h = jnp.ones((8, 3))
    assert float(symmetric_info_nce((h, h), (h, h), jnp.float32(0.5))) == pytest.approx(0, abs=1e-6)
    status = run_status(
        diverged=[False, False, False, False, True],
        initial_loss=[0.1, 0.1, -0.5, 0.1, 0.1],
        final_loss=[0.2, -0.3, -0.2, 0.05, float("nan")],
    )
    assert status.tolist() == ["failed", "ok", "ok", "ok", "diverged"]


def _refused(capsys, args, *needles):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1, err
    for needle in needles:
        assert needle in err, err


def test_repeated_and_conflicting_sweep_keys_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    repeated = tmp_path / "repeated.yaml"
    repeated.write_text("name: r\naxes:\n  seed: [0]\n  seed: [0, 1]\n")
    _refused(capsys, ["run", str(repeated), "--out", str(out)], "line 4", "duplicate key 'seed'")
    spec = {
        "name": "c",
        "base": TINY,
        "axes": {"train.steps": [10, 20], "case": {"a": {"train.steps": 5}}},
    }
    path = write_sweep(tmp_path, spec)
    _refused(capsys, ["run", str(path), "--out", str(out)], "axes.case", "train.steps")
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: b\naxes: {seed: [0\n")
    _refused(capsys, ["run", str(broken), "--out", str(out)], str(broken), "line ", "column ")
    _refused(capsys, ["run", str(tmp_path), "--out", str(out)], "is a directory")
    assert not out.exists()


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    from jaxmmcl.imgtxt import dataset

    root = tmp_path_factory.mktemp("m3di")
    # 12 validation images: unpadded names of 11 or more sort wrongly (10.png before 2.png).
    counts = {"train": 12, "val": 12, "test": 12}
    dataset.generate(root, counts, image_size=16, seed=3, chunk=16, show_progress=False)
    return root


def _damage(root, tmp_path, how):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(root, copy)
    how(copy / "val")
    return copy


def _edit_line(path, line, edit):
    lines = path.read_text().splitlines()
    lines[line - 1] = edit(lines[line - 1])
    path.write_text("\n".join(lines) + "\n")


def test_images_are_mapped_to_their_index_and_damaged_data_is_named(
    small_dataset, tmp_path, capsys
):
    from jaxmmcl.imgtxt import dataset

    vocab = dataset.load_vocabulary(small_dataset)
    padded = dataset.load_split(small_dataset, "val", vocab)

    def unpad(val):
        for p in (val / "images").glob("*.png"):
            p.rename(p.with_name(f"{int(p.stem)}.png"))

    unpadded = dataset.load_split(_damage(small_dataset, tmp_path / "u", unpad), "val", vocab)
    np.testing.assert_array_equal(unpadded.images, padded.images)

    def stray(val):
        (val / "images" / "05.png").rename(val / "images" / "12.png")

    cases = {
        "12.png": stray,
        "index 7": lambda val: (val / "images" / "07.png").unlink(),
        "x1.png": lambda val: (val / "images" / "01.png").rename(val / "images" / "x1.png"),
        "03.png": lambda val: (val / "images" / "03.png").write_bytes(
            (val / "images" / "03.png").read_bytes()[:60]
        ),
        "04.png": lambda val: (val / "images" / "04.png").write_bytes(b""),
        "latents_image.csv', line 3": lambda val: _edit_line(
            val / "latents_image.csv", 3, lambda s: s.rsplit(",", 1)[0]
        ),
        "line 4, column object_xpos": lambda val: _edit_line(
            val / "latents_image.csv", 4, lambda s: ",".join(["0", "abc", *s.split(",")[2:]])
        ),
        "line 2, column object_ypos": lambda val: _edit_line(
            val / "latents_text.csv",
            2,
            lambda s: ",".join([*s.split(",")[:2], "nan", *s.split(",")[3:]]),
        ),
    }
    for i, (needle, how) in enumerate(cases.items()):
        data = _damage(small_dataset, tmp_path / str(i), how)
        out = tmp_path / f"out{i}"
        _refused(capsys, ["reproduce", "imgtxt", "--data", str(data), "--out", str(out)], needle)
        assert not out.exists()
        # The dataset's own folder is never written.
        assert sorted(p.name for p in data.iterdir()) == ["test", "train", "val", "vocab.json"]


def test_malformed_sweeps_and_unusable_out_folders_are_refused(tmp_path, capsys):
    out = tmp_path / "out"
    cases = {
        "axes: expected a mapping": {"name": "a", "axes": [1, 2]},
        "base: expected a mapping": {"name": "b", "base": 3},
        "scales.cpu: expected a mapping": {"name": "c", "scales": {"cpu": [1]}},
        "name: expected a plain file name": {"name": "sub/dir", "base": TINY},
    }
    for needle, spec in cases.items():
        path = write_sweep(tmp_path, spec)
        args = ["run", str(path), "--out", str(out)] + (
            ["--scale", "cpu"] if "scales" in spec else []
        )
        _refused(capsys, args, needle)
    assert not out.exists()
    sweep = write_sweep(tmp_path, {"name": "ok", "base": TINY, "axes": {"seed": [0]}})
    a_file = tmp_path / "a-file"
    a_file.write_text("")
    _refused(capsys, ["run", str(sweep), "--out", str(a_file)], "is not a folder")
    _refused(capsys, ["run", str(sweep), "--out", "/proc/jaxmmcl/x"], "cannot write there")
    _refused(capsys, ["reproduce", "nosuch"], "imgtxt")


def test_a_second_writer_is_refused_while_the_first_holds_the_folder(tmp_path, capsys):
    from jaxmmcl.runner import folder_lock

    sweep = write_sweep(tmp_path, {"name": "ok", "base": TINY, "axes": {"seed": [0]}})
    out = tmp_path / "out"
    with folder_lock(out):
        _refused(capsys, ["run", str(sweep), "--out", str(out), "--resume"], "another jaxmmcl")
        assert sorted(p.name for p in out.iterdir()) == [".lock"]
    # Released on exit (the kernel releases it when a process dies, too): the folder is free.
    with folder_lock(out):
        pass


def _cli(*args):
    import subprocess
    import sys

    return subprocess.Popen(
        [sys.executable, "-m", "jaxmmcl.cli", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _start_and_signal(sweep, out, signum, delay, *extra):
    """Starts a sweep, sends ``signum`` ``delay`` s after its first checkpoint; returns the
    finished process and its stderr."""
    import signal
    import time

    proc = _cli("run", str(sweep), "--out", str(out), "--quiet", "--checkpoint-every", "0", *extra)
    checkpoints = out / "state" / "checkpoints"
    deadline = time.monotonic() + 120
    while not (checkpoints.is_dir() and any(checkpoints.glob("*/[0-9]*"))):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read()
        time.sleep(0.02)
    time.sleep(delay)
    assert proc.poll() is None, "the sweep ended before the signal"
    proc.send_signal(getattr(signal, signum))
    sent = time.monotonic()
    _, err = proc.communicate(timeout=60)
    assert time.monotonic() - sent < 15
    return proc, err


@pytest.mark.parametrize(
    "signals",
    [[("SIGINT", 0.3)], [("SIGTERM", 0.6)], [("SIGKILL", 0.15), ("SIGKILL", 0.45)]],
    ids=["SIGINT", "SIGTERM", "SIGKILL-twice"],
)
def test_a_signal_stops_the_sweep_promptly_and_resume_gives_the_same_results(tmp_path, signals):
    # Chunks of 50 steps at tiny sizes, each checkpointed: the delays land at different moments
    # inside chunks, well before the 120th chunk.
    spec = {"name": "s", "base": TINY | {"train": TINY["train"] | {"steps": 6000, "log_every": 50}},
            "axes": {"seed": [0, 1]}}  # fmt: skip
    sweep = write_sweep(tmp_path, spec)
    out = tmp_path / "out"
    for i, (signum, delay) in enumerate(signals):
        proc, err = _start_and_signal(sweep, out, signum, delay, *(["--resume"] if i else []))
        if signum == "SIGKILL":
            assert proc.returncode == -9
        else:
            assert proc.returncode == {"SIGINT": 130, "SIGTERM": 143}[signum]
            assert err.strip().splitlines()[-1].startswith(f"jaxmmcl: stopped by {signum}"), err
        assert not (out / "results.csv").exists()
    # Resumed and uninterrupted in this process, so that both evaluate on its devices.
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--resume"]) == 0
    whole = tmp_path / "whole"
    assert main(["run", str(sweep), "--out", str(whole), "--quiet"]) == 0
    for name in ("results.csv", "losses.csv"):
        assert (out / name).read_text() == (whole / name).read_text()


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_a_signal_swallowed_in_a_callback_still_stops_at_the_next_check():
    import gc
    import os
    import signal

    from jaxmmcl import interrupts

    class SignalsWhenCollected:
        def __del__(self):
            os.kill(os.getpid(), signal.SIGINT)  # the handler's exception is "ignored" here

    with interrupts.handled():
        SignalsWhenCollected()
        gc.collect()
        with pytest.raises(interrupts.Interrupted) as info:
            interrupts.check()
    assert info.value.exit_status == 130
    interrupts.check()  # outside the block: nothing pending


def test_a_run_that_cannot_fit_is_refused_before_anything_is_written(tmp_path, capsys):
    spec = {"name": "big", "base": TINY | {"train": TINY["train"] | {"batch_size": 10**9}}}
    sweep = write_sweep(tmp_path, spec)
    out = tmp_path / "out"
    for extra in (["--dry-run"], []):
        _refused(capsys, ["run", str(sweep), "--out", str(out), *extra],
                 "train.batch_size=1000000000", "one run needs about", "PiB")  # fmt: skip
    assert not out.exists()


def test_a_full_disk_while_checkpointing_is_one_line_and_leaves_the_sweep_resumable(
    tmp_path, capsys, monkeypatch
):
    import orbax.checkpoint as ocp

    def full(self, *args, **kwargs):
        raise ValueError("RESOURCE_EXHAUSTED: Error writing local file: No space left on device")

    sweep = write_sweep(tmp_path, {"name": "d", "base": TINY, "axes": {"seed": [0]}})
    out = tmp_path / "out"
    with monkeypatch.context() as patch:
        patch.setattr(ocp.CheckpointManager, "save", full)
        _refused(capsys, ["run", str(sweep), "--out", str(out), "--quiet"],
                 "cannot write a checkpoint", "RESOURCE_EXHAUSTED")  # fmt: skip
    assert not (out / "results.csv").exists()
    assert main(["run", str(sweep), "--out", str(out), "--quiet", "--resume"]) == 0


@pytest.mark.skipif(not os.path.exists("/proc/self/maps"), reason="needs Linux's /proc")
def test_a_long_sweep_does_not_accumulate_compiled_programs(tmp_path, monkeypatch):
    """Every group's compiled programs had stayed mapped (about 2,000 memory mappings a tiny
    group), so a sweep of some 30 groups ran out of vm.max_map_count and crashed in LLVM. The
    runner frees them after each program: the count stays flat."""
    counts = []
    simulation = EXPERIMENTS["simulation"]
    release = simulation.release

    def counting():
        release()
        with open("/proc/self/maps") as f:
            counts.append(sum(1 for _ in f))

    monkeypatch.setattr(simulation, "release", counting)
    base = TINY | {
        "train": TINY["train"] | {"steps": 10},
        "eval": TINY["eval"] | {"metrics": ["r2_linear"]},
    }
    sweep = load_sweep({"name": "groups", "base": base, "axes": {"simulation.n_s": [1, 2]}})
    run_sweep(sweep, tmp_path / "out", show_progress=False)
    assert len(counts) == 2 and counts[1] - counts[0] < 300, counts
