"""The three-view image/text experiment: multiview-crl's multimodal experiment (Yao et al.,
ICLR 2024, "Multi-View Causal Representation Learning with Partial Observability") on
Multimodal3DIdent-format data, ``jaxmmcl reproduce imgtxt3``.

Every scene has three views: its image, a second image of it in which chosen factors are
redrawn (:data:`~jaxmmcl.imgtxt.factors.CHANGED` by default: the rotations and the three hues)
and the caption of the first. Multiview-crl searches its dataset for such image pairs; here the
second image is rendered with exactly those factors changed
(:func:`~jaxmmcl.imgtxt.factors.change_factors`). One image encoder (for both images) and one
text encoder are trained with multiview-crl's loss over the subsets of views: each subset's
chunk of the encoding is trained by NT-Xent between the subset's views
(:func:`jaxmmcl.losses.subsets_nt_xent`). The theory: a subset's chunk recovers the factors
every view of the subset shares, and not the others. Both images and the caption share shape
and position; the images also the spotlight's position; the first image and the caption the
object's hue (named loosely, by a colour word).

Each subset's chunk is scored per modality as multiview-crl's evaluation does: the image
encoder's chunk on both images of the validation scenes (pooled, each with its own factors),
the text encoder's on the captions, predicting every factor of the modality.

Output folder: ``results.csv`` (``seed, subset, modality, factor, metric, value``),
``losses.csv`` (``seed, val_loss, train_loss, status``), ``imgtxt3.md`` (per modality, the
nonlinear score of every factor from every subset's chunk, with the factors the theory says
each subset recovers marked) and ``vocab.json``.
"""

from __future__ import annotations

import csv
import dataclasses
import functools
import time
from dataclasses import dataclass
from pathlib import Path

import jax
import numpy as np

from jaxmmcl.config import ConfigError
from jaxmmcl.imgtxt import train
from jaxmmcl.imgtxt.dataset import channel_stats
from jaxmmcl.imgtxt.evaluate import IMAGE_FACTORS, TEXT_FACTORS, score_factors
from jaxmmcl.imgtxt.factors import (
    CHANGED,
    change_factors,
    image_latents,
    sample_factors,
    take,
    text_latents,
)
from jaxmmcl.imgtxt.render import render_batch, to_uint8
from jaxmmcl.imgtxt.sweep import StaticConfig
from jaxmmcl.imgtxt.text import VOCAB_FILE, Vocabulary, captions, full_vocabulary, tokenize
from jaxmmcl.losses import subset_chunks, view_subsets
from jaxmmcl.sweeps import load_sweep
from jaxmmcl.training import run_status

VIEWS = ("image1", "image2", "text")
# Factor columns of each view that name a Factors field, for the theory's marks.
_FIELD = {
    "object_shape": "shape",
    "object_xpos": "xpos",
    "object_ypos": "ypos",
    "object_alpharot": "alpharot",
    "object_betarot": "betarot",
    "object_gammarot": "gammarot",
    "object_color": "hue",
    "spotlight_pos": "spot_pos",
    "spotlight_color": "spot_color",
    "background_color": "background",
    "object_color_index": "hue",
}


NONLINEAR = {"continuous": "r2_kernel_ridge", "discrete": "acc_mlp"}


@dataclass(frozen=True)
class ThreeViewScale:
    """One scale of the experiment.

    Attributes:
      static: the image/text experiment's static config (data, encoders, training,
        evaluation); its ``model.max_encoding_size`` is replaced by ``encoding_size``.
      seeds: the runs' seeds.
      encoding_size: units of both encoders' outputs, split into one chunk per subset of views
        (multiview-crl: 32).
      changed: the :class:`~jaxmmcl.imgtxt.factors.Factors` fields the second image redraws.
    """

    static: StaticConfig
    seeds: tuple[int, ...]
    encoding_size: int
    changed: tuple[str, ...] = CHANGED


SCALE_NAMES = ("cpu", "paper")


