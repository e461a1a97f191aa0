"""What ``--threads N`` costs: CPU-scale training throughput with XLA's thread pool fixed.

    python benchmarks/threads.py [--threads 0 2 4 8] [--runs 4] [--repeats 5]

Each setting runs in its own process (XLA reads the pool size once, when its CPU client
starts), as the CLI runs a sweep: one CPU device per core, the runs sharded over them and
trained one after another on each. ``0`` is the default pool (``max(cores, devices)``). The
settings alternate, repeats times over, so that the machine's load spreads over all of them.
Prints run-steps per second (median over the repeats, min-max in brackets); nothing here is
an assertion.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

CHILD = """
import json, sys, time
import jax
sys.path.insert(0, "benchmarks")
from jaxmmcl.distributed import use_cpu_cores
use_cpu_cores()
from train_step import compiled_chunk
config = {"simulation": {"n_c": 2, "n_s": 2, "n_m": 2},
          "model": {"widths": [32, 128, 128, 128, 128, 32]},
          "train": {"batch_size": 256, "steps": 1000, "learning_rate": 2e-3}}
runs, steps = int(sys.argv[1]), 100
compiled, state, simulation, hypers, _, _ = compiled_chunk(config, runs, steps, all_devices=True)
state, loss = compiled(state, simulation, hypers)
jax.block_until_ready(loss)
t0 = time.perf_counter()
state, loss = compiled(state, simulation, hypers)
jax.block_until_ready(loss)
print(json.dumps(runs * steps / (time.perf_counter() - t0)))
"""


def measure(threads: int, runs: int) -> float:
    """Run-steps per second of one 100-step chunk in a fresh process with pool size
    ``threads`` (0: XLA's default)."""
    env = {k: v for k, v in os.environ.items() if k != "NPROC"}
    if threads:
        env["NPROC"] = str(threads)
    command = [sys.executable, "-c", CHILD, str(runs)]
    out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, nargs="+", default=[0, 2, 4, 8])
    parser.add_argument("--runs", type=int, default=4)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    rates: dict[int, list[float]] = {n: [] for n in args.threads}
    for _ in range(args.repeats):
        for n in args.threads:
            rates[n].append(measure(n, args.runs))
    cores = len(os.sched_getaffinity(0))
    print(f"{cores} cores, {args.runs} runs, CPU-scale Table 1 model, batch 256")
    for n, values in rates.items():
        label = "default" if n == 0 else f"--threads {n}"
        print(
            f"{label:<12} {np.median(values):7.1f} run-steps/s "
            f"[{min(values):.1f}-{max(values):.1f}]"
        )


if __name__ == "__main__":
    main()
