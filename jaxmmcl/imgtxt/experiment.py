"""The encoding-size sweep of the paper's Figure 3: train image/text encoders for every
(encoding size, seed), score every factor of both modalities, write results and figures.

Output folder:

* ``results.csv`` -- one row per encoding size x seed x modality x factor x metric
  (``encoding_size, seed, modality, factor, metric, value``);
* ``losses.csv`` -- per run: ``encoding_size, seed, val_loss, train_loss`` (last chunk),
  ``status`` (``ok``; ``diverged`` when a training loss was not finite; ``failed`` when the
  last logged training loss is above the first and above ``log(2 * batch_size - 1)``, the
  loss of a constant encoder, as :func:`jaxmmcl.training.run_status` defines it);
* ``imgtxt.md`` -- the table: per modality and factor, the nonlinear score (MLP accuracy or
  kernel ridge R^2) against encoding size (mean ± std over the seeds that did not diverge),
  the validation loss, and the diverged or failed runs if any;
* ``figure3_image.png``, ``figure3_text.png`` -- every factor's scores against encoding size;
  ``val_loss.png`` -- validation loss against encoding size;
* ``vocab.json`` -- the vocabulary the captions were tokenised with (the official format).
"""

from __future__ import annotations

import csv
import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jaxmmcl.config import ConfigError
from jaxmmcl.imgtxt.dataset import SPLITS, channel_stats, load_split, load_vocabulary
from jaxmmcl.imgtxt.evaluate import IMAGE_FACTORS, METRICS, TEXT_FACTORS, score_factors
from jaxmmcl.imgtxt.factors import image_latents, sample_factors, take, text_latents
from jaxmmcl.imgtxt.render import render_batch, to_uint8
from jaxmmcl.imgtxt.text import VOCAB_FILE, Vocabulary, captions, full_vocabulary, tokenize
from jaxmmcl.imgtxt.train import (
    ModelConfig,
    TrainConfig,
    array_source,
    encode,
    rendered_source,
    train_groups,
    validation_loss,
)
from jaxmmcl.training import run_status

ENCODING_SIZES = (1, 2, 3, 4, 6, 8, 10, 12)
NONLINEAR = {"continuous": "r2_kernel_ridge", "discrete": "acc_mlp"}


@dataclass(frozen=True)
class Scale:
    """One scale of the experiment.

    Attributes:
      image_size: image height and width.
      stage_sizes, widths: the ResNet (ResNet-18: (2, 2, 2, 2), (64, 128, 256, 512)).
      embedding_size, text_channels: the text encoder (the paper: 128, (25, 50, 100)).
      small_stem: the ResNet's stem (the paper: ``False``, ResNet-18's own).
      train: optimisation.
      seeds: seeds per encoding size.
      n_train: pairs of the fixed training split rendered once into memory (without
        ``--data``; the paper's 125,000), iterated in shuffled epochs of full batches.
      fresh_batches: instead of a fixed training split, render a fresh batch of newly sampled
        factors inside every training step (a declared deviation: the official code trains on
        a fixed split; without ``--data`` only).
      n_val, n_test: pairs of the rendered validation and test splits (without ``--data``).
      runs_per_program: runs trained together as one vmapped program; such groups train
        concurrently, one per local device (:func:`~jaxmmcl.imgtxt.train.train_groups`).
      mlp_epochs: the most epochs of the MLP classifier of the evaluation.
    """

    image_size: int
    stage_sizes: tuple[int, ...]
    widths: tuple[int, ...]
    embedding_size: int
    text_channels: tuple[int, ...]
    small_stem: bool
    train: TrainConfig
    seeds: tuple[int, ...]
    n_train: int
    fresh_batches: bool
    n_val: int
    n_test: int
    runs_per_program: int
    mlp_epochs: int

    def model(self, vocab_size: int, encoding_size: int = max(ENCODING_SIZES)) -> ModelConfig:
        """The scale's encoders, with outputs of ``encoding_size`` units (by default the
        sweep's largest encoding size)."""
        return ModelConfig(
            encoding_size,
            vocab_size,
            self.stage_sizes,
            self.widths,
            self.embedding_size,
            self.text_channels,
            self.small_stem,
        )


