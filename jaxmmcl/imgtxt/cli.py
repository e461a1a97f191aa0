"""The image/text data command of the ``jaxmmcl`` command line.

    jaxmmcl data generate DIR --n-train N --n-val N --n-test N [--size S] [--seed K]
        [--independent-hue] [--quiet]

:func:`add_data_parser` registers ``data``; :func:`run_data` carries it out. Bad input raises
:class:`~jaxmmcl.config.ConfigError` (exit status 2). ``jaxmmcl reproduce imgtxt`` and
``imgtxt3`` are sweeps (:mod:`jaxmmcl.imgtxt.sweep`).
"""

from __future__ import annotations

import argparse
from pathlib import Path


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
