"""Side by side: the eager PyTorch baseline, jaxmmcl run by run, jaxmmcl as one vmapped grid.

    nice -n 10 .venv/bin/python benchmarks/compare.py            # full (~10-20 min, 2 cores)
    nice -n 10 .venv/bin/python benchmarks/compare.py --quick    # smoke run (~3-5 min)

(Times for a quiet 2-core machine; under other jobs' load everything takes 3-7x longer, the
figures drop accordingly, and the ratios between ways carry the load's variation.)

Training workloads (multimodal: f1 != f2, one encoder per modality, p_change 0.75):

* ``cpu``: the CPU scale of ``sweeps/table1.yaml`` (n_c = n_s = n_m = 2, widths
  32-128-128-128-128-32, batch 256, lr 2e-3 cosine) for R runs, R in ``--runs`` (1, 4, 16).
  PyTorch and jaxmmcl-single train the R runs one after another; jaxmmcl-grid trains them as
  one ``jit(vmap(...))`` program on one device; "as the CLI runs it" is what ``jaxmmcl run``
  does on this host: one XLA CPU device per core (``JAX_NUM_CPU_DEVICES``), the runs sharded
  over them and computed one after another on each (``jaxmmcl.distributed.runs_at_once``). Each
  run trains ``--steps`` steps per repeat. PyTorch uses whichever of 1 thread and its default
  (2) is faster at the time: on a loaded machine two threads can be several times slower on
  these small ops.
* ``b1024`` and ``paper``: the paper's model (d = 15, widths 150-750) at batch 1024 and at the
  paper's batch 6144, ``--paper-steps`` steps of one run per timed call (3, quick 1; at least 2
  at batch 1024); the grid way trains ``--paper-grid`` runs at once. Training runs in chunks of
  ``train.log_every`` steps (1,000 at the paper's scale), and each call of a compiled chunk
  allocates its temporary buffers (0.64 GiB at batch 6144, by XLA's memory analysis) once: a
  call of one step pays that for every step, and measured 5-10 % slower per step than calls
  of 4.

Every way runs in its own child process (``--worker``), so its peak resident memory (RSS) is
its own. Figures are medians over ``--repeats`` timed repeats [min-max], after a warm-up step
(PyTorch) or call (JAX); compilation is timed separately and excluded. GFLOP/s counts the
encoders' matrix products only (:func:`jaxmmcl.training.step_flops`, the same count for every
way); the fraction is of the float32 matmul peak measured by
``benchmarks/train_step.matmul_peak`` (XLA, 4096^3) in the same sitting.

Evaluation: scikit-learn's ``GridSearchCV(KernelRidge)`` block by block against jaxmmcl's
``kernel_ridge_r2_grid`` (one encoding, five blocks of five, ``--eval-n`` fit and test
samples), through the functions of ``benchmarks/evaluation.py``; the flop count is each
method's own Cholesky, solve and kernel work in float64, as a fraction of the float64 matmul
peak measured by XLA.

``--breakdown``: the roofline reading of one paper-size step (batch ``--breakdown-batch``):
XLA's cost analysis (flops, bytes) and the time of its parts (sampling, encoders forward +
backward, loss forward + backward, optimiser), the measured memory bandwidth, and PyTorch's
encoder and broadcast-loss parts for comparison.

``--json PATH`` also writes every figure as JSON. Nothing here asserts.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
if HERE not in sys.path:
    sys.path.insert(0, HERE)

PAPER_WIDTHS = (150, 750, 750, 750, 750, 150)
WORKLOADS = {
    "cpu": {
        "n": 2,
        "widths": (32, 128, 128, 128, 128, 32),
        "batch_size": 256,
        "learning_rate": 2e-3,
        "schedule": "cosine",
    },
    "b1024": {
        "n": 5,
        "widths": PAPER_WIDTHS,
        "batch_size": 1024,
        "learning_rate": 1e-4,
        "schedule": "constant",
    },
    "paper": {
        "n": 5,
        "widths": PAPER_WIDTHS,
        "batch_size": 6144,
        "learning_rate": 1e-4,
        "schedule": "constant",
    },
}
P_CHANGE = 0.75
TOTAL_STEPS = 4000  # the schedule's horizon (the cosine decay); the timed steps are fewer


def peak_rss_gib() -> float:
    """Peak resident memory of this process (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def jax_config(workload: str, batch_size: int | None = None) -> dict:
    w = WORKLOADS[workload]
    n = w["n"]
    return {
        "simulation": {"n_c": n, "n_s": n, "n_m": n, "p_change": P_CHANGE},
        "model": {"widths": list(w["widths"])},
        "train": {
            "batch_size": batch_size or w["batch_size"],
            "steps": TOTAL_STEPS,
            "learning_rate": w["learning_rate"],
            "schedule": w["schedule"],
        },
    }


def summarise(values: list[float]) -> dict:
    return {
        "median": float(np.median(values)),
        "min": float(min(values)),
        "max": float(max(values)),
    }


# --------------------------------------------------------------------------- workers


def worker_peak(_spec: dict) -> dict:
    import jax
    import torch
    from train_step import matmul_peak

    out = {"xla_f32": matmul_peak(repeats=3), "devices": str(jax.devices())}
    with jax.enable_x64(True):
        out["xla_f64"] = matmul_peak(2048, repeats=3)
    a = torch.randn(4096, 4096)
    a @ a
    times = []
    for _ in range(3):
        t0 = time.perf_counter()
        a @ a
        times.append(time.perf_counter() - t0)
    out["torch_f32"] = 2 * 4096**3 / np.median(times) / 1e9
    out["torch"] = torch.__version__
    out["jax"] = jax.__version__
    return out


def worker_torch(spec: dict) -> dict:
    import torch
    import torch_baseline as tb

    w = WORKLOADS[spec["workload"]]
    kwargs = dict(
        n_c=w["n"],
        n_s=w["n"],
        n_m=w["n"],
        widths=w["widths"],
        batch_size=w["batch_size"],
        steps=TOTAL_STEPS,
        learning_rate=w["learning_rate"],
        schedule=w["schedule"],
        p_change=P_CHANGE,
    )
    warm = tb.init_run(1000, **kwargs)
    warm.step()  # warm-up (allocator, thread pool)
    if spec["workload"] == "cpu":
        # Small ops: on a busy 2-core machine two threads can be several times slower than one
        # (each parallel op waits for a descheduled thread), so use whichever is faster now.
        best = {}
        for threads in sorted({1, torch.get_num_threads()}, reverse=True):
            torch.set_num_threads(threads)
            warm.step()
            t0 = time.perf_counter()
            for _ in range(5):
                warm.step()
            best[threads] = time.perf_counter() - t0
        torch.set_num_threads(min(best, key=best.get))
    results = []
    for runs in spec["runs"]:
        rates = []
        for _ in range(spec["repeats"]):
            seconds = 0.0
            for r in range(runs):
                run = tb.init_run(r, **kwargs)
                t0 = time.perf_counter()
                for _ in range(spec["steps"]):
                    run.step()
                seconds += time.perf_counter() - t0
            rates.append(runs * spec["steps"] / seconds)
        results.append({"runs": runs, "rate": summarise(rates), "compile_s": 0.0})
    return {"results": results, "threads": torch.get_num_threads()}


def worker_jax_single(spec: dict) -> dict:
    import jax
    import jax.numpy as jnp

    from jaxmmcl.config import run_config_from_dict, stack_hyperparams
    from jaxmmcl.training import init_run, run_chunk

    cfg = run_config_from_dict(jax_config(spec["workload"]))
    static = cfg.static
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([cfg.hyper]))
    init = jax.jit(init_run, static_argnums=2)
    steps = spec["steps"]
    simulation, state = init(jnp.asarray(1000), hyper, static)
    t0 = time.perf_counter()
    chunk = run_chunk.lower(state, simulation, hyper, static, steps).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(chunk(state, simulation, hyper))  # warm-up
    results = []
    for runs in spec["runs"]:
        rates = []
        for _ in range(spec["repeats"]):
            seconds = 0.0
            for r in range(runs):
                simulation, state = init(jnp.asarray(r), hyper, static)
                jax.block_until_ready(state)
                t0 = time.perf_counter()
                state, loss = chunk(state, simulation, hyper)
                jax.block_until_ready(loss)
                seconds += time.perf_counter() - t0
            rates.append(runs * steps / seconds)
        results.append({"runs": runs, "rate": summarise(rates), "compile_s": compile_s})
    return {"results": results}


