"""Sweep reports from synthetic result rows: Markdown pivots, PNG figures, the report spec."""

from __future__ import annotations

import itertools
import math
import os

import numpy as np
import pytest

from jaxmmcl.config import ConfigError
from jaxmmcl.reports import default_report, paper_table, validate_report, write_report
from jaxmmcl.results import FIXED_COLUMNS, write_csv

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
MULTIMODAL = ("c", "s", "s_tilde", "m1", "m2")
MULTI_VIEW = ("c", "s", "s_tilde")
# The paper's structure: each encoding's own factors by role (the runner's role column).
ROLE = {("h1", "c"): "c", ("h1", "s"): "s", ("h1", "m1"): "m", ("h2", "c"): "c",
        ("h2", "s_tilde"): "s", ("h2", "m2"): "m", ("h1", "c_perm"): "c_perm",
        ("h2", "c_perm"): "c_perm"}  # fmt: skip


def write_sweep_folder(folder, axes, seeds, *, factors_of=None, diverged=(), seed=0):
    """Writes results.csv and losses.csv of a synthetic sweep; returns the result rows.

    Runs are the product of ``axes`` (column -> values) and ``seeds``; every score is random.
    ``factors_of(params)`` gives a run's factor blocks (default: all five). Runs whose index is
    in ``diverged`` get status ``diverged`` and NaN scores, as the runner writes them.
    """
    rng = np.random.default_rng(seed)
    names = list(axes)
    rows, losses = [], []
    combos = itertools.product(*axes.values(), seeds)
    for run, (*values, s) in enumerate(combos):
        params = dict(zip(names, values, strict=True))
        ok = run not in diverged
        for encoder in ("h1", "h2"):
            for factor in (factors_of or (lambda p: MULTIMODAL))(params):
                r2 = rng.uniform(-0.1, 1.0)
                rows.append(
                    {"run": run, "group": run % 2, "seed": s, **params, "encoder": encoder,
                     "factor": factor, "role": ROLE.get((encoder, factor), ""),
                     "r2_linear": r2 - 0.2 if ok else math.nan,
                     "r2_nonlinear": r2 if ok else math.nan, "val_loss": 4.0 + run / 10,
                     "loss": 3.5 + run / 10, "status": "ok" if ok else "diverged"}
                )  # fmt: skip
        for step in (10, 20, 30):
            losses.append({"run": run, "step": step, "loss": 5.0 - step / 10 + rng.random()})
    columns = [*FIXED_COLUMNS, *names, "encoder", "factor", "role", "r2_linear", "r2_nonlinear",
               "val_loss", "loss", "status"]  # fmt: skip
    write_csv(folder / "results.csv", rows, columns)
    write_csv(folder / "losses.csv", losses, ["run", "step", "loss"])
    return rows


def markdown_rows(text):
    """Table lines of a Markdown text, each as its list of cells."""
    return [
        [cell.strip() for cell in line.strip().strip("|").split("|")]
        for line in text.splitlines()
        if line.startswith("|") and not line.startswith("|---")
    ]


def section(markdown, heading):
    """The text of the section under ``## heading``."""
    return next(b for b in markdown.split("\n## ") if b.startswith(heading + "\n"))


def mean_of(cell):
    """The mean of a "mean ± std" cell."""
    return float(cell.split("±")[0])


def own_mean(rows, encoder, factor, score="r2_nonlinear", **params):
    """Independent reference: the mean over ok runs of one encoder's score on one block."""
    values = [
        r[score]
        for r in rows
        if r["encoder"] == encoder and r["factor"] == factor and r["status"] == "ok"
        and all(r[k] == v for k, v in params.items())
    ]  # fmt: skip
    return float(np.mean(values))


def assert_pngs(paths, folder):
    """Every returned PNG is a real, non-trivial PNG in ``folder``; no temporary file is left."""
    assert not [p for p in folder.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]
    pngs = [p for p in paths if p.suffix == ".png"]
    assert pngs and all(p.parent == folder for p in pngs)
    for path in pngs:
        data = path.read_bytes()
        assert data.startswith(PNG_SIGNATURE), path
        assert len(data) > 10_000, (path, len(data))
    return {p.name for p in pngs}