SCALES = {
    "cpu": Scale(
        image_size=64,
        stage_sizes=(1, 1, 1, 1),
        widths=(8, 16, 32, 64),
        embedding_size=64,
        text_channels=(16, 32, 64),
        small_stem=True,
        # Temperature 0.1 rather than the paper's 1: with cosine similarities in [-1, 1], a
        # temperature of 1 bounds the logits so tightly that 1,500 steps learn only the
        # positions; 0.1 also learns the shape. The official initialisations need a warm-up
        # and more steps than JAX's defaults did to put the shape into 4 units (README).
        train=TrainConfig(
            batch_size=64,
            steps=4500,
            learning_rate=1e-3,
            schedule="cosine",
            warmup_steps=500,
            temperature=0.1,
            log_every=50,
        ),
        seeds=(0,),
        n_train=16384,
        fresh_batches=False,
        n_val=1024,
        n_test=1024,
        runs_per_program=1,
        mlp_epochs=1000,
    ),
    "paper": Scale(
        image_size=224,
        stage_sizes=(2, 2, 2, 2),
        widths=(64, 128, 256, 512),
        embedding_size=128,
        text_channels=(25, 50, 100),
        small_stem=False,
        train=TrainConfig(
            batch_size=256, steps=100_000, learning_rate=1e-5, schedule="constant", log_every=1000
        ),
        seeds=(0, 1, 2),
        n_train=125_000,
        fresh_batches=False,
        n_val=10_000,
        n_test=10_000,
        runs_per_program=3,
        mlp_epochs=1000,
    ),
}


def _rendered_split(key: jax.Array, n: int, image_size: int, chunk: int = 256):
    """A split rendered into memory: uint8 images, captions, image and text latents."""
    f = sample_factors(key, n)
    images = np.empty((n, image_size, image_size, 3), np.uint8)
    for start in range(0, n, chunk):
        # Fixed-size chunks (the last one padded by repeating indices) compile once.
        idx = np.minimum(np.arange(start, start + chunk), n - 1)
        rendered = np.asarray(to_uint8(render_batch(take(f, idx), image_size)))
        images[start : start + chunk] = rendered[: n - start]
    return images, captions(f), image_latents(f), text_latents(f)


def _load_data(scale: Scale, data: Path | None):
    """(source, val split, test split, vocab); splits as (images, tokens, img lat, txt lat)."""
    if data is not None:
        vocab = load_vocabulary(data)
        splits = [load_split(data, s, vocab, image_size=scale.image_size) for s in SPLITS]
        train, val, test = splits
        mean, std = channel_stats(train.images)
        source = array_source(train.images, train.tokens, mean, std)
        as_tuple = lambda s: (s.images, s.tokens, s.image_latents, s.text_latents)  # noqa: E731
        return source, as_tuple(val), as_tuple(test), vocab
    # Fixed keys, independent of the training seeds: every run sees the same splits.
    key = jax.random.key(2**31 - 1)
    val, test = (
        _rendered_split(jax.random.fold_in(key, i), n, scale.image_size)
        for i, n in ((1, scale.n_val), (2, scale.n_test))
    )
    if scale.fresh_batches:
        vocab = full_vocabulary()
        mean, std = channel_stats(val[0])
        source = rendered_source(scale.image_size, vocab, mean, std)
    else:
        images, texts, _, _ = _rendered_split(
            jax.random.fold_in(key, 0), scale.n_train, scale.image_size
        )
        # As the official loader: the vocabulary of the training captions.
        tokenized = [tokenize(t) for t in texts]
        vocab = Vocabulary.build(tokenized)
        mean, std = channel_stats(images)
        source = array_source(images, vocab.encode(tokenized), mean, std)

    def encoded(split):
        images, texts, image_lat, text_lat = split
        return images, vocab.encode(tokenize(t) for t in texts), image_lat, text_lat

    return source, encoded(val), encoded(test), vocab


