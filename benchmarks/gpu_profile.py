"""Where a paper-size training step spends its device time: a JAX profile, summarised.

    python benchmarks/gpu_profile.py [--runs 1] [--steps 3] [--out DIR]

Compiles the paper-size training chunk (batch 6144, d = 15, widths 150-750) for a vmapped grid
of ``--runs`` runs, warms it up, then records one call of ``--steps`` steps with
``jax.profiler.trace`` and prints, from the Perfetto trace it writes, the device time per kernel
class (matrix products, fusions, copies, ...) and the kernels that take the most time. The
trace (``perfetto_trace.json.gz``) is copied to ``--out`` for a closer look.
"""

from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import shutil
import sys
import tempfile
import time

import jax

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

from train_step import compiled_chunk  # noqa: E402

from jaxmmcl.training import step_flops  # noqa: E402

PAPER = {
    "simulation": {"n_c": 5, "n_s": 5, "n_m": 5},
    "train": {"batch_size": 6144, "learning_rate": 1e-4},
}


def kernel_class(name: str) -> str:
    """A coarse class for a device kernel's name (cuBLAS/cuDNN, XLA fusion, copy, ...)."""
    lower = name.lower()
    if any(key in lower for key in ("gemm", "cutlass", "sm90_xmma", "xmma", "cublas", "dot")):
        return "matrix product"
    if "memcpy" in lower or "memset" in lower or "copy" in lower:
        return "copy / memset"
    if "reduce" in lower or "reduction" in lower:
        return "reduction fusion"
    if "fusion" in lower or "loop_" in lower or "input_" in lower:
        return "elementwise fusion"
    if "rng" in lower or "threefry" in lower or "philox" in lower:
        return "random numbers"
    return "other"


def summarise(trace_path: str, steps: int, top: int) -> None:
    with gzip.open(trace_path, "rt") as f:
        events = json.load(f)["traceEvents"]
    process = {
        e["pid"]: e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "process_name"
    }
    device_pids = {pid for pid, name in process.items() if "gpu" in name.lower()}
    if not device_pids:
        device_pids = set(process)  # a CPU run: everything is host work
    thread = {
        (e["pid"], e["tid"]): e.get("args", {}).get("name", "")
        for e in events
        if e.get("ph") == "M" and e.get("name") == "thread_name"
    }
    # A GPU's lines: one per stream with its kernels, plus "XLA Ops" / "XLA Modules" lines
    # that cover the same time again; count the streams only.
    lines = {key for key in thread if key[0] in device_pids}
    streams = {key for key in lines if thread[key].lower().startswith("stream")}
    lines = streams or lines
    busy: collections.Counter = collections.Counter()
    by_name: collections.Counter = collections.Counter()
    counts: collections.Counter = collections.Counter()
    for e in events:
        key = (e.get("pid"), e.get("tid"))
        if e.get("ph") == "X" and "dur" in e and (key in lines or not thread):
            by_name[e["name"]] += e["dur"]
            counts[e["name"]] += 1
            busy[thread.get(key, "?")] += e["dur"]
    total = sum(by_name.values())
    print(f"device processes: {sorted(process[p] for p in device_pids)}")
    print("busy time per line:", {name: f"{us / 1e3:.2f} ms" for name, us in busy.items()})
    print(f"device time recorded: {total / 1e3:.2f} ms over {steps} steps")
    by_class: collections.Counter = collections.Counter()
    for name, us in by_name.items():
        by_class[kernel_class(name)] += us
    print("\n| kernel class | ms per step | share |\n| --- | --- | --- |")
    for cls, us in by_class.most_common():
        print(f"| {cls} | {us / 1e3 / steps:.3f} | {100 * us / total:.1f} % |")
    print(f"\n| kernel (top {top}) | calls per step | ms per step | share |")
    print("| --- | --- | --- | --- |")
    for name, us in by_name.most_common(top):
        short = name if len(name) <= 90 else name[:87] + "..."
        print(
            f"| `{short}` | {counts[name] / steps:.0f} | {us / 1e3 / steps:.3f} | "
            f"{100 * us / total:.1f} % |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=6144)
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("--out", default=None, help="folder to copy the trace to")
    args = parser.parse_args()

    config = {**PAPER, "train": {**PAPER["train"], "batch_size": args.batch_size}}
    compiled, state, simulation, hypers, static, _ = compiled_chunk(config, args.runs, args.steps)
    for _ in range(2):  # warm-up
        state, loss = compiled(state, simulation, hypers)
        jax.block_until_ready(loss)
    t0 = time.perf_counter()
    state, loss = compiled(state, simulation, hypers)
    jax.block_until_ready(loss)
    seconds = (time.perf_counter() - t0) / args.steps
    flops = step_flops(static) * args.runs
    print(
        f"{args.runs} run(s), batch {args.batch_size}: {seconds * 1e3:.2f} ms/step untraced, "
        f"{flops / seconds / 1e12:.1f} TFLOP/s of encoder products ({jax.devices()[0]})"
    )
    with tempfile.TemporaryDirectory() as log_dir:
        with jax.profiler.trace(log_dir, create_perfetto_trace=True):
            state, loss = compiled(state, simulation, hypers)
            jax.block_until_ready(loss)
        traces = glob.glob(os.path.join(log_dir, "**", "perfetto_trace.json.gz"), recursive=True)
        if not traces:
            raise SystemExit(f"no perfetto_trace.json.gz under {log_dir}")
        summarise(traces[0], args.steps, args.top)
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            name = f"trace_r{args.runs}_b{args.batch_size}.json.gz"
            shutil.copy(traces[0], os.path.join(args.out, name))


if __name__ == "__main__":
    main()
