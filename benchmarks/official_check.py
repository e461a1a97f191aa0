"""The official code and jaxmmcl side by side, on the same simulations (official draws).

    .venv/bin/python benchmarks/official_check.py --official PATH [--seeds 0,1,2]
        [--steps 6000] [--work DIR] [--md FILE] [--json FILE]

PATH is a checkout of the official code (GitHub imantdaunhawer/multimodal-contrastive-learning;
the user's own, never vendored here). It needs PyTorch and pandas in this Python
(``pip install -e ".[bench]"``).

Settings (blocks of 2, p_change 0.75, the official encoder widths 10d-50d-50d-50d-50d-10d,
batch 256, constant learning rate 1e-3, ``--steps`` steps, kernel ridge fitted on 4,096 and
scored on 4,096 fresh samples):

* multimodal, statistical: f1 != f2, one encoder per modality, Wishart covariances;
* multi-view, statistical: f1 = f2, one shared encoder, n_m = 0 (the official
  ``--shared-mixing --shared-encoder --modality-n 0``);
* multimodal, causal: content-dependent style (``--content-dependent-style``).

For every setting and seed the official ``main_mlp.py`` trains (``--seed K``) and evaluates
(``--evaluate --seed K+1000 --num-eval-batches 1``), and jaxmmcl runs the same setting with
``simulation.draws: official``, so both see the simulation the official code draws for seed K:
its Wishart covariances, mechanisms, B and a. (Batches, encoder initialisations and evaluation
samples come from each side's own generators.) Validation losses: one batch of 4,096 on both
sides (the official ``--num-eval-batches 1``).

Prints, per setting and block (c, s, m; each the mean of the two encodings on their own
modality's block, as in Table 1), the nonlinear R^2 of both sides per seed and as mean ± std,
then the validation losses. ``--md`` also writes the Markdown, ``--json`` the raw rows. Runs
already evaluated in ``--work`` are reused, so an interrupted check continues.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SETTINGS = {
    "multimodal, statistical": (["--statistical-dependence"], {"simulation.statistical": True}),
    "multi-view, statistical": (
        ["--statistical-dependence", "--shared-mixing", "--shared-encoder", "--modality-n", "0"],
        {
            "simulation.statistical": True,
            "simulation.shared_mixing": True,
            "model.shared_encoder": True,
            "simulation.n_m": 0,
        },
    ),
    "multimodal, causal": (
        ["--content-dependent-style"],
        {"simulation.causal_strength": 1.0},
    ),
}
BLOCKS = {"c": (("h1", "c"), ("h2", "c")), "s": (("h1", "s"), ("h2", "s_tilde"))}
BLOCKS["m"] = (("h1", "m1"), ("h2", "m2"))
OFFICIAL_NAMES = {"hz1": "h1", "hz2": "h2", "s~": "s_tilde"}
EVAL_SEED_OFFSET = 1000


def official_run(checkout: Path, work: Path, setting: str, seed: int, steps: int) -> dict:
    """Trains and evaluates one official run (or reads it back); returns its scores."""
    model_id = f"{re.sub(r'[^a-z]+', '-', setting)}-seed{seed}"
    folder = work / "official" / model_id
    done = folder / "jaxmmcl_check.json"
    if done.is_file():
        return json.loads(done.read_text())
    flags, _ = SETTINGS[setting]
    common = ["--model-dir", str(work / "official"), "--model-id", model_id, "--no-cuda"]
    train = [
        *common,
        "--seed", str(seed),
        "--content-n", "2", "--style-n", "2", "--modality-n", "2",
        "--encoding-size", "2",
        "--style-change-prob", "0.75",
        "--batch-size", "256", "--lr", "1e-3",
        "--train-steps", str(steps), "--log-steps", str(max(steps, 1000)),
        *flags,
    ]  # fmt: skip
    evaluate = [
        *common,
        "--evaluate", "--load-args",
        "--seed", str(seed + EVAL_SEED_OFFSET),
        "--num-eval-batches", "1",
    ]  # fmt: skip
    t0 = time.perf_counter()
    for args in (train, evaluate):
        out = subprocess.run(
            [sys.executable, "main_mlp.py", *args],
            cwd=checkout,
            capture_output=True,
            text=True,
        )
        if out.returncode != 0:
            raise SystemExit(f"official main_mlp.py failed ({args}):\n{out.stderr[-3000:]}")
    match = re.search(r"<Val Loss>: (-?[0-9.]+)", out.stdout)
    scores = {}
    with (folder / "results.csv").open() as f:
        for row in csv.DictReader(f):
            encoder = OFFICIAL_NAMES[row["encoding"]]
            factor = OFFICIAL_NAMES.get(row["predicted_factors"], row["predicted_factors"])
            if row["r2_nonlinear"]:
                scores[f"{encoder}:{factor}"] = float(row["r2_nonlinear"])
    result = {
        "scores": scores,
        "val_loss": float(match.group(1)) if match else float("nan"),
        "seconds": time.perf_counter() - t0,
    }
    done.write_text(json.dumps(result))
    return result


def jaxmmcl_runs(work: Path, seeds: list[int], steps: int) -> dict[tuple[str, int], dict]:
    """All settings x seeds as one jaxmmcl sweep with official draws; scores per run."""
    from jaxmmcl.runner import run_sweep
    from jaxmmcl.sweeps import load_sweep

    sweep = load_sweep(
        {
            "name": "official-check",
            "base": {
                "simulation": {"n_c": 2, "n_s": 2, "n_m": 2, "p_change": 0.75, "draws": "official"},
                "model": {"widths": "paper"},
                "train": {
                    "batch_size": 256,
                    "steps": steps,
                    "learning_rate": 1e-3,
                    "schedule": "constant",
                    "log_every": min(steps, 500),
                },
                "eval": {
                    "n_fit": 4096,
                    "n_test": 4096,
                    "nonlinear": "kernel_ridge",
                    "val_batches": 1,
                    "val_batch_size": 4096,
                },
            },
            "axes": {
                "setting": {name: keys for name, (_, keys) in SETTINGS.items()},
                "seed": seeds,
            },
            "report": [],
        }
    )
    t0 = time.perf_counter()
    rows = run_sweep(sweep, work / "jaxmmcl", resume=(work / "jaxmmcl").exists())
    seconds = time.perf_counter() - t0
    out: dict[tuple[str, int], dict] = {}
    for row in rows:
        run = out.setdefault((row["setting"], int(row["seed"])), {"scores": {}})
        run["scores"][f"{row['encoder']}:{row['factor']}"] = float(row["r2_nonlinear"])
        run["val_loss"] = float(row["val_loss"])
        run["seconds"] = seconds / len(SETTINGS) / len(seeds)
    return out


def cell(scores: dict, block: str) -> float:
    """Table 1's cell: the mean of both encodings on their own modality's block."""
    values = [scores[f"{e}:{f}"] for e, f in BLOCKS[block] if f"{e}:{f}" in scores]
    return float(np.mean(values)) if values else float("nan")


def markdown(official: dict, ours: dict, seeds: list[int]) -> str:
    lines = [
        "| setting | block | official, per seed | jaxmmcl, per seed | official | jaxmmcl |",
        "| --- | --- | --- | --- | --- | --- |",
    ]

    def fmt(values):
        values = np.asarray(values)
        return f"{np.nanmean(values):.2f} ± {np.nanstd(values):.2f}"

    for setting in SETTINGS:
        for block in BLOCKS:
            a = [cell(official[setting, k]["scores"], block) for k in seeds]
            b = [cell(ours[setting, k]["scores"], block) for k in seeds]
            if np.all(np.isnan(a)):
                continue
            per_a = ", ".join(f"{v:.2f}" for v in a)
            per_b = ", ".join(f"{v:.2f}" for v in b)
            lines.append(f"| {setting} | {block} | {per_a} | {per_b} | {fmt(a)} | {fmt(b)} |")
    lines += ["", "| setting | official val loss | jaxmmcl val loss |", "| --- | --- | --- |"]
    for setting in SETTINGS:
        a = [official[setting, k]["val_loss"] for k in seeds]
        b = [ours[setting, k]["val_loss"] for k in seeds]
        lines.append(f"| {setting} | {fmt(a)} | {fmt(b)} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--official", required=True, help="checkout of the official code")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--steps", type=int, default=6000)
    parser.add_argument("--work", default="runs/official-check", help="working folder")
    parser.add_argument("--md", help="also write the Markdown table here")
    parser.add_argument("--json", help="also write the raw scores here")
    args = parser.parse_args()
    checkout = Path(args.official)
    if not (checkout / "main_mlp.py").is_file():
        raise SystemExit(f"--official: no main_mlp.py in {str(checkout)!r}")
    seeds = [int(s) for s in args.seeds.split(",")]
    work = Path(args.work).resolve()
    (work / "official").mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    official = {}
    for setting in SETTINGS:
        for seed in seeds:
            official[setting, seed] = official_run(checkout, work, setting, seed, args.steps)
            took = official[setting, seed]["seconds"]
            print(f"official {setting}, seed {seed}: {took:.0f} s", file=sys.stderr, flush=True)
    t1 = time.perf_counter()
    ours = jaxmmcl_runs(work, seeds, args.steps)
    t2 = time.perf_counter()
    table = markdown(official, ours, seeds)
    print(table)
    print(f"official: {t1 - t0:.0f} s this sitting; jaxmmcl: {t2 - t1:.0f} s", file=sys.stderr)
    if args.md:
        Path(args.md).write_text(table)
    if args.json:
        raw = {
            "official": {f"{s}|{k}": v for (s, k), v in official.items()},
            "jaxmmcl": {f"{s}|{k}": v for (s, k), v in ours.items()},
        }
        Path(args.json).write_text(json.dumps(raw, indent=1))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