def test_table_sweep_report(tmp_path):
    settings = ["p=1.0, independent", "p=0.75, causal"]
    axes = {"setting": settings, "mechanism": ["multi-view", "multimodal"]}
    rows = write_sweep_folder(
        tmp_path,
        axes,
        [0, 1, 2],
        factors_of=lambda p: MULTI_VIEW if p["mechanism"] == "multi-view" else MULTIMODAL,
        diverged={4},
    )
    sweep = {"name": "t1", "description": "Two settings.", "axes": axes}
    paths = write_report(tmp_path, sweep)
    names = assert_pngs(paths, tmp_path)
    assert names == {"t1-table-setting-mechanism-r2_nonlinear.png", "t1-losses.png"}
    markdown = (tmp_path / "t1.md").read_text()
    assert paths[-1] == tmp_path / "t1.md"
    assert "Two settings." in markdown and "](t1-losses.png)" in markdown
    assert paper_table(rows) in markdown
    # Each column says in words which encodings and blocks its cells average.
    assert (
        "- **multi-view**: c (content) averages h1 on c and h2 on c; s (style) averages h1 on s "
        "and h2 on s_tilde; m: no such block in these runs." in markdown
    )
    assert "m (modality-specific) averages h1 on m1 and h2 on m2." in markdown
    # Run 4 (p=1.0 independent, multimodal, seed 1) diverged: listed, and left out.
    assert "1 run (1 diverged) left out of every mean" in markdown
    assert "run 4 (diverged; " in markdown
    table = {r[0]: r for r in markdown_rows(markdown)}
    for setting, mechanism in itertools.product(settings, ("multi-view", "multimodal")):
        where = {"setting": setting, "mechanism": mechanism}
        ok_seeds = {r["seed"] for r in rows if r["status"] == "ok" and r.items() >= where.items()}
        assert len(ok_seeds) == (2 if (setting, mechanism) == (settings[0], "multimodal") else 3)
        blocks = [("c", "c"), ("s", "s_tilde")]
        if mechanism == "multimodal":
            blocks.append(("m1", "m2"))
        m = 0 if mechanism == "multi-view" else 1
        for b, (h1_block, h2_block) in enumerate(blocks):
            per_seed = [
                (own_mean(rows, "h1", h1_block, seed=seed, **where)
                 + own_mean(rows, "h2", h2_block, seed=seed, **where)) / 2
                for seed in sorted(ok_seeds)
            ]  # fmt: skip
            cell = table[setting][1 + 3 * m + b]
            assert mean_of(cell) == pytest.approx(np.mean(per_seed), abs=0.006)
            assert float(cell.split("±")[1]) == pytest.approx(np.std(per_seed), abs=0.006)
        if mechanism == "multi-view":
            assert table[setting][3] == "—"  # no modality-specific block


