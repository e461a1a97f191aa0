"""Running a sweep: train each group as one program, evaluate it, write the result tables.

Output folder layout::

    DIR/config.yaml     the resolved sweep (``jaxmmcl run DIR/config.yaml`` repeats it)
    DIR/results.csv     one row per run x encoder x factor
    DIR/losses.csv      the mean training loss of every log_every chunk of every run
    DIR/NAME.md         the paper-style table, for sweeps with ``setting`` and ``mechanism`` axes
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm.auto import tqdm

from jaxmmcl.config import StaticConfig, stack_hyperparams
from jaxmmcl.evaluation.protocol import ENCODERS, EvalResult, evaluate_grid
from jaxmmcl.reports import FIXED_COLUMNS, SCORE_COLUMNS, paper_table, write_atomic, write_csv
from jaxmmcl.sweeps import Run, Sweep
from jaxmmcl.training import GridResult, train_grid


def group_rows(
    sweep: Sweep, group: int, runs: list[Run], trained: GridResult, scores: EvalResult
) -> list[dict[str, Any]]:
    """Result rows of one group: one per run x encoder x factor."""
    rows = []
    for i, run in enumerate(runs):
        flat = run.config.flat()
        params = {col: run.params.get(col, flat.get(col)) for col in sweep.param_columns}
        diverged = bool(trained.diverged[i])
        for e, encoder in enumerate(ENCODERS):
            for f, factor in enumerate(scores.factors):
                rows.append(
                    {
                        "run": run.index,
                        "group": group,
                        "seed": run.config.seed,
                        **params,
                        "encoder": encoder,
                        "factor": factor,
                        "r2_linear": math.nan if diverged else float(scores.r2_linear[i, e, f]),
                        "r2_nonlinear": (
                            math.nan if diverged else float(scores.r2_nonlinear[i, e, f])
                        ),
                        "loss": float(trained.final_loss[i]),
                        "status": "diverged" if diverged else "ok",
                    }
                )
    return rows


def run_group(
    static: StaticConfig, runs: list[Run], *, label: str = "", show_progress: bool = True
) -> tuple[GridResult, EvalResult]:
    """Trains and evaluates the runs of one group."""
    seeds = np.asarray([run.config.seed for run in runs])
    hypers = stack_hyperparams([run.config.hyper for run in runs])
    with tqdm(
        total=static.train.steps,
        desc=label,
        unit="step",
        disable=not show_progress,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:

        def progress(done, total):
            bar.update(done - bar.n)

        trained = train_grid(static, seeds, hypers, progress=progress)
        bar.set_postfix_str("evaluating")
        scores = evaluate_grid(static, seeds, trained.simulation, trained.state.params)
        bar.set_postfix_str(f"compile {trained.compile_seconds:.0f}s")
    return trained, scores


def run_sweep(sweep: Sweep, out_dir: str | Path, *, show_progress: bool = True) -> list[dict]:
    """Runs every group of ``sweep`` and writes the result files into ``out_dir``.

    Returns:
      The result rows (as written to ``results.csv``).
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "config.yaml", yaml.safe_dump(sweep.to_dict(), sort_keys=False))
    groups = sweep.groups()
    rows: list[dict[str, Any]] = []
    loss_rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for g, (static, runs) in enumerate(groups):
        label = f"group {g + 1}/{len(groups)} ({len(runs)} runs)"
        trained, scores = run_group(static, runs, label=label, show_progress=show_progress)
        rows += group_rows(sweep, g, runs, trained, scores)
        for i, run in enumerate(runs):
            for c, loss in enumerate(trained.loss_history[i]):
                step = min((c + 1) * static.train.log_every, static.train.steps)
                loss_rows.append({"run": run.index, "step": step, "loss": float(loss)})
    columns = [*FIXED_COLUMNS, *sweep.param_columns, *SCORE_COLUMNS]
    rows.sort(key=lambda r: r["run"])
    write_csv(out / "results.csv", rows, columns)
    write_csv(
        out / "losses.csv", sorted(loss_rows, key=lambda r: r["run"]), ["run", "step", "loss"]
    )
    if {"setting", "mechanism"} <= set(sweep.axes):
        title = f"# {sweep.name}: nonlinear R^2 (mean ± std over seeds)\n\n"
        write_atomic(out / f"{sweep.name}.md", title + paper_table(rows))
    if show_progress:
        elapsed = time.perf_counter() - start
        print(f"{len(sweep.runs)} runs in {len(groups)} groups, {elapsed:.0f} s", file=sys.stderr)
    return rows
