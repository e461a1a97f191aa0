"""The ``jaxmmcl`` command line.

    jaxmmcl run SWEEP.yaml --out DIR [--scale NAME] [--set key=value ...] [options]
    jaxmmcl reproduce NAME [--out DIR] [--scale cpu|paper] [--set key=value ...] [options]
    jaxmmcl reproduce --list
    jaxmmcl report DIR
    jaxmmcl export DIR --to tensorboard|wandb
    jaxmmcl reproduce imgtxt [--data DIR] [--fresh-batches] [options of reproduce]
    jaxmmcl reproduce imgtxt3 [--fresh-batches] [options of reproduce]
    jaxmmcl data generate DIR --n-train N --n-val N --n-test N [--size S] [--seed K]

(``reproduce imgtxt`` and ``imgtxt3`` are sweeps of the image/text experiment,
``sweeps/imgtxt.yaml`` and ``sweeps/imgtxt3.yaml``; ``--data DIR`` and ``--fresh-batches`` stand
for ``--set data.path=DIR`` and ``--set data.fresh_batches=true``. ``data generate`` lives in
:mod:`jaxmmcl.imgtxt.cli`.)

Options of run and reproduce: ``--dry-run`` (print the plan, run nothing), ``--resume``
(continue an interrupted sweep in DIR), ``--force`` (start DIR over), ``--checkpoint-every
SECONDS``, ``--max-runs N`` (runs per compiled program), ``--threads N`` (XLA's CPU thread pool;
results independent of the device count), ``--distributed [HOST:PORT]`` (join a multi-process
job; see :mod:`jaxmmcl.distributed`), ``--log tensorboard|wandb`` (follow the runs live; see
:mod:`jaxmmcl.tracking`), ``--quiet``.

Bad input exits with status 2 and one line naming the offending key and value.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from jaxmmcl.config import ConfigError
from jaxmmcl.imgtxt.cli import add_data_parser, run_data
from jaxmmcl.results import read_yaml
from jaxmmcl.sweeps import SWEEPS_DIR, available_sweeps
from jaxmmcl.tracking import TRACKERS, export_sweep


def experiment_summaries() -> dict[str, str]:
    """Every experiment of ``jaxmmcl reproduce`` -> its one-line summary."""
    return {
        name: str(read_yaml((SWEEPS_DIR / f"{name}.yaml").read_text()).get("summary") or "")
        for name in available_sweeps()
    }


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxmmcl",
        description="Vectorised identifiability studies of multimodal contrastive learning.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def common(p):
        p.add_argument("--scale", help="a named scale of the sweep (e.g. cpu, paper)")
        p.add_argument(
            "--set",
            dest="overrides",
            action="append",
            default=[],
            metavar="KEY=VALUE",
            help="override a config key (dotted, e.g. train.steps=1000); repeatable",
        )
        p.add_argument("--quiet", action="store_true", help="no progress display")
        p.add_argument(
            "--log",
            action="append",
            default=[],
            choices=sorted(TRACKERS),
            help="follow every run live in TensorBoard (DIR/tensorboard/) or Weights & Biases "
            "(grouped by sweep; WANDB_MODE=offline works); repeatable",
        )
        p.add_argument(
            "--dry-run",
            action="store_true",
            help="validate the sweep and print its programs, runs, memory and FLOPs; run nothing",
        )
        p.add_argument("--resume", action="store_true", help="continue the sweep in --out")
        p.add_argument("--force", action="store_true", help="discard what --out holds")
        p.add_argument(
            "--checkpoint-every",
            type=float,
            default=300.0,
            metavar="SECONDS",
            help="seconds between training checkpoints (0: after every logged chunk)",
        )
        p.add_argument(
            "--max-runs", type=int, metavar="N", help="at most N runs per compiled program"
        )
        p.add_argument(
            "--threads",
            type=int,
            metavar="N",
            help="size XLA's CPU thread pool to N: results then equal for every device count up "
            "to N and every core count (default: the cores; more threads than cores run slower)",
        )
        p.add_argument(
            "--distributed",
            nargs="?",
            const="auto",
            metavar="HOST:PORT",
            help="join a multi-process job (coordinator address, or JAX's cluster detection); "
            "also enabled by $JAXMMCL_COORDINATOR",
        )

    run = sub.add_parser("run", help="run a sweep file")
    run.add_argument("sweep", help="path to a sweep YAML file")
    run.add_argument("--out", required=True, help="output folder")
    common(run)

    reproduce = sub.add_parser("reproduce", help="run one of the paper's experiments")
    reproduce.add_argument("name", nargs="?", help=f"one of: {', '.join(available_sweeps())}")
    reproduce.add_argument(
        "--list", action="store_true", help="name every experiment with its summary; run nothing"
    )
    reproduce.add_argument("--out", help="output folder (default: runs/NAME-SCALE)")
    common(reproduce)
    reproduce.add_argument(
        "--data",
        help="imgtxt only: a Multimodal3DIdent root (default: rendered in memory; as "
        "--set data.path=DIR)",
    )
    reproduce.add_argument(
        "--fresh-batches",
        action="store_true",
        help="imgtxt, imgtxt3: render a fresh batch every step instead of a fixed training split "
        "(as --set data.fresh_batches=true)",
    )

    report = sub.add_parser("report", help="rewrite the tables and figures of a sweep folder")
    report.add_argument("dir", help="a folder written by run or reproduce")
    export = sub.add_parser(
        "export", help="send a finished sweep to TensorBoard or W&B, as --log would have"
    )
    export.add_argument("dir", help="a folder written by run or reproduce")
    export.add_argument(
        "--to", action="append", required=True, choices=sorted(TRACKERS), help="repeatable"
    )
    add_data_parser(sub)
    return parser


def _run(sweep_path: Path, out: Path, args: argparse.Namespace) -> None:
    from jaxmmcl.distributed import initialize, is_writer, runs_mesh
    from jaxmmcl.runner import describe_plan, plan_sweep, run_sweep
    from jaxmmcl.sweeps import load_sweep, parse_overrides

    if args.max_runs is not None and args.max_runs < 1:
        raise ConfigError(f"--max-runs: expected an integer >= 1, got {args.max_runs}")
    if args.checkpoint_every < 0:
        raise ConfigError(f"--checkpoint-every: expected seconds >= 0, got {args.checkpoint_every}")
    sweep = load_sweep(sweep_path, scale=args.scale, overrides=parse_overrides(args.overrides))
    initialize(args.distributed)
    if args.dry_run:
        mesh = runs_mesh()
        print(describe_plan(sweep, plan_sweep(sweep, mesh, args.max_runs), mesh))
        return
    run_sweep(
        sweep,
        out,
        show_progress=not args.quiet,
        resume=args.resume,
        force=args.force,
        checkpoint_every=args.checkpoint_every,
        max_runs=args.max_runs,
        log=args.log,
    )
    if is_writer():
        report = out / f"{sweep.name}.md"
        print(report.read_text())
        print(f"results: {out / 'results.csv'}\nreport: {report}")


def _report(folder: Path) -> None:
    from jaxmmcl.reports import write_report

    written = write_report(folder)
    print("\n".join(str(path) for path in written))


def _enable_compilation_cache() -> None:
    # Sweeps recompile the same group programs run after run; XLA's persistent cache turns the
    # second compilation of a program into a disk read.
    import jax

    cache = os.environ.get("JAXMMCL_CACHE_DIR", str(Path.home() / ".cache" / "jaxmmcl" / "xla"))
    if not cache:  # JAXMMCL_CACHE_DIR= (empty) turns the cache off
        return
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 1.0)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``jaxmmcl`` console script; returns the exit status."""
    from jaxmmcl import interrupts
    from jaxmmcl.distributed import use_cpu_cores

    args = _parser().parse_args(argv)
    _enable_compilation_cache()
    use_cpu_cores()  # before anything initialises JAX's backends
    try:
        with interrupts.handled():
            status = _dispatch(args)
            interrupts.check()  # a signal swallowed after the last check
            return status
    except interrupts.Interrupted as err:
        resume = " (resume it with --resume)" if args.command in ("run", "reproduce") else ""
        print(f"\njaxmmcl: stopped by {err}{resume}", file=sys.stderr)
        return err.exit_status