def worker_jax_grid(spec: dict) -> dict:
    from train_step import measure

    results = []
    for runs in spec["runs"]:
        r = measure(
            jax_config(spec["workload"]),
            runs,
            spec["steps"],
            spec["repeats"],
            all_devices=spec.get("all_devices", False),
        )
        rate = {"median": runs / r["s_per_step"], "min": runs / r["max"], "max": runs / r["min"]}
        results.append({"runs": runs, "rate": rate, "compile_s": r["compile_s"]})
    return {"results": results}


def _eval_flops(n_fit: int, n_test: int, k: int, t: int, refits: int, blocks: int) -> float:
    """Float64 flops of the cross-validated kernel ridge (``blocks`` separate searches).

    Per search (16 candidates x 3 folds): a kernel per (gamma, fold) serving all alphas,
    Cholesky m^3/3 and two triangular solves per candidate and fold (m = 2 n_fit / 3), the
    validation predictions; per refit a Cholesky of n_fit, solves and the test predictions.
    scikit-learn rebuilds the kernel per candidate and solves one block at a time.
    """
    m, v = 2 * n_fit // 3, n_fit // 3
    per_fold = 4 * (2 * m * m * k + 2 * v * m * k) + 4 * (m**3 / 3 + 4 * m * m * t + 2 * v * m * t)
    refit = n_fit**3 / 3 + 2 * n_fit * n_fit * k + 4 * n_fit * n_fit * t + 4 * n_test * n_fit * t
    return blocks * (12 * per_fold + refits * refit)