@functools.cache
def three_view_scale(name: str) -> ThreeViewScale:
    """The scale ``name`` (``cpu`` or ``paper``): the image/text sweep's scale of that name
    (``sweeps/imgtxt.yaml``) with multiview-crl's settings."""
    if name not in SCALE_NAMES:
        raise ConfigError(f"--scale: expected one of {', '.join(SCALE_NAMES)}, got {name!r}")
    static = load_sweep("imgtxt", scale=name).runs[0].config.static
    if name == "cpu":
        # Two seeds side by side on the two cores; 24 units: 6 per subset, room for 7 shapes.
        return ThreeViewScale(static, (0, 1), encoding_size=24)
    # Multiview-crl's main_multimodal.py: batch 128, lr 1e-4, tau 1, 300,001 steps, encoding
    # size 32, clipping to norm 2.
    train_config = dataclasses.replace(
        static.train, batch_size=128, steps=300_000, learning_rate=1e-4
    )
    return ThreeViewScale(dataclasses.replace(static, train=train_config), (0, 1, 2), 32)


@dataclass(frozen=True)
class Scenes:
    """Rendered scenes: both images (``(2, n, s, s, 3)`` uint8), the captions' token ids and
    every view's factor columns (:func:`~jaxmmcl.imgtxt.factors.image_latents`, text's)."""

    images: np.ndarray
    tokens: np.ndarray
    latents: tuple[dict[str, np.ndarray], dict[str, np.ndarray], dict[str, np.ndarray]]


def render_scenes(
    key: jax.Array, n: int, image_size: int, changed: tuple[str, ...], chunk: int = 256
) -> tuple[np.ndarray, list[str], tuple[dict, dict, dict]]:
    """``n`` scenes of the key: both images (uint8, ``(2, n, s, s, 3)``), the captions of the
    first and every view's factor columns."""
    first = sample_factors(key, n)
    second = change_factors(jax.random.fold_in(key, 1), first, changed)
    images = np.empty((2, n, image_size, image_size, 3), np.uint8)
    for v, f in enumerate((first, second)):
        for start in range(0, n, chunk):
            # Fixed-size chunks (the last one padded by repeating indices) compile once.
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            rendered = np.asarray(to_uint8(render_batch(take(f, idx), image_size)))
            images[v, start : start + chunk] = rendered[: n - start]
    latents = (image_latents(first), image_latents(second), text_latents(first))
    return images, captions(first), latents


def theory(changed: tuple[str, ...]) -> dict[tuple[int, ...], set[str]]:
    """Subset of views -> the :class:`~jaxmmcl.imgtxt.factors.Factors` fields all its views
    share: the images all but ``changed``, the caption shape, position and the first image's
    hue (by its colour name)."""
    image_fields = set(_FIELD.values())
    shown = {0: image_fields, 1: image_fields, 2: {"shape", "xpos", "ypos", "hue"}}
    out = {}
    for subset in view_subsets(len(VIEWS)):
        shared = set.intersection(*(shown[v] for v in subset))
        if 1 in subset:
            shared -= set(changed)
        out[subset] = shared
    return out