def reproduce(
    out: str | Path,
    scale: str | Scale = "cpu",
    *,
    data: str | Path | None = None,
    encoding_sizes: tuple[int, ...] = ENCODING_SIZES,
    show_progress: bool = True,
) -> list[dict]:
    """Runs the sweep over :data:`ENCODING_SIZES` x the scale's seeds and writes the outputs.

    Args:
      out: output folder (created).
      scale: ``"cpu"``, ``"paper"`` or a :class:`Scale`.
      data: a Multimodal3DIdent root to train and evaluate on (ours or the real one); without
        it, data are rendered in memory.
      encoding_sizes: the sizes swept, each in [1, 12].
      show_progress: a tqdm bar over all training steps.

    Returns:
      The rows of ``results.csv``.
    """
    from tqdm import tqdm

    if isinstance(scale, str):
        if scale not in SCALES:
            raise ConfigError(f"--scale: expected one of {', '.join(SCALES)}, got {scale!r}")
        scale = SCALES[scale]
    if scale.fresh_batches and data is not None:
        raise ConfigError("--fresh-batches: renders its own batches; not with --data")
    bad = [k for k in encoding_sizes if not 1 <= k <= max(ENCODING_SIZES)]
    if bad or not encoding_sizes:
        raise ConfigError(f"encoding sizes: expected integers in [1, 12], got {encoding_sizes!r}")
    out = Path(out)
    t_start = time.perf_counter()
    source, val, test, vocab = _load_data(scale, Path(data) if data is not None else None)
    if len(val[0]) < scale.train.batch_size:
        raise ConfigError(f"validation split: {len(val[0])} pairs, fewer than one batch")
    # Created only once the input is known good: a refused input leaves nothing behind.
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / VOCAB_FILE)
    model = scale.model(vocab.size)
    runs = [(size, seed) for seed in scale.seeds for size in encoding_sizes]
    groups = [
        runs[i : i + scale.runs_per_program] for i in range(0, len(runs), scale.runs_per_program)
    ]
    devices = jax.local_devices()
    rows, losses = [], []
    total = len(runs) * scale.train.steps
    with tqdm(total=total, unit="step", disable=not show_progress) as bar:
        for start in range(0, len(groups), len(devices)):
            wave = groups[start : start + len(devices)]
            jobs = [(np.array([seed for _, seed in g]), np.array([k for k, _ in g])) for g in wave]
            trained = train_groups(jobs, model, scale.train, source, bar.update, devices)
            for group, (state, history) in zip(wave, trained, strict=True):
                group_rows, group_losses = _evaluate(
                    group, state, history, model, source, val, test, scale
                )
                rows += group_rows
                losses += group_losses
            write_rows(out / "results.csv", rows)
            write_rows(out / "losses.csv", losses)
    minutes = (time.perf_counter() - t_start) / 60
    (out / "imgtxt.md").write_text(markdown_table(rows, losses, minutes))
    write_figures(out, rows, losses)
    return rows


def _evaluate(group, state, history, model, source, val, test, scale: Scale):
    """Rows of ``results.csv`` and ``losses.csv`` for one trained group of (size, seed) runs."""
    h_val = encode(state, val[0], val[1], model, source)
    h_test = encode(state, test[0], test[1], model, source)
    val_loss = validation_loss(h_val, scale.train.batch_size, scale.train.temperature, source)
    heads = [{"encoding_size": int(size), "seed": int(seed)} for size, seed in group]
    rows = []
    for modality, m, factors in (("image", 0, IMAGE_FACTORS), ("text", 1, TEXT_FACTORS)):
        scores = score_factors(
            h_val[m], h_test[m], val[2 + m], test[2 + m], factors,
            key=jax.random.key(0), mlp_epochs=scale.mlp_epochs,
        )  # fmt: skip
        rows += score_rows(heads, modality, scores)
    history = np.asarray(history)
    status = run_statuses(history, np.log(2 * scale.train.batch_size - 1))
    losses = [
        head
        | {
            "val_loss": float(val_loss[r]),
            "train_loss": float(history[r, -1]),
            "status": str(status[r]),
        }
        for r, head in enumerate(heads)
    ]
    return rows, losses


def score_rows(heads: list[dict], modality: str, scores: dict) -> list[dict]:
    """Rows of ``results.csv`` for R runs' scores of one readout: for every ``(factor,
    metric)`` of ``scores`` (``(R,)`` values each, :func:`score_factors`) and run r,
    ``heads[r]`` followed by ``modality``, ``factor``, ``metric`` and ``value``."""
    return [
        head | {"modality": modality, "factor": factor, "metric": metric, "value": float(v[r])}
        for (factor, metric), v in scores.items()
        for r, head in enumerate(heads)
    ]


def run_statuses(history: np.ndarray, constant_loss: float) -> np.ndarray:
    """Every run's status from its ``(R, chunks)`` loss history
    (:func:`jaxmmcl.training.run_status`; ``constant_loss``: a constant encoder's loss)."""
    history = np.asarray(history)
    diverged = ~np.isfinite(history).all(axis=1)
    return run_status(diverged, history[:, 0], history[:, -1], constant_loss=constant_loss)


def write_rows(path: Path, rows: list[dict]) -> None:
    """Writes ``rows`` (dicts of one set of keys) as CSV through a temporary file."""
    tmp = path.with_name(path.name + ".tmp")
    with tmp.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(path)


def _kind(modality: str, factor: str) -> str:
    factors = dict(IMAGE_FACTORS if modality == "image" else TEXT_FACTORS)
    return factors[factor]


def _summary(rows: list[dict], modality: str, factor: str, metric: str) -> dict[int, np.ndarray]:
    out: dict[int, list[float]] = {}
    for row in rows:
        if (row["modality"], row["factor"], row["metric"]) == (modality, factor, metric):
            out.setdefault(int(row["encoding_size"]), []).append(float(row["value"]))
    return {size: np.asarray(v) for size, v in sorted(out.items())}