def worker_eval(spec: dict) -> dict:
    import evaluation as ev

    n, which = spec["n"], spec["which"]
    x, y = ev.make_data(np.random.default_rng(0), 1, n)
    args = (x[:, :n].astype(np.float32), y[:, :n], x[:, n:].astype(np.float32), y[:, n:])
    t = ev.BLOCK_SIZE
    times = []
    if which == "sklearn":
        for _ in range(spec["repeats"]):
            r2, seconds = ev.sklearn_r2(x[0, :n], y[0, :n], x[0, n:], y[0, n:])
            times.append(seconds)
        flops = _eval_flops(n, n, 5, t, 1, len(ev.BLOCKS))
        return {"time": summarise(times), "r2": r2.tolist(), "compile_s": 0.0, "flops": flops}
    _, first = ev.ours(*args)
    for _ in range(spec["repeats"]):
        result, seconds = ev.ours(*args)
        times.append(seconds)
    refits = len({(a, g) for a, g in zip(result.alpha[0], result.gamma[0], strict=True)})
    flops = _eval_flops(n, n, 5, t * len(ev.BLOCKS), refits, 1)
    return {
        "time": summarise(times),
        "r2": result.r2[0].tolist(),
        "compile_s": max(first - float(np.median(times)), 0.0),
        "flops": flops,
    }