def reproduce_three_views(
    out: str | Path, scale: str | ThreeViewScale = "cpu", *, show_progress: bool = True
) -> list[dict]:
    """Trains the scale's seeds, scores every subset's chunk and writes the outputs (module
    docstring). Returns the rows of ``results.csv``."""
    from tqdm import tqdm

    if isinstance(scale, str):
        scale = three_view_scale(scale)
    spec = scale.static
    chunks = subset_chunks(len(VIEWS), scale.encoding_size)
    out = Path(out)
    t_start = time.perf_counter()
    # Fixed keys, independent of the training seeds: every run sees the same scenes.
    key = jax.random.key(2**31 - 2)
    val, test = (
        render_scenes(jax.random.fold_in(key, i), n, spec.data.image_size, scale.changed)
        for i, n in ((1, spec.data.n_val), (2, spec.data.n_test))
    )
    if spec.data.fresh_batches:
        vocab = full_vocabulary()
        mean, std = channel_stats(val[0][0])
        source = train.rendered_source(
            spec.data.image_size, vocab, mean, std, changed=scale.changed
        )
    else:
        images, texts, _ = render_scenes(
            jax.random.fold_in(key, 0), spec.data.n_train, spec.data.image_size, scale.changed
        )
        tokenized = [tokenize(t) for t in texts]
        vocab = Vocabulary.build(tokenized)
        mean, std = channel_stats(images[0])
        source = train.array_source(images, vocab.encode(tokenized), mean, std)
    val, test = (
        Scenes(images, vocab.encode(tokenize(t) for t in texts), latents)
        for images, texts, latents in (val, test)
    )
    if len(val.tokens) < spec.train.batch_size:
        raise ConfigError(f"validation split: {len(val.tokens)} scenes, fewer than one batch")
    out.mkdir(parents=True, exist_ok=True)
    vocab.save(out / VOCAB_FILE)
    model = dataclasses.replace(spec.model, max_encoding_size=scale.encoding_size)
    model = model.encoders(vocab.size)
    seeds = list(scale.seeds)
    # The image/text sweep's policy (ImageText.program_size): one run per CPU device.
    per_group = 1 if jax.default_backend() == "cpu" else len(seeds)
    groups = [seeds[i : i + per_group] for i in range(0, len(seeds), per_group)]
    devices = jax.local_devices()
    rows, losses = [], []
    with tqdm(total=len(seeds) * spec.train.steps, unit="step", disable=not show_progress) as bar:
        for start in range(0, len(groups), len(devices)):
            wave = groups[start : start + len(devices)]
            jobs = [(np.array(g), np.full(len(g), scale.encoding_size)) for g in wave]
            step = _Steps(bar, len(wave))
            states, history = train.train_groups(jobs, model, spec.train, source, step, devices)
            ends = np.cumsum([len(g) for g in wave])
            for group, state, part in zip(wave, states, np.split(history, ends[:-1]), strict=True):
                group_rows, group_losses = _evaluate(
                    group, state, part, model, source, val, test, spec, chunks
                )
                rows += group_rows
                losses += group_losses
            write_rows(out / "results.csv", rows)
            write_rows(out / "losses.csv", losses)
    minutes = (time.perf_counter() - t_start) / 60
    (out / "imgtxt3.md").write_text(markdown_table(rows, losses, scale, minutes))
    return rows


class _Steps:
    """A :func:`~jaxmmcl.imgtxt.train.train_groups` progress callback advancing a tqdm bar
    of run-steps by the steps of ``groups`` groups."""

    def __init__(self, bar, groups: int):
        self._bar, self._groups, self._done = bar, groups, 0

    def __call__(self, done: int, total: int) -> None:
        self._bar.update(self._groups * (done - self._done))
        self._done = done


def _encodings(state, scenes: Scenes, model: train.ModelConfig, source) -> list[np.ndarray]:
    """Every view's ``(R, n, k)`` encodings of the scenes: image1, image2, text."""
    h1, h_text = train.encode(state, scenes.images[0], scenes.tokens, model, source)
    h2, _ = train.encode(state, scenes.images[1], scenes.tokens, model, source)
    return [h1, h2, h_text]