def _dispatch(args: argparse.Namespace) -> int:
    try:
        if getattr(args, "threads", None) is not None:
            from jaxmmcl.distributed import fix_intra_op_threads

            fix_intra_op_threads(args.threads)
        if args.command == "run":
            _run(Path(args.sweep), Path(args.out), args)
        elif args.command == "data":
            run_data(args)
        elif args.command == "reproduce" and args.list:
            for name, summary in experiment_summaries().items():
                print(f"{name:<15} {summary}")
        elif args.command == "reproduce" and args.name is None:
            raise ConfigError(
                "reproduce: name an experiment or give --list "
                f"(available: {', '.join(available_sweeps())})"
            )
        elif args.command == "reproduce":
            if args.data is not None and args.name != "imgtxt":
                raise ConfigError(f"--data: only for reproduce imgtxt, not {args.name!r}")
            if args.fresh_batches and args.name not in ("imgtxt", "imgtxt3"):
                raise ConfigError(
                    f"--fresh-batches: only for reproduce imgtxt and imgtxt3, not {args.name!r}"
                )
            if args.data is not None:
                if not Path(args.data).is_dir():
                    raise ConfigError(f"--data: no such folder {args.data!r}")
                args.overrides.append(f"data.path={args.data}")
            if args.fresh_batches:
                args.overrides.append("data.fresh_batches=true")
            if args.name not in available_sweeps():
                raise ConfigError(
                    f"reproduce: unknown experiment {args.name!r} "
                    f"(available: {', '.join(available_sweeps())})"
                )
            scale = args.scale or "cpu"
            args.scale = scale
            out = Path(args.out or f"runs/{args.name}-{scale}")
            _run(SWEEPS_DIR / f"{args.name}.yaml", out, args)
        elif args.command == "export":
            runs = export_sweep(Path(args.dir), args.to)
            print(f"exported {runs} runs of {args.dir} to {', '.join(dict.fromkeys(args.to))}")
        else:
            _report(Path(args.dir))
    except ConfigError as err:
        print(f"jaxmmcl: error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        # A full disk or a folder that went away: what the system said, on one line.
        where = f": {err.filename}" if err.filename else ""
        print(f"jaxmmcl: error: {err.strerror or err}{where}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