def _time(f, *args, repeats: int = 3) -> float:
    import jax

    jax.block_until_ready(f(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(*args))
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def _cost(f, *args) -> dict:
    analysis = f.lower(*args).compile().cost_analysis()
    if isinstance(analysis, list | tuple):
        analysis = analysis[0]
    return {"flops": float(analysis.get("flops", 0.0)), "bytes": float(analysis["bytes accessed"])}


def worker_breakdown(spec: dict) -> dict:
    """Parts of one unvmapped paper-size step: XLA cost analysis and time of each."""
    import jax
    import jax.numpy as jnp

    from jaxmmcl.config import run_config_from_dict, stack_hyperparams
    from jaxmmcl.encoders import encode
    from jaxmmcl.losses import symmetric_info_nce
    from jaxmmcl.simulation import sample_views
    from jaxmmcl.training import init_run, make_optimizer, step_flops, train_step

    batch = spec["batch"]
    cfg = run_config_from_dict(jax_config("paper", batch))
    static = cfg.static
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([cfg.hyper]))
    simulation, state = jax.jit(init_run, static_argnums=2)(jnp.asarray(0), hyper, static)
    params = state.params
    tx = make_optimizer(hyper.learning_rate, static.train)

    sample = jax.jit(lambda key: sample_views(key, simulation, static.simulation, 2 * batch)[0])
    x1, x2 = sample(jax.random.key(1))

    def enc_fwd_bwd(params, x1, x2):
        (h1, h2), vjp = jax.vjp(lambda p: encode(p, (x1, x2), static), params)
        return vjp((h1, h2))[0]

    enc = jax.jit(enc_fwd_bwd)
    h1, h2 = jax.jit(lambda p, a, b: encode(p, (a, b), static))(params, x1, x2)

    def loss_fn(h1, h2):
        return symmetric_info_nce((h1[:batch], h2[:batch]), (h1[batch:], h2[batch:]), 1.0)

    loss = jax.jit(jax.value_and_grad(loss_fn, argnums=(0, 1)))
    grads = enc(params, x1, x2)
    opt = jax.jit(lambda g, s, p: tx.update(g, s, p))
    step = jax.jit(lambda s: train_step(s, simulation, hyper, static))
    big = jnp.ones((64 * 2**20,), jnp.float32)  # 256 MiB
    stream = jax.jit(lambda a: a * 1.0001 + 1.0)
    parts = {
        "sampling (latents + mechanisms)": (sample, (jax.random.key(2),)),
        "encoders forward + backward": (enc, (params, x1, x2)),
        "loss forward + backward": (loss, (h1, h2)),
        "optimiser (clip + Adam)": (opt, (grads, state.opt_state, params)),
        "whole step": (step, (state,)),
    }
    out = {"batch": batch, "step_flops": step_flops(static), "parts": {}}
    for name, (f, args) in parts.items():
        cost = _cost(f, *args)
        cost["seconds"] = _time(f, *args, repeats=spec["repeats"])
        out["parts"][name] = cost
    out["bandwidth_gbs"] = 2 * big.nbytes / _time(stream, big, repeats=5) / 1e9

    import torch
    import torch_baseline as tb

    g1 = tb.make_encoder(15, PAPER_WIDTHS, 5)
    g2 = tb.make_encoder(15, PAPER_WIDTHS, 5)
    tx1, tx2 = torch.from_numpy(np.array(x1)), torch.from_numpy(np.array(x2))

    def torch_time(f):
        f()
        times = []
        for _ in range(spec["repeats"]):
            t0 = time.perf_counter()
            f()
            times.append(time.perf_counter() - t0)
        return float(np.median(times))

    def torch_enc():
        a, b = g1(tx1), g2(tx2)
        torch.autograd.backward((a, b), (a.detach(), b.detach()))

    th1 = torch.from_numpy(np.array(h1)).requires_grad_()
    th2 = torch.from_numpy(np.array(h2)).requires_grad_()

    def torch_loss():
        n = batch
        tb.symmetric_info_nce(th1[:n], th2[:n], th1[n:], th2[n:]).backward()

    out["torch"] = {
        "encoders forward + backward": torch_time(torch_enc),
        "loss forward + backward (broadcast)": torch_time(torch_loss),
    }
    return out


WORKERS = {
    "peak": worker_peak,
    "torch": worker_torch,
    "jax-single": worker_jax_single,
    "jax-grid": worker_jax_grid,
    "eval": worker_eval,
    "breakdown": worker_breakdown,
}


