"""The image/text experiment's input pipeline against its training step, on 1 and N devices.

    python benchmarks/imgtxt_step.py [--scale cpu] [--devices 1,2] [--steps 60] [--repeats 3]

For each device count D a child process (``JAX_NUM_CPU_DEVICES`` must be set before jax is
imported) builds the scale's model on a split of random uint8 images held in device memory and
prints, as medians over repeats with min-max:

* ``draw_batches_per_s``: batches drawn from device memory (the gather and the conversion to
  float that the training step does first), alone;
* ``run_steps_per_s``: training steps of D single-run groups advanced together with
  :func:`jaxmmcl.imgtxt.train.train_groups` (one group per device, as ``jaxmmcl reproduce
  imgtxt`` trains its encoding sizes), counted over all groups, and their ratio to the
  first device count's figure of the same sitting.

An input pipeline that draws many more batches per second than the step consumes is not the
bottleneck.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time


def _median(values: list[float]) -> dict:
    values = sorted(values)
    return {"median": values[len(values) // 2], "min": values[0], "max": values[-1]}


def _worker(scale_name: str, steps: int, repeats: int) -> None:
    import dataclasses

    import jax
    import numpy as np

    from jaxmmcl.imgtxt.text import full_vocabulary
    from jaxmmcl.imgtxt.train import array_source, train_groups
    from jaxmmcl.sweeps import load_sweep

    scale = load_sweep("imgtxt", scale=scale_name).runs[0].config.static
    vocab = full_vocabulary()
    rng = np.random.default_rng(0)
    n = 4096
    size = scale.data.image_size
    images = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    tokens = rng.integers(0, vocab.size, (n, vocab.max_length)).astype(np.int32)
    source = array_source(images, tokens, np.full(3, 0.5), np.full(3, 0.25))
    model = scale.model.encoders(vocab.size)
    batch = scale.train.batch_size
    draw = jax.jit(lambda arrays, key: source.draw(arrays, key, 0, batch))
    jax.block_until_ready(draw(source.arrays, jax.random.key(0)))
    draws = []
    for r in range(repeats):
        start = time.perf_counter()
        for i in range(200):
            out = draw(source.arrays, jax.random.key(1000 * r + i))
        jax.block_until_ready(out)
        draws.append(200 / (time.perf_counter() - start))

    devices = jax.devices()
    groups = [(np.array([g]), np.array([6])) for g in range(len(devices))]
    timed = dataclasses.replace(scale.train, steps=steps, log_every=steps)
    train_groups(groups, model, timed, source)  # compiles the programs (keyed by the config)
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        train_groups(groups, model, timed, source)
        rates.append(len(groups) * steps / (time.perf_counter() - start))
    print(
        json.dumps(
            {
                "devices": len(devices),
                "batch_size": batch,
                "draw_batches_per_s": _median(draws),
                "run_steps_per_s": _median(rates),
            }
        ),
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", default="cpu", help="a scale of sweeps/imgtxt.yaml")
    parser.add_argument("--devices", default="1,2", help="comma-separated device counts")
    parser.add_argument("--steps", type=int, default=60, help="timed steps per repeat")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        _worker(args.scale, args.steps, args.repeats)
        return
    base = None
    for count in [int(d) for d in args.devices.split(",")]:
        env = dict(os.environ, JAX_NUM_CPU_DEVICES=str(count))
        command = [sys.executable, __file__, "--worker", "--scale", args.scale]
        command += ["--steps", str(args.steps), "--repeats", str(args.repeats)]
        out = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        rate = result["run_steps_per_s"]["median"]
        base = base or rate
        draw, step = result["draw_batches_per_s"], result["run_steps_per_s"]
        print(
            f"devices {count}: training {step['median']:.1f} run-steps/s "
            f"[{step['min']:.1f}-{step['max']:.1f}] ({rate / base:.2f}x one device); "
            f"drawing batches of {result['batch_size']}: {draw['median']:.0f} batches/s "
            f"[{draw['min']:.0f}-{draw['max']:.0f}]"
        )


if __name__ == "__main__":
    main()
