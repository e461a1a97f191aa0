"""Training-step throughput: seconds per step, GFLOP/s and the fraction of the matmul peak.

    python benchmarks/train_step.py [--repeats 5] [--skip-paper]

Measures, in one process: the float32 matrix-multiply peak of this machine (a 4096^3 product),
one run at the paper's size (batch 6144, d = 15, widths 150-750), one run at batch 1024, and a
vmapped grid of 8 small runs. Figures are medians over repeats (min-max in brackets); compile
time is reported separately. Nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from jaxmmcl.config import run_config_from_dict, stack_hyperparams
from jaxmmcl.distributed import runs_mesh
from jaxmmcl.grid import setup_grid
from jaxmmcl.precision import matmul_precision
from jaxmmcl.training import step_flops


def matmul_peak(n: int = 4096, repeats: int = 5, precision: str | None = None) -> float:
    """Measured float32 GFLOP/s of an n x n x n matrix product, at XLA's default precision or
    at a ``train.precision`` name (:mod:`jaxmmcl.precision`)."""
    a = jax.random.normal(jax.random.key(0), (n, n))
    if precision is None:
        f = jax.jit(lambda a: a @ a)
    else:

        def product(a):
            with matmul_precision(precision):
                return a @ a

        f = jax.jit(product)
    f(a).block_until_ready()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f(a).block_until_ready()
        times.append(time.perf_counter() - t0)
    return 2 * n**3 / np.median(times) / 1e9


def compiled_chunk(config: dict, runs: int, steps: int, *, all_devices: bool = False):
    """A grid of ``runs`` runs, set up as the CLI does, and its chunk of ``steps`` steps compiled.

    By default the grid is one vmapped program on one device. ``all_devices=True`` is what the
    CLI does: the runs sharded over every device (at most one device per run; padded to a
    multiple of the device count) and computed as :func:`jaxmmcl.distributed.runs_at_once` says
    (one at a time on CPU devices).

    Returns:
      ``(compiled, state, simulation, hypers, static, compile_seconds)``; ``compiled(state,
      simulation, hypers)`` returns the new state and the chunk's mean losses.
    """
    cfg = run_config_from_dict(config)
    programs, simulation, hypers, state = setup_grid(
        cfg.static,
        np.arange(runs),
        stack_hyperparams([cfg.hyper] * runs),
        mesh=runs_mesh() if all_devices else runs_mesh(jax.local_devices()[:1]),
        at_once="auto" if all_devices else None,
    )
    t0 = time.perf_counter()
    compiled = programs.chunk.lower(state, simulation, hypers, steps).compile()
    return compiled, state, simulation, hypers, cfg.static, time.perf_counter() - t0


def measure(
    config: dict,
    runs: int,
    steps: int,
    repeats: int,
    *,
    all_devices: bool = False,
) -> dict:
    """Seconds per step of a grid of ``runs`` runs, ``steps`` steps per timed call (the grid as
    :func:`compiled_chunk` sets it up)."""
    compiled, state, simulation, hypers, static, compile_s = compiled_chunk(
        config, runs, steps, all_devices=all_devices
    )
    state, _ = compiled(state, simulation, hypers)  # warm-up
    jax.block_until_ready(state)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, loss = compiled(state, simulation, hypers)
        jax.block_until_ready(loss)
        times.append((time.perf_counter() - t0) / steps)
    flops = step_flops(static) * runs
    return {
        "s_per_step": float(np.median(times)),
        "min": float(np.min(times)),
        "max": float(np.max(times)),
        "gflops": flops / np.median(times) / 1e9,
        "compile_s": compile_s,
        "gflop_per_step": flops / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--skip-paper", action="store_true", help="skip the batch-6144 case")
    args = parser.parse_args()
    print(f"devices: {jax.devices()}")
    peak = matmul_peak()
    print(f"float32 matmul peak (4096^3): {peak:.1f} GFLOP/s")
    paper = {"simulation": {"n_c": 5, "n_s": 5, "n_m": 5}, "train": {"learning_rate": 1e-4}}
    cases = [
        ("paper size, 1 run, batch 6144", paper | {"train": {"batch_size": 6144}}, 1, 2),
        ("paper widths, 1 run, batch 1024", paper | {"train": {"batch_size": 1024}}, 1, 5),
        (
            "small, 8 vmapped runs, batch 512",
            {
                "simulation": {"n_c": 2, "n_s": 2, "n_m": 2},
                "model": {"widths": [60, 300, 300, 300, 300, 60]},
                "train": {"batch_size": 512},
            },
            8,
            20,
        ),
    ]
    if args.skip_paper:
        cases = cases[1:]
    for name, config, runs, steps in cases:
        r = measure(config, runs, steps, args.repeats)
        print(
            f"{name}: {r['s_per_step']:.3f} s/step [{r['min']:.3f}-{r['max']:.3f}], "
            f"{r['gflop_per_step']:.1f} GFLOP/step, {r['gflops']:.1f} GFLOP/s "
            f"({100 * r['gflops'] / peak:.0f} % of peak), compile {r['compile_s']:.1f} s"
        )


if __name__ == "__main__":
    main()
