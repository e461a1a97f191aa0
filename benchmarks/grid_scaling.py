"""Throughput of one group against its number of runs R, on 1 and on several CPU devices.

    python benchmarks/grid_scaling.py [--runs 1,4,16,64] [--devices 1,4] [--steps 200]
                                      [--at-once auto|all|N]

For each device count a child process (``JAX_NUM_CPU_DEVICES`` must be set before jax is
imported) trains groups of R runs with :func:`jaxmmcl.grid.train_grid` at a small width
and prints run-steps/s, the time per step of the whole group, and the compile time of the
group's programs. Linear growth of the step time with R, once the device is busy, means the
per-run overhead (dispatch, Python, compilation) is amortised. ``--at-once`` is
``train_grid``'s choice of how many runs a device vmaps together: ``auto`` (the default, what
the CLI does: one at a time on CPU devices), ``all`` (vmap all of a device's runs) or a number.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys


def _worker(runs: list[int], steps: int, repeats: int, at_once: int | str | None) -> None:
    import jax
    import numpy as np

    from jaxmmcl.config import run_config_from_dict, stack_hyperparams
    from jaxmmcl.grid import train_grid

    base = {
        "simulation.n_c": 2,
        "simulation.n_s": 2,
        "simulation.n_m": 2,
        "model.widths": [32, 64, 64, 32],
        "train.batch_size": 256,
        "train.steps": steps,
        "train.log_every": steps // 2,
    }
    for r in runs:
        configs = [run_config_from_dict(base | {"seed": s}) for s in range(r)]
        static = configs[0].static
        hypers = stack_hyperparams([c.hyper for c in configs])
        seeds = np.arange(r)
        first = train_grid(static, seeds, hypers, at_once=at_once)
        times = [first.train_seconds]
        times += [
            train_grid(static, seeds, hypers, at_once=at_once).train_seconds
            for _ in range(repeats - 1)
        ]
        seconds = float(np.median(times))
        print(
            json.dumps(
                {
                    "devices": jax.device_count(),
                    "runs": r,
                    "run_steps_per_s": r * steps / seconds,
                    "ms_per_group_step": 1e3 * seconds / steps,
                    "compile_s": first.compile_seconds,
                }
            ),
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="1,4,16,64")
    parser.add_argument("--devices", default="1,4")
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--at-once", default="auto", help="auto, all or an integer")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    runs = [int(r) for r in args.runs.split(",")]
    if args.worker:
        at_once = {"auto": "auto", "all": None}.get(args.at_once) or int(args.at_once)
        _worker(runs, args.steps, args.repeats, at_once)
        return
    print(f"{'devices':>7} {'runs':>5} {'run-steps/s':>12} {'ms/step':>9} {'compile s':>10}")
    for devices in args.devices.split(","):
        env = dict(os.environ, JAX_NUM_CPU_DEVICES=devices)
        child = subprocess.run(
            [sys.executable, __file__, "--worker", "--runs", args.runs, "--steps",
             str(args.steps), "--repeats", str(args.repeats), "--at-once", args.at_once],
            env=env, capture_output=True, text=True, check=True,
        )  # fmt: skip
        for line in child.stdout.splitlines():
            r = json.loads(line)
            print(
                f"{r['devices']:>7} {r['runs']:>5} {r['run_steps_per_s']:>12.1f} "
                f"{r['ms_per_group_step']:>9.2f} {r['compile_s']:>10.1f}"
            )


if __name__ == "__main__":
    main()