def format_cell(values: np.ndarray) -> str:
    """``mean ± std`` of a cell's values (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std():.2f}"


_LEFT_OUT = {
    "diverged": "non-finite training loss",
    "failed": "last logged training loss above the first and above a constant encoder's",
}


def markdown_table(rows: list[dict], losses: list[dict], minutes: float) -> str:
    """The Markdown report: nonlinear scores per factor against encoding size, per modality."""
    sizes = sorted({int(r["encoding_size"]) for r in rows})
    seeds = sorted({int(r["seed"]) for r in rows})
    left_out = {(int(r["encoding_size"]), int(r["seed"])): r["status"] for r in losses}
    left_out = {run: status for run, status in left_out.items() if status != "ok"}
    rows = [r for r in rows if (int(r["encoding_size"]), int(r["seed"])) not in left_out]
    losses = [r for r in losses if r["status"] == "ok"]
    head = "| factor (score) | " + " | ".join(f"k={s}" for s in sizes) + " |"
    rule = "|---|" + "---|" * len(sizes)
    lines = [
        "# Image/text experiment: scores against encoding size",
        "",
        f"Seeds: {', '.join(map(str, seeds))}; fitted on val, scored on test; accuracy of the "
        "MLP classifier for discrete factors, kernel ridge R^2 for continuous ones "
        f"(results.csv has all four metrics). Wall time: {minutes:.1f} minutes.",
    ]
    for modality, factors in (("image", IMAGE_FACTORS), ("text", TEXT_FACTORS)):
        lines += ["", f"## {modality} encoding", "", head, rule]
        for factor, kind in factors:
            metric = NONLINEAR[kind]
            summary = _summary(rows, modality, factor, metric)
            cells = [format_cell(summary[s]) if s in summary else "" for s in sizes]
            lines.append(f"| {factor} ({metric}) | " + " | ".join(cells) + " |")
    lines += ["", "## validation loss", "", head, rule]
    by_size: dict[int, list[float]] = {}
    for row in losses:
        by_size.setdefault(int(row["encoding_size"]), []).append(float(row["val_loss"]))
    cells = [format_cell(np.asarray(by_size[s])) if s in by_size else "" for s in sizes]
    lines.append("| NT-Xent (val) | " + " | ".join(cells) + " |")
    for status, why in _LEFT_OUT.items():
        runs = [f"k={size} seed {seed}" for (size, seed), s in left_out.items() if s == status]
        if runs:
            lines += ["", f"**{status.capitalize()}** ({why}; left out above): {', '.join(runs)}."]
    return "\n".join(lines) + "\n"


def write_figures(out: Path, rows: list[dict], losses: list[dict]) -> None:
    """``figure3_image.png``, ``figure3_text.png`` (linear and nonlinear score of every factor
    against encoding size, mean over seeds with min-max bands) and ``val_loss.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for modality, factors in (("image", IMAGE_FACTORS), ("text", TEXT_FACTORS)):
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
        for panel, ax in enumerate(axes):
            for factor, kind in factors:
                metric = METRICS[kind][panel]
                summary = _summary(rows, modality, factor, metric)
                x = np.array(list(summary))
                values = list(summary.values())
                mean = np.array([v.mean() for v in values])
                style = "-o" if kind == "discrete" else "--s"
                ax.plot(x, mean, style, label=f"{factor} ({metric})", markersize=4)
                lo = np.array([v.min() for v in values])
                hi = np.array([v.max() for v in values])
                ax.fill_between(x, lo, hi, alpha=0.15)
            ax.set_xlabel("encoding size")
            ax.set_title(f"{modality} encoding: {'linear' if panel == 0 else 'nonlinear'}")
            ax.set_ylim(-0.05, 1.05)
            ax.grid(alpha=0.3)
        axes[0].set_ylabel("accuracy / R^2")
        axes[1].legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
        fig.tight_layout()
        fig.savefig(out / f"figure3_{modality}.png", dpi=120)
        plt.close(fig)
    fig, ax = plt.subplots(figsize=(5, 3.5))
    by_size: dict[int, list[float]] = {}
    for row in losses:
        by_size.setdefault(int(row["encoding_size"]), []).append(float(row["val_loss"]))
    x = np.array(sorted(by_size))
    ax.plot(x, [np.mean(by_size[s]) for s in x], "-o")
    ax.set_xlabel("encoding size")
    ax.set_ylabel("validation NT-Xent")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "val_loss.png", dpi=120)
    plt.close(fig)


def with_overrides(scale: Scale, **train_overrides) -> Scale:
    """A scale with some training settings replaced (e.g. ``steps=...``)."""
    return dataclasses.replace(scale, train=dataclasses.replace(scale.train, **train_overrides))
