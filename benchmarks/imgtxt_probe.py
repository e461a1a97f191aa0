"""One image/text configuration at a few encoding sizes and seeds: the probe behind the CPU
scale's choices in the README ("Image/text experiment").

    python benchmarks/imgtxt_probe.py --sizes 4 --seeds 0 --set train.steps=4500 \
        --set train.warmup_steps=500 [--set n_train=65536] [--out DIR]

``--set`` replaces a field of the CPU scale (``jaxmmcl.imgtxt.experiment.SCALES["cpu"]``):
``train.NAME`` a field of its ``TrainConfig``, a bare name one of the ``Scale`` itself. The
runs train one after another on one device (pin the process to a core with ``taskset`` to run
two probes side by side). Prints, per run, the MLP accuracy of the shape from each modality's
encoding, and the wall time; the full outputs of ``jaxmmcl reproduce imgtxt`` go to ``--out``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import tempfile
import time


def _value(text: str):
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="4", help="encoding sizes, comma-separated")
    parser.add_argument("--seeds", default="0", help="seeds, comma-separated")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--out", default=None, help="output folder (default: a temporary one)")
    args = parser.parse_args()

    from jaxmmcl.imgtxt import experiment

    scale = experiment.SCALES["cpu"]
    train, top = {}, {}
    for item in args.set:
        key, _, text = item.partition("=")
        if key.startswith("train."):
            train[key.removeprefix("train.")] = _value(text)
        else:
            top[key] = _value(text)
    seeds = tuple(int(s) for s in args.seeds.split(","))
    scale = dataclasses.replace(experiment.with_overrides(scale, **train), seeds=seeds, **top)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    out = args.out or tempfile.mkdtemp(prefix="imgtxt-probe-")
    start = time.perf_counter()
    rows = experiment.reproduce(out, scale, encoding_sizes=sizes, show_progress=False)
    for row in rows:
        if row["factor"] == "object_shape" and row["metric"] == "acc_mlp":
            print(
                f"{row['modality']} shape acc_mlp  k={row['encoding_size']}  "
                f"seed {row['seed']}: {row['value']:.3f}"
            )
    print(f"wall {(time.perf_counter() - start) / 60:.1f} min; outputs in {out}")


if __name__ == "__main__":
    main()
