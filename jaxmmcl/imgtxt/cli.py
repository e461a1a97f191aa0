"""The image/text commands of the ``jaxmmcl`` command line.

    jaxmmcl data generate DIR --n-train N --n-val N --n-test N [--size S] [--seed K]
        [--independent-hue] [--quiet]
    jaxmmcl reproduce imgtxt3 [--scale cpu|paper] [--out DIR] [--fresh-batches] [--quiet]

:func:`add_data_parser` registers ``data``; :func:`run_data` and :func:`run_reproduce` carry
the commands out. Bad input raises :class:`~jaxmmcl.config.ConfigError` (exit status 2).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from jaxmmcl.config import ConfigError


def add_data_parser(sub) -> None:
    """Adds the ``data generate`` subcommand to an argparse subparsers object."""
    data = sub.add_parser("data", help="datasets in the Multimodal3DIdent layout")
    data_sub = data.add_subparsers(dest="data_command", required=True)
    gen = data_sub.add_parser("generate", help="render an image/text dataset")
    gen.add_argument("dir", help="root folder to write (its train/val/test must not exist)")
    gen.add_argument("--n-train", type=_integer, required=True, help="training pairs")
    gen.add_argument("--n-val", type=_integer, required=True, help="validation pairs")
    gen.add_argument("--n-test", type=_integer, required=True, help="test pairs")
    gen.add_argument("--size", type=_integer, default=64, help="image size in pixels (64)")
    gen.add_argument("--seed", type=_integer, default=0, help="random seed (0)")
    gen.add_argument(
        "--independent-hue",
        action="store_true",
        help="hue independent of x-position (default: causal, as in the paper's main run)",
    )
    gen.add_argument("--quiet", action="store_true", help="no progress bar")


def _integer(text: str) -> int | str:
    # Non-integers pass through so that validation reports them as ConfigError (exit 2).
    try:
        return int(text)
    except ValueError:
        return text


def run_data(args: argparse.Namespace) -> None:
    """Carries out ``jaxmmcl data generate``."""
    from jaxmmcl.imgtxt.dataset import generate

    generate(
        Path(args.dir),
        {"train": args.n_train, "val": args.n_val, "test": args.n_test},
        image_size=args.size,
        seed=args.seed,
        causal_hue=not args.independent_hue,
        show_progress=not args.quiet,
    )
    print(f"dataset: {args.dir}")


def run_reproduce(args: argparse.Namespace) -> None:
    """Carries out ``jaxmmcl reproduce imgtxt3`` (``args``: ``scale``, ``out``, ``data``,
    ``fresh_batches``, ``quiet``)."""
    import dataclasses

    from jaxmmcl.imgtxt.threeview import reproduce_three_views, three_view_scale

    name = args.scale or "cpu"
    scale = three_view_scale(name)
    if getattr(args, "data", None) is not None:
        raise ConfigError("--data: only for reproduce imgtxt (imgtxt3 renders its image pairs)")
    if getattr(args, "fresh_batches", False):
        data = dataclasses.replace(scale.static.data, fresh_batches=True)
        scale = dataclasses.replace(scale, static=dataclasses.replace(scale.static, data=data))
    out = Path(args.out or f"runs/imgtxt3-{name}")
    reproduce_three_views(out, scale, show_progress=not args.quiet)
    print((out / "imgtxt3.md").read_text())
    print(f"results: {out / 'results.csv'}")