def test_one_axis_ablation_report(tmp_path):
    lrs = [1e-3, 3e-3, 1e-2]
    axes = {"train.learning_rate": lrs}
    rows = write_sweep_folder(tmp_path, axes, [0, 1, 2])
    assert default_report(axes | {"seed": [0, 1, 2]}) == [
        {"lines": {"x": "train.learning_rate", "score": "r2_nonlinear", "where": {}}}
    ]
    report = [
        {"lines": {"x": "train.learning_rate", "factors": ["c", "s"], "where": {"seed": [0, 2]}}},
        {"lines": {"x": "train.learning_rate", "score": "val_loss", "title": "Validation"}},
        {"lines": {"x": "train.learning_rate", "score": "acc_linear"}},  # no such column
    ]
    sweep = {"name": "lr", "axes": axes, "report": report}
    paths = write_report(tmp_path, sweep)
    assert assert_pngs(paths, tmp_path) == {
        "lr-lines-learning_rate.png",
        "lr-lines-learning_rate-val_loss.png",
        "lr-losses.png",
    }
    markdown = (tmp_path / "lr.md").read_text()
    assert "Skipped: results.csv has no column acc_linear." in markdown
    assert "only runs with seed = [0, 2]" in markdown
    r2_rows = {
        r[0]: r for r in markdown_rows(section(markdown, "Nonlinear R² vs train.learning_rate"))
    }
    assert r2_rows["train.learning_rate"] == [
        "train.learning_rate", "h1: c", "h1: s", "h2: c", "h2: s"
    ]  # fmt: skip
    blocks = [("h1", "c"), ("h1", "s"), ("h2", "c"), ("h2", "s_tilde")]
    for lr, (i, (encoder, block)) in itertools.product(lrs, enumerate(blocks)):
        expected = np.mean(
            [
                own_mean(rows, encoder, block, seed=seed, **{"train.learning_rate": lr})
                for seed in (0, 2)
            ]
        )
        assert mean_of(r2_rows[f"{lr:g}"][1 + i]) == pytest.approx(expected, abs=0.006)
    loss_rows = {r[0]: r for r in markdown_rows(section(markdown, "Validation"))}
    for j, lr in enumerate(lrs):
        expected = np.mean([4.0 + (3 * j + seed) / 10 for seed in (0, 1, 2)])
        assert mean_of(loss_rows[f"{lr:g}"][1]) == pytest.approx(expected, abs=5e-4)


def test_two_axis_grid_report(tmp_path):
    axes = {"simulation.p_change": [0.25, 0.5, 1.0], "simulation.causal_strength": [0.0, 2.0]}
    rows = write_sweep_folder(tmp_path, axes, [0, 1], diverged={3})
    report = default_report(axes | {"seed": [0, 1]})
    assert [next(iter(e)) for e in report] == ["lines", "lines", "heatmap"]
    assert report[0]["lines"]["hue"] == "simulation.causal_strength"
    assert report[2]["heatmap"]["factor"] == "s"
    (tmp_path / "config.yaml").write_text(
        "name: grid\naxes:\n  simulation.p_change: [0.25, 0.5, 1.0]\n"
        "  simulation.causal_strength: [0.0, 2.0]\n  seed: [0, 1]\n"
    )
    paths = write_report(tmp_path)  # reads config.yaml
    assert len(assert_pngs(paths, tmp_path)) == 4
    markdown = (tmp_path / "grid.md").read_text()
    heatmap = markdown[markdown.index("h2, factor s (block s_tilde)") :]
    grid = {r[0]: r for r in markdown_rows(heatmap)}
    assert grid["simulation.causal_strength \\ simulation.p_change"][1:] == ["0.25", "0.5", "1"]
    for i, p in enumerate((0.25, 0.5, 1.0)):
        for strength in (0.0, 2.0):
            expected = own_mean(rows, "h2", "s_tilde", **{"simulation.p_change": p,
                                "simulation.causal_strength": strength})  # fmt: skip
            assert mean_of(grid[f"{strength:g}"][1 + i]) == pytest.approx(expected, abs=0.006)
    # Diverged run 3 (p_change 0.5, strength 2, seed 1) leaves one seed in its cells.
    assert "n = 1-2 runs per point" in markdown


def test_report_handles_missing_losses_and_empty_scores(tmp_path):
    axes = {"mechanism": ["multimodal"], "simulation.n_s": [1, 2]}
    write_sweep_folder(tmp_path, axes, [0, 1])
    (tmp_path / "losses.csv").unlink()
    report = [
        {"heatmap": {"x": "simulation.n_s", "y": "mechanism", "where": {"mechanism": "nothing"}}},
        {"lines": {"x": "mechanism", "score": "loss"}},  # a categorical x
    ]
    sweep = {"name": "n", "axes": axes, "report": report}
    paths = write_report(tmp_path, sweep)
    assert [p.name for p in paths] == ["n-lines-mechanism-loss.png", "n.md"]
    assert_pngs(paths, tmp_path)
    markdown = (tmp_path / "n.md").read_text()
    assert "Skipped: no finite r2_nonlinear values" in markdown
    assert "Skipped: no losses.csv" in markdown
    assert "runs differing in simulation.n_s averaged together" in markdown


