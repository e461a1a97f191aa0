"""GPU measurements for benchmarks/RESULTS.md, in one short run (called by benchmarks/gpu.sh).

    python benchmarks/gpu_bench.py                 # on the accelerator (< 5 minutes)
    python benchmarks/gpu_bench.py --tiny          # tiny sizes: checks that it runs (CPU)

Measures on the default JAX device:

* the dense matmul peak it reaches itself at every ``train.precision`` the device offers
  (``float32``: full float32, the default; ``tf32x3``: three TF32 passes; ``tf32``: one, XLA's
  default for float32 on NVIDIA; ``bfloat16``), and float64 (the kernel ridge's), each an n^3
  product (n = 8192);
* the paper-size training step (batch 6144, d = 15, widths 150-750) for grids of 1, 8 and 30
  vmapped runs (``--runs``) at every offered precision (``--precisions``): s/step,
  run-steps/s, GFLOP/s and the fraction of that precision's peak, compile time;
* what each rate means for Table 1 at the paper's size (30 runs x 300,000 steps);
* the CPU scale's multimodal Table 1 group (15 runs, d = 6, widths 32-128, batch 256) as one
  vmapped program, in run-steps/s (the 2-core CPU: 167);
* the paper-size evaluation: cross-validated kernel ridge at n_fit = n_test = 20,480 for
  ``--eval-encodings`` encodings (1 by default; 2 is one model's h1 and h2) x 5 blocks of 5.

Prints a Markdown block ready to paste into RESULTS.md and rewrites ``--out`` with it after
every part, so a run cut short keeps what it measured. A part that fails prints its error and
the others still run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
import traceback

import jax
import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from evaluation import make_data, ours  # noqa: E402
from train_step import matmul_peak, measure  # noqa: E402

from jaxmmcl.config import PRECISIONS, run_config_from_dict  # noqa: E402
from jaxmmcl.precision import GPU_ONLY  # noqa: E402
from jaxmmcl.training import step_flops  # noqa: E402

TABLE1_RUNS, TABLE1_STEPS = 30, 300_000
# Table 1's CPU scale (sweeps/table1.yaml), multimodal mechanism.
CPU_SCALE_MULTIMODAL = {
    "simulation": {"n_c": 2, "n_s": 2, "n_m": 2, "shared_mixing": False},
    "model": {"widths": [32, 128, 128, 128, 128, 32]},
    "train": {"batch_size": 256, "learning_rate": 2e-3, "schedule": "cosine", "steps": 6000},
}


def peak_memory_gib() -> float | None:
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return None if peak is None else peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tiny", action="store_true", help="tiny sizes, to check it runs")
    parser.add_argument("--runs", default=None, help="grid sizes (default 1,8,30; tiny 1,2)")
    parser.add_argument("--steps", type=int, default=None, help="steps per timed call (5)")
    parser.add_argument(
        "--precisions",
        default=None,
        help=f"train.precision values (default: all offered of {PRECISIONS})",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--eval-encodings", type=int, default=1)
    parser.add_argument("--eval-n", type=int, default=None, help="fit = test samples (20480)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--out", default=None, help="also write the Markdown block here")
    args = parser.parse_args()

    tiny = args.tiny
    runs_list = [int(r) for r in (args.runs or ("1,2" if tiny else "1,8,30")).split(",")]
    steps = args.steps or (2 if tiny else 5)
    gpu = jax.default_backend() == "gpu"
    offered = [p for p in PRECISIONS if gpu or p not in GPU_ONLY]
    precisions = args.precisions.split(",") if args.precisions else offered
    n_mm = 256 if tiny else 8192
    eval_n = args.eval_n or (256 if tiny else 20_480)
    if tiny:
        config = {
            "simulation": {"n_c": 2, "n_s": 2, "n_m": 2},
            "model": {"widths": [16, 32, 16]},
            "train": {"batch_size": 64, "learning_rate": 1e-4},
        }
        label = "tiny (d = 6, widths 16-32-16, batch 64)"
    else:
        config = {
            "simulation": {"n_c": 5, "n_s": 5, "n_m": 5},
            "train": {"batch_size": 6144, "learning_rate": 1e-4},
        }
        label = "paper size (d = 15, widths 150-750, batch 6144)"
    lines: list[str] = []

    def emit(line: str = "") -> None:
        print(line, flush=True)
        lines.append(line)

    def save() -> None:
        if args.out:
            with open(args.out, "w") as f:
                f.write("\n".join(lines) + "\n")

    def part(name: str, measure_part) -> None:
        """Runs one part; a failure is reported in the block and the next part still runs."""
        try:
            measure_part()
        except Exception as error:  # the other parts are worth keeping
            traceback.print_exc()
            emit(f"{name}: FAILED with {type(error).__name__}: {error}".splitlines()[0])
            emit()
        save()

    started = time.perf_counter()
    device = jax.devices()[0]
    emit(f"### GPU ({time.strftime('%Y-%m-%d', time.gmtime())}): {device.device_kind}")
    emit()
    emit(
        f"`python benchmarks/gpu_bench.py {' '.join(sys.argv[1:])}`; jax {jax.__version__}, "
        f"backend {jax.default_backend()}, {len(jax.devices())} device(s), host "
        f"{platform.node() or platform.machine()}, {os.cpu_count()} CPUs."
    )
    emit()
    peaks = dict.fromkeys(precisions, float("nan"))

    def matmul_peaks() -> None:
        emit(f"Dense matmul peak measured here ({n_mm}^3, median of 5):")
        emit()
        emit("| precision | GFLOP/s |")
        emit("| --- | --- |")
        for name in precisions:
            peaks[name] = matmul_peak(n_mm, precision=name)
            emit(f"| float32 products, train.precision {name} | {peaks[name]:.0f} |")
        peaks["default"] = matmul_peak(n_mm)
        emit(f"| float32 products, XLA's default precision | {peaks['default']:.0f} |")
        with jax.enable_x64(True):
            peak_f64 = matmul_peak(n_mm, repeats=3)
        emit(f"| float64 | {peak_f64:.0f} |")
        emit()

    def training_step() -> None:
        flops = step_flops(run_config_from_dict(config).static)
        emit(
            f"Training step, {label}, {flops / 1e9:.1f} GFLOP per run-step; vmapped grid of R "
            f"runs, {steps} steps per timed call, median of {args.repeats} [min-max]; % of the "
            "peak of the step's own precision:"
        )
        emit()
        emit(
            "| precision | R | s/step | run-steps/s | GFLOP/s | % of its peak | compile | "
            "peak memory |"
        )
        emit("| --- | --- | --- | --- | --- | --- | --- | --- |")
        table1 = {}
        for name in precisions:
            with_precision = config | {"train": config["train"] | {"precision": name}}
            for runs in runs_list:
                r = measure(with_precision, runs, steps, args.repeats)
                if runs == TABLE1_RUNS:
                    table1[name] = r["s_per_step"]
                mem = peak_memory_gib()
                emit(
                    f"| {name} | {runs} | {r['s_per_step']:.4f} [{r['min']:.4f}-{r['max']:.4f}] "
                    f"| {runs / r['s_per_step']:.1f} | {r['gflops']:.0f} | "
                    f"{100 * r['gflops'] / peaks[name]:.0f} % | {r['compile_s']:.1f} s | "
                    f"{'-' if mem is None else f'{mem:.1f} GiB'} |"
                )
                save()
        emit()
        for name, s_per_step in table1.items():
            hours = TABLE1_STEPS * s_per_step / 3600
            emit(
                f"- {name}: the paper's whole Table 1 ({TABLE1_RUNS} runs x {TABLE1_STEPS:,} "
                f"steps, one vmapped grid) trains in **{hours:.1f} h** on this device (an upper "
                "bound: the 15 multi-view runs are smaller, d = 10 and one shared encoder)."
            )
        emit()

    def cpu_scale_group() -> None:
        runs, group_steps = (2, 5) if tiny else (15, 250)
        r = measure(CPU_SCALE_MULTIMODAL, runs, group_steps, args.repeats)
        emit(
            f"Table 1's CPU scale, the multimodal group ({runs} runs, d = 6, widths 32-128, "
            f"batch 256) as one vmapped program, {group_steps} steps per timed call: "
            f"**{runs / r['s_per_step']:.0f} run-steps/s** ({r['s_per_step'] * 1e3:.2f} ms per "
            f"grid step [{r['min'] * 1e3:.2f}-{r['max'] * 1e3:.2f}], compile "
            f"{r['compile_s']:.1f} s); the 2-core CPU: 167 run-steps/s (RESULTS.md)."
        )
        emit()

    def evaluation() -> None:
        x, y = make_data(np.random.default_rng(0), args.eval_encodings, eval_n)
        n = eval_n
        data = (x[:, :n].astype(np.float32), y[:, :n], x[:, n:].astype(np.float32), y[:, n:])
        _, first = ours(*data)
        result, seconds = ours(*data)
        mem = peak_memory_gib()
        emit(
            f"Evaluation: kernel ridge (16 candidates x 3 folds, float64) for "
            f"{args.eval_encodings} encoding(s) x 5 blocks of 5, n_fit = n_test = {n}: "
            f"**{seconds:.1f} s** after compile (first call {first:.1f} s), peak device memory "
            f"{'-' if mem is None else f'{mem:.1f} GiB'}; R^2 of the first encoding: "
            f"{np.array2string(result.r2[0], precision=4)}."
        )
        emit()

    part("Matmul peaks", matmul_peaks)
    part("Training step", training_step)
    part("CPU-scale group", cpu_scale_group)
    if not args.skip_eval:
        part("Evaluation", evaluation)
    emit(f"(whole measurement {time.perf_counter() - started:.0f} s)")
    save()


if __name__ == "__main__":
    main()
