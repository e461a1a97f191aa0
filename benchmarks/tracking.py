"""What live tracking (``--log``) costs: the seconds spent in the trackers' calls over a sweep's
wall time.

    python benchmarks/tracking.py [NAME] [--log tensorboard wandb] [--set KEY=VALUE ...]

Runs ``jaxmmcl reproduce NAME`` (default ``table1``, its CPU scale) once with every tracker
named by ``--log`` (W&B offline: ``WANDB_MODE=offline``), every tracker method wrapped in a
timer, and prints each tracker's seconds (opening, losses, final values, closing) and their
share of the sweep's wall time. Timing the calls themselves is exact where comparing two whole
sweeps would drown a 1 % cost in the machine's noise; what the timers cannot see (W&B's service
process, which works beside the sweep) is left to the ``wall`` column of a side-by-side run
without ``--log`` (``--baseline``). Nothing here is an assertion.
"""

from __future__ import annotations

import argparse
import collections
import contextlib
import functools
import io
import os
import sys
import tempfile
import time

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

from jaxmmcl import tracking
from jaxmmcl.cli import main

SECONDS: dict[tuple[str, str], float] = collections.defaultdict(float)


def _timed(name: str, method: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t0 = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            SECONDS[name, method] += time.perf_counter() - t0

    return wrapper


def _sweep(name: str, log: list[str], sets: list[str]) -> float:
    flags = [arg for s in sets for arg in ("--set", s)]
    flags += [arg for tracker in log for arg in ("--log", tracker)]
    with tempfile.TemporaryDirectory() as out, contextlib.redirect_stdout(io.StringIO()):
        t0 = time.perf_counter()
        status = main(["reproduce", name, "--out", out, "--quiet", *flags])
        wall = time.perf_counter() - t0
    if status != 0:
        sys.exit(f"jaxmmcl reproduce {name} exited with status {status}")
    return wall


def run() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("name", nargs="?", default="table1")
    parser.add_argument("--log", nargs="+", default=["tensorboard", "wandb"])
    parser.add_argument("--set", dest="sets", action="append", default=[])
    parser.add_argument("--baseline", action="store_true", help="also run without --log")
    args = parser.parse_args()
    for name in args.log:
        cls = tracking.TRACKERS[name]
        for method in ("__init__", "start", "log_losses", "finish", "close"):
            setattr(cls, method, _timed(name, method, getattr(cls, method)))
    wall = _sweep(args.name, args.log, args.sets)
    print(f"jaxmmcl reproduce {args.name} {' '.join(args.sets)} --log {' '.join(args.log)}")
    print(f"wall time: {wall:.1f} s")
    print(f"{'tracker':<12} {'open':>8} {'start':>8} {'losses':>8} {'finish':>8} {'close':>8}"
          f" {'total':>8} {'share':>7}")  # fmt: skip
    for name in args.log:
        parts = [SECONDS[name, m] for m in ("__init__", "start", "log_losses", "finish", "close")]
        cells = " ".join(f"{s:>8.2f}" for s in parts)
        print(f"{name:<12} {cells} {sum(parts):>8.2f} {sum(parts) / wall:>7.2%}")
    if args.baseline:
        plain = _sweep(args.name, [], args.sets)
        print(f"without --log: {plain:.1f} s (with: {wall:.1f} s, ratio {wall / plain:.3f})")


if __name__ == "__main__":
    run()