def test_write_report_leaves_no_temporary_files(tmp_path, monkeypatch):
    axes = {"train.temperature": [0.5, 1.0]}
    write_sweep_folder(tmp_path, axes, [0])
    (tmp_path / "losses.csv").unlink()
    sweep = {"name": "t", "axes": axes, "report": [{"lines": {"x": "train.temperature"}}]}
    paths = write_report(tmp_path, sweep)
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", *(p.name for p in paths)}
    before = {p: p.read_bytes() for p in paths}
    # Permissions as for any new file (the umask's), not a temporary file's owner-only mode.
    umask = os.umask(0o022)
    os.umask(umask)
    assert {p.stat().st_mode & 0o777 for p in paths} == {0o666 & ~umask}

    # A failure while drawing leaves the earlier files as they were and no temporary file.
    def fail(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr("matplotlib.figure.Figure.savefig", fail)
    with pytest.raises(OSError, match="disk full"):
        write_report(tmp_path, sweep)
    assert {p.name for p in tmp_path.iterdir()} == {"results.csv", *(p.name for p in paths)}
    assert {p: p.read_bytes() for p in paths} == before


def test_paper_table_leaves_out_unscored_blocks():
    # Accuracies exist for discrete blocks only: an empty cell is "not scored", not "diverged".
    rows = [
        {"run": 0, "seed": 0, "setting": "a", "mechanism": "b", "encoder": e, "factor": f,
         "role": ROLE.get((e, f), ""), "acc_linear": 0.8 if f == "c" else "", "status": "ok"}
        for e in ("h1", "h2") for f in MULTIMODAL
    ]  # fmt: skip
    table = paper_table(rows, score="acc_linear")
    assert "| a | 0.80 ± 0.00 | — | — |" in table and "diverged" not in table


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"lines": {"x": "lr"}}, r"report: expected a list"),
        ([{"scatter": {"x": "a"}}], r"report\[0\]: unknown kind 'scatter'"),
        ([{"lines": {"x": "a"}, "table": {}}], r"report\[0\]: expected a one-key mapping"),
        (
            [{"lines": {"x": "a"}}, {"lines": {"x": "lr"}}],
            r"report\[1\]\.lines\.x: 'lr' is not a result",
        ),
        ([{"lines": {}}], r"report\[0\]\.lines\.x: required"),
        ([{"lines": {"x": "a", "score": "r3"}}], r"lines\.score: unknown score 'r3'"),
        ([{"lines": {"x": "a", "hue": "a"}}], r"lines\.hue: 'a' is already x"),
        ([{"lines": {"x": "a", "where": {"zzz": 1}}}], r"lines\.where\.zzz: not a result column"),
        ([{"lines": {"x": "a", "where": {"b": {"c": 1}}}}], r"where\.b: expected a value or a"),
        ([{"lines": {"x": "a", "where": [1]}}], r"lines\.where: expected a mapping"),
        ([{"lines": {"x": "a", "factors": ["q"]}}], r"lines\.factors: unknown factor 'q'"),
        ([{"lines": {"x": "a", "colour": "red"}}], r"lines\.colour: unknown key"),
        ([{"heatmap": {"x": "a", "y": "b", "factor": "m2"}}], r"factor: unknown factor 'm2'"),
        ([{"heatmap": {"x": "a", "y": "a"}}], r"heatmap\.y: 'a' is already x"),
        (
            [{"table": {"rows": "a", "columns": "b", "score": "loss"}}],
            r"table\.score: unknown score 'loss'",
        ),
        ([{"table": {}}], r"report\[0\]\.table\.rows: 'setting' is not a result column"),
        ([{"lines": {"x": "a", "name": "a b"}}], r"lines\.name: 'a b' must be"),
    ],
)
def test_validate_report_rejects_bad_specs(spec, message):
    with pytest.raises(ConfigError, match=message) as error:
        validate_report(spec, ["a", "b"])
    assert "\n" not in str(error.value)