def run_worker(kind: str, spec: dict, env: dict | None = None) -> dict:
    """Runs one worker in a child process (``env`` added to its environment); returns its
    figures (plus its peak RSS)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", kind, "--spec", json.dumps(spec)]
    t0 = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, check=False, env={**os.environ, **(env or {})}
    )
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise RuntimeError(f"worker {kind} {spec} failed with exit status {proc.returncode}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = time.perf_counter() - t0
    print(f"  [{kind} {spec}: {result['wall_s']:.0f} s]", file=sys.stderr, flush=True)
    return result


# --------------------------------------------------------------------------- report


def fmt_range(s: dict, digits: int = 1) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}-{s['max']:.{digits}f}]"


def digits_for(x: float) -> int:
    return 1 if x >= 10 else 2 if x >= 1 else 3


def training_table(rows: list[dict], peak: float) -> str:
    lines = [
        "| workload | R | way | run-steps/s | x PyTorch | GFLOP/s | % of peak | peak RSS "
        "| compile |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        rate = row["rate"]
        d = digits_for(rate["min"])
        gflops = rate["median"] * row["flops"] / 1e9
        compile_s = f"{row['compile_s']:.1f} s" if row["compile_s"] else "-"
        lines.append(
            f"| {row['workload']} | {row['runs']} | {row['way']} | {fmt_range(rate, d)} | "
            f"{row['ratio']:.2f} | {gflops:.1f} | {100 * gflops / peak:.0f} % | "
            f"{row['rss_gib']:.2f} GiB | {compile_s} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="few steps, one repeat")
    parser.add_argument("--repeats", type=int, help="timed repeats (default 3; quick 1)")
    parser.add_argument("--steps", type=int, help="steps per run at the cpu scale (100; 20)")
    parser.add_argument("--runs", default="1,4,16", help="R values at the cpu scale")
    parser.add_argument("--paper-steps", type=int, help="steps per timed call (3; quick 1)")
    parser.add_argument("--paper-repeats", type=int, help="repeats at paper widths (--repeats)")
    parser.add_argument("--paper-grid", type=int, help="runs of the paper-size grid (2; 1)")
    parser.add_argument("--skip-paper", action="store_true", help="no batch-6144 workload")
    parser.add_argument("--eval-n", type=int, help="fit and test samples (2048; 512)")
    parser.add_argument("--skip-eval", action="store_true")
    parser.add_argument("--breakdown", action="store_true", help="roofline parts of a step")
    parser.add_argument("--breakdown-batch", type=int, default=6144)
    parser.add_argument("--json", help="also write all figures to this file")
    parser.add_argument("--worker", choices=sorted(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("--spec", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        result = WORKERS[args.worker](json.loads(args.spec))
        result["rss_gib"] = peak_rss_gib()
        print(json.dumps(result))
        return

    from jaxmmcl.config import run_config_from_dict
    from jaxmmcl.training import step_flops

    repeats = args.repeats or (1 if args.quick else 3)
    steps = args.steps or (20 if args.quick else 100)
    paper_grid = args.paper_grid or (1 if args.quick else 2)
    eval_n = args.eval_n or (512 if args.quick else 2048)
    paper_repeats = args.paper_repeats or repeats
    paper_steps = args.paper_steps or (1 if args.quick else 3)
    runs_list = [int(r) for r in args.runs.split(",")]
    started = time.perf_counter()
    print(f"# compare.py, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}")
    print(f"command: {' '.join([os.path.basename(sys.executable), *sys.argv])}")
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs")
    print(f"load average at start: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")

    peak = run_worker("peak", {})
    print(
        f"jax {peak['jax']} {peak['devices']}, torch {peak['torch']}; float32 matmul peak "
        f"(4096^3): XLA {peak['xla_f32']:.1f} GFLOP/s, torch {peak['torch_f32']:.1f} GFLOP/s; "
        f"float64 (XLA, 2048^3): {peak['xla_f64']:.1f} GFLOP/s"
    )

    # One child process per (workload, way): its peak RSS is that of its largest R.
    cases = [("cpu", runs_list, steps), ("b1024", [1], max(paper_steps, 2))]
    if not args.skip_paper:
        cases.append(("paper", [1], paper_steps))
    rows = []
    for workload, runs, n_steps in cases:
        flops = step_flops(run_config_from_dict(jax_config(workload)).static)
        reps = repeats if workload == "cpu" else paper_repeats
        spec = {"workload": workload, "runs": runs, "steps": n_steps, "repeats": reps}
        grid_runs = [paper_grid] if workload == "paper" else runs
        ways = {
            "torch": run_worker("torch", spec),
            "jax-single": run_worker("jax-single", spec),
            "jax-grid": run_worker("jax-grid", spec | {"runs": grid_runs}),
        }
        if workload == "cpu":
            # What `jaxmmcl run` does on this host: one CPU device per core, runs mapped.
            cores = str(len(os.sched_getaffinity(0)))
            ways["jax-cli"] = run_worker(
                "jax-grid", spec | {"all_devices": True}, env={"JAX_NUM_CPU_DEVICES": cores}
            )
        for i, r in enumerate(runs):
            base = ways["torch"]["results"][i]["rate"]["median"]
            for kind, result in ways.items():
                one = result["results"][i]
                label = {
                    "torch": "PyTorch, run after run",
                    "jax-single": "jaxmmcl, run by run",
                    "jax-grid": f"jaxmmcl, grid of {one['runs']}",
                    "jax-cli": f"jaxmmcl, grid of {one['runs']} as the CLI runs it",
                }[kind]
                rows.append(
                    {
                        "workload": workload,
                        "runs": r,
                        "way": label,
                        "flops": flops,
                        "ratio": one["rate"]["median"] / base,
                        "rss_gib": result["rss_gib"],
                        **one,
                    }
                )
    print()
    print(
        f"## Training ({repeats} repeats at the cpu scale, {paper_repeats} at paper widths; "
        f"{steps} steps per run at the cpu scale, {paper_steps} per timed call at batch 6144, "
        f"{max(paper_steps, 2)} at batch 1024; % of the XLA float32 peak)"
    )
    print()
    print(training_table(rows, peak["xla_f32"]))

    evals = []
    if not args.skip_eval:
        for label, which in (("scikit-learn GridSearchCV", "sklearn"), ("jaxmmcl", "ours")):
            result = run_worker("eval", {"n": eval_n, "which": which, "repeats": repeats})
            evals.append({"way": label, **result})
        base = evals[0]["time"]["median"]
        diff = np.max(np.abs(np.array(evals[0]["r2"]) - np.array(evals[1]["r2"])))
        print()
        print(
            f"## Evaluation: one encoding, 5 blocks x 5, n_fit = n_test = {eval_n} "
            f"({repeats} repeats; max |R^2 difference| {diff:.1e}; % of the XLA float64 peak)"
        )
        print()
        print(
            "| way | seconds | x scikit-learn | GFLOP (own count) | GFLOP/s | % of peak |"
            " peak RSS | compile |"
        )
        print("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for e in evals:
            t = e["time"]
            gflops = e["flops"] / t["median"] / 1e9
            compile_s = f"{e['compile_s']:.1f} s" if e["compile_s"] else "-"
            print(
                f"| {e['way']} | {fmt_range(t, digits_for(t['min']))} | "
                f"{base / t['median']:.1f} | {e['flops'] / 1e9:.1f} | {gflops:.1f} | "
                f"{100 * gflops / peak['xla_f64']:.0f} % | {e['rss_gib']:.2f} GiB | {compile_s} |"
            )

    breakdown = None
    if args.breakdown:
        breakdown = run_worker(
            "breakdown", {"batch": args.breakdown_batch, "repeats": paper_repeats}
        )
        bw = breakdown["bandwidth_gbs"]
        balance = peak["xla_f32"] / bw
        print()
        print(
            f"## Where one step's time goes (batch {breakdown['batch']}, paper widths, one run; "
            f"XLA cost analysis; measured stream bandwidth {bw:.1f} GB/s, so the machine "
            f"balance is {balance:.1f} flop/byte)"
        )
        print()
        print("| part | seconds | GFLOP (XLA) | GB accessed (XLA) | flop/byte | GFLOP/s | GB/s |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for name, p in breakdown["parts"].items():
            s = p["seconds"]
            print(
                f"| {name} | {s:.3f} | {p['flops'] / 1e9:.1f} | {p['bytes'] / 1e9:.2f} | "
                f"{p['flops'] / max(p['bytes'], 1):.1f} | {p['flops'] / s / 1e9:.1f} | "
                f"{p['bytes'] / s / 1e9:.1f} |"
            )
        for name, s in breakdown["torch"].items():
            print(f"| PyTorch: {name} | {s:.3f} | | | | | |")

    print()
    print(
        f"total {time.perf_counter() - started:.0f} s; load average at end: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"peak": peak, "training": rows, "eval": evals, "breakdown": breakdown}, f)


if __name__ == "__main__":
    main()