def _evaluate(seeds, state, history, model, source, val, test, spec: StaticConfig, chunks):
    """Rows of ``results.csv`` and ``losses.csv`` for one trained group of runs."""
    h_val, h_test = (_encodings(state, s, model, source) for s in (val, test))
    val_loss = train.validation_loss(h_val, spec.train.batch_size, spec.train.temperature, source)
    pooled = lambda lat: {c: np.concatenate([lat[0][c], lat[1][c]]) for c in lat[0]}  # noqa: E731
    rows = []
    for subset, dims in chunks:
        cut = lambda h: h[..., list(dims)]  # noqa: E731, B023
        readouts = (
            (
                "image",
                np.concatenate([cut(h_val[0]), cut(h_val[1])], axis=1),
                np.concatenate([cut(h_test[0]), cut(h_test[1])], axis=1),
                pooled(val.latents),
                pooled(test.latents),
                IMAGE_FACTORS,
            ),
            ("text", cut(h_val[2]), cut(h_test[2]), val.latents[2], test.latents[2], TEXT_FACTORS),
        )
        for modality, fit, held_out, lat_fit, lat_test, factors in readouts:
            scores = score_factors(
                fit, held_out, lat_fit, lat_test, factors,
                key=jax.random.key(0), mlp_epochs=spec.eval.mlp_epochs,
            )  # fmt: skip
            subset_name = "+".join(VIEWS[v] for v in subset)
            heads = [{"seed": int(seed), "subset": subset_name} for seed in seeds]
            rows += score_rows(heads, modality, scores)
    # A constant encoder's loss: NT-Xent's log(2n - 1) for each of the six pairs of views of
    # the four subsets.
    history = np.asarray(history)
    status = run_statuses(history, 6 * np.log(2 * spec.train.batch_size - 1))
    losses = [
        {
            "seed": int(seed),
            "val_loss": float(val_loss[r]),
            "train_loss": float(history[r, -1]),
            "status": str(status[r]),
        }
        for r, seed in enumerate(seeds)
    ]
    return rows, losses


def markdown_table(
    rows: list[dict], losses: list[dict], scale: ThreeViewScale, minutes: float
) -> str:
    """The report: per modality, the nonlinear score of every factor (rows) from every subset's
    chunk (columns), mean ± std over the seeds that did not fail; ``*`` marks the factors the
    subset's views share (:func:`theory`) in the chunks the encoder is trained on."""
    bad = {int(r["seed"]) for r in losses if r["status"] != "ok"}
    rows = [r for r in rows if int(r["seed"]) not in bad]
    subsets = list(dict.fromkeys(r["subset"] for r in rows))
    shared = {"+".join(VIEWS[v] for v in s): fields for s, fields in theory(scale.changed).items()}
    lines = [
        "# Three views: every factor from every subset's content",
        "",
        f"Second image: {', '.join(scale.changed)} redrawn. Encoding {scale.encoding_size} "
        "units, one chunk per subset. Accuracy of the MLP classifier for discrete factors, "
        "kernel ridge R^2 for continuous ones, fitted on the validation scenes and scored on "
        "the test scenes (the image encoder on both images); * the subset's views share the "
        f"factor. Wall time: {minutes:.1f} minutes.",
    ]
    for modality, factors in (("image", IMAGE_FACTORS), ("text", TEXT_FACTORS)):
        lines += ["", f"## {modality} encoder", "", "| factor | " + " | ".join(subsets) + " |"]
        lines.append("|---|" + "---|" * len(subsets))
        for factor, kind in factors:
            metric = NONLINEAR[kind]
            cells = []
            for subset in subsets:
                values = np.asarray(
                    [
                        float(r["value"])
                        for r in rows
                        if (r["subset"], r["modality"], r["factor"], r["metric"])
                        == (subset, modality, factor, metric)
                    ]
                )
                trained = modality == "image" or "text" in subset.split("+")
                mark = " *" if trained and _FIELD.get(factor) in shared[subset] else ""
                cells.append((format_cell(values) if len(values) else "") + mark)
            lines.append(f"| {factor} ({metric}) | " + " | ".join(cells) + " |")
    lines += [
        "",
        "The text encoder's chunk of image1+image2 is not trained (no caption in the subset).",
    ]
    ok = [float(r["val_loss"]) for r in losses if r["status"] == "ok"]
    lines += ["", f"Validation loss: {format_cell(np.asarray(ok)) if ok else 'none'}."]
    if bad:
        lines.append(f"Left out (diverged or failed): seeds {', '.join(map(str, sorted(bad)))}.")
    return "\n".join(lines) + "\n"


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


def format_cell(values: np.ndarray) -> str:
    """``mean ± std`` of a cell's values (the value alone for one)."""
    if len(values) == 1:
        return f"{values[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std():.2f}"