def test_validate_report_normalises_idempotently():
    spec = [
        {"table": None},
        {"lines": {"x": "b", "hue": "seed", "where": {"a": [1, 2]}, "factors": ["c", "m"]}},
        {"heatmap": {"x": "a", "y": "b", "score": "loss"}},
    ]
    columns = ["setting", "mechanism", "a", "b"]
    normalised = validate_report(spec, columns)
    assert normalised[0] == {
        "table": {"rows": "setting", "columns": "mechanism", "score": "r2_nonlinear"}
    }
    assert normalised[2]["heatmap"]["factor"] == "s" and normalised[2]["heatmap"]["where"] == {}
    assert validate_report(normalised, columns) == normalised
    assert validate_report(None, columns) == []


def test_default_report_kinds():
    table1 = {"setting": {"a": {}, "b": {}}, "mechanism": {"x": {}}, "seed": [0, 1, 2]}
    assert [next(iter(e)) for e in default_report(table1)] == ["table"]
    # One numeric axis and one named axis: lines over the number, one line per case.
    mixed = {"train.learning_rate": [1e-3, 1e-2], "variant": {"a": {}, "b": {}}, "seed": [0]}
    lines = {"x": "train.learning_rate", "score": "r2_nonlinear", "where": {}, "hue": "variant"}
    assert default_report(mixed) == [{"lines": lines}]
    # Single-valued axes do not count; three numeric axes: lines without hue, no heatmap.
    three = {"a.x": [1, 2], "a.y": [1, 2], "a.z": [1.0, 2.0], "a.w": [5], "seed": [0, 1]}
    kinds = default_report(three)
    assert [e["lines"]["x"] for e in kinds] == ["a.x", "a.y", "a.z"]
    assert all("hue" not in e["lines"] for e in kinds)
    # No numeric axis: lines over the first axis, as categories.
    categorical = {"simulation.mixing": ["mlp", "linear"], "seed": [0]}
    assert default_report(categorical)[0]["lines"]["x"] == "simulation.mixing"
    assert default_report({"seed": [0, 1]}) == []


def test_lines_and_subsets_take_factors_by_name_where_rows_have_no_roles():
    """The image/text experiment's rows name factors with an empty role: a lines report draws
    one line per factor, each its own colour, and a subsets report marks role c with *."""
    from jaxmmcl.reports import lines, subsets

    rows = [
        {"run": run, "seed": run, "model.encoding_size": k, "encoder": "image", "subset": subset,
         "factor": factor, "role": "c" if (subset, factor) == ("a+b", "shape") else "",
         "r2_nonlinear": 0.1 * k + run / 100, "status": "ok"}
        for run, k in ((0, 1), (1, 2), (2, 1), (3, 2))
        for factor in ("shape", "hue", "spot")
        for subset in ("a+b", "a+c")
    ]  # fmt: skip
    entry = {"x": "model.encoding_size", "score": "r2_nonlinear", "where": {}}
    no_roles = [r | {"role": "", "subset": ""} for r in rows if r["subset"] == "a+b"]
    section = lines.section(no_roles, entry, ["model.encoding_size"])
    assert markdown_rows(section.table)[0] == [
        "model.encoding_size", "image: shape", "image: hue", "image: spot"
    ]  # fmt: skip
    colours = {tuple(line.get_color()) for line in section.figure.axes[0].get_lines()[:3]}
    assert len(colours) == 3
    table = subsets.section(rows, {"score": "r2_nonlinear", "where": {}}, []).table
    assert ["shape", "0.17 ± 0.06 *", "0.17 ± 0.06"] in markdown_rows(table)
    assert ["hue", "0.17 ± 0.06", "0.17 ± 0.06"] in markdown_rows(table)
