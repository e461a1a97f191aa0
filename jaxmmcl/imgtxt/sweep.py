"""The image/text experiment as an experiment of the shared runner: ``experiment: imgtxt`` in
a sweep file (``sweeps/imgtxt.yaml``, ``jaxmmcl reproduce imgtxt``).

A run trains an image and a text encoder on image/caption pairs (:mod:`jaxmmcl.imgtxt.train`)
and scores every factor of both modalities from each encoding
(:mod:`jaxmmcl.imgtxt.evaluate`). Its keys (:class:`RunConfig`):

* ``data.*`` -- where the pairs come from: a fixed training split rendered once into memory
  (``data.n_train`` pairs, as the official DataLoader iterates a dataset), a Multimodal3DIdent
  root (``data.path``) or fresh renders every step (``data.fresh_batches``, a declared
  deviation); rendered validation and test splits of ``data.n_val`` and ``data.n_test``;
* ``model.*`` -- the ResNet and the text encoder, with ``model.max_encoding_size`` output units;
* ``train.*`` -- :class:`jaxmmcl.imgtxt.train.TrainConfig`; ``eval.mlp_epochs``;
* ``model.encoding_size`` -- traced: the run's encodings are masked to their first k units
  (:func:`~jaxmmcl.imgtxt.models.encoding_mask`), so every size shares one compiled program;
* ``seed``.

Grid-layer policy (:meth:`ImageText.program_size`, measured in ``benchmarks/RESULTS.md``): on
CPU a program trains one run per device, the devices side by side
(:func:`~jaxmmcl.imgtxt.train.train_groups`), since XLA:CPU runs vmapped convolutions as
grouped ones, an order of magnitude slower; on accelerators each device trains as many runs as
one vmapped call as fit in its memory.

Result rows follow ``results.csv``'s schema: encoder ``image`` or ``text``, the factor's column
name with an empty role, ``r2_linear`` and ``r2_nonlinear`` (kernel ridge) for continuous
factors, ``acc_linear`` (logistic regression) and ``acc_nonlinear`` (MLP classifier) for
discrete ones; ``val_loss`` is the training loss on the validation split in full batches.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np
from flax import struct
from jax.sharding import Mesh

from jaxmmcl.config import dotted_keys, flatten, plain, split_keys
from jaxmmcl.errors import ConfigError
from jaxmmcl.imgtxt import train as imgtrain
from jaxmmcl.imgtxt.dataset import (
    MIN_IMAGE_SIZE,
    SPLITS,
    channel_stats,
    load_split,
    load_vocabulary,
)
from jaxmmcl.imgtxt.evaluate import IMAGE_FACTORS, TEXT_FACTORS, score_factors
from jaxmmcl.imgtxt.factors import (
    IMAGE_FIELDS,
    change_factors,
    image_latents,
    sample_factors,
    take,
    text_latents,
)
from jaxmmcl.imgtxt.models import EMBEDDING_SIZE, TEXT_CHANNELS
from jaxmmcl.imgtxt.render import render_batch, to_uint8
from jaxmmcl.imgtxt.text import VOCAB_FILE, Vocabulary, captions, full_vocabulary, tokenize
from jaxmmcl.imgtxt.threeview import FIELD, VIEWS, theory
from jaxmmcl.losses import subset_chunks, view_subsets
from jaxmmcl.precision import check_supported
from jaxmmcl.training import run_status

ENCODERS = (("image", IMAGE_FACTORS), ("text", TEXT_FACTORS))


def _fail(key: str, value: Any, expected: str) -> None:
    raise ConfigError(f"{key}: expected {expected}, got {value!r}")


def _int(key: str, value: Any, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        _fail(key, value, f"an integer >= {minimum}")


def _ints(key: str, value: Any) -> tuple[int, ...]:
    ok = isinstance(value, list | tuple) and value
    ok = ok and all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in value)
    if not ok:
        _fail(key, value, "a non-empty list of integers >= 1")
    return tuple(value)


@dataclass(frozen=True)
class DataConfig:
    """Where the pairs come from (static).

    Attributes:
      image_size: image height and width in pixels (>= 16; a ``path`` dataset is resized).
      n_train: pairs of the fixed training split rendered once into memory, iterated in
        shuffled epochs of full batches (without ``path`` or ``fresh_batches``; the paper's
        125,000).
      n_val, n_test: pairs of the rendered validation and test splits (without ``path``): the
        evaluation's fit and score sets; the validation loss runs on full batches of the
        first.
      fresh_batches: render a fresh batch of newly sampled factors inside every training step
        instead of a fixed split (a declared deviation: the official code trains on a fixed
        split; not with ``path``).
      path: a Multimodal3DIdent root (ours from ``jaxmmcl data generate``, or the real one)
        whose train, val and test splits are used instead of rendered ones; ``""`` renders.
      changed: :class:`~jaxmmcl.imgtxt.factors.Factors` fields (of
        :data:`~jaxmmcl.imgtxt.factors.IMAGE_FIELDS`) that a second image of every scene
        redraws: three views, multiview-crl's multimodal experiment
        (:mod:`jaxmmcl.imgtxt.threeview`); ``[]`` (the default): one image and its caption.
    """

    image_size: int = 224
    n_train: int = 125_000
    n_val: int = 10_000
    n_test: int = 10_000
    fresh_batches: bool = False
    path: str = ""
    changed: tuple[str, ...] = ()

    def __post_init__(self):
        _int("data.image_size", self.image_size, MIN_IMAGE_SIZE)
        for name in ("n_train", "n_val", "n_test"):
            _int(f"data.{name}", getattr(self, name), 1)
        if not isinstance(self.fresh_batches, bool):
            _fail("data.fresh_batches", self.fresh_batches, "true or false")
        if not isinstance(self.path, str):
            _fail("data.path", self.path, "a folder name or ''")
        if self.path and not Path(self.path).is_dir():
            _fail("data.path", self.path, "an existing Multimodal3DIdent folder")
        if self.path and self.fresh_batches:
            _fail("data.fresh_batches", True, "false with data.path (it renders its own)")
        changed = self.changed
        ok = isinstance(changed, list | tuple) and all(f in IMAGE_FIELDS for f in changed)
        if not ok or len(set(changed)) < len(changed):
            _fail("data.changed", changed, "distinct fields of " + ", ".join(IMAGE_FIELDS))
        object.__setattr__(self, "changed", tuple(changed))
        if self.path and self.changed:
            _fail("data.changed", list(self.changed), "[] with data.path (it renders pairs)")

    @property
    def n_images(self) -> int:
        """Images of every scene: 2 with ``changed``, else 1."""
        return 2 if self.changed else 1


@dataclass(frozen=True)
class ModelConfig:
    """The encoders (static).

    Attributes:
      max_encoding_size: the output units of both encoders; a run of ``model.encoding_size``
        k keeps the first k (the runs of all sizes share one program and one initialisation
        scheme).
      stage_sizes, widths: the ResNet's BasicBlocks and channels per stage (ResNet-18: (2, 2,
        2, 2), (64, 128, 256, 512)).
      embedding_size, text_channels: the text encoder (the paper: 128, (25, 50, 100)).
      small_stem: a 3 x 3 stem without max pooling instead of ResNet-18's 7 x 7 and pooling.
    """

    max_encoding_size: int = 12
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    embedding_size: int = EMBEDDING_SIZE
    text_channels: tuple[int, ...] = TEXT_CHANNELS
    small_stem: bool = False

    def __post_init__(self):
        _int("model.max_encoding_size", self.max_encoding_size, 1)
        for name in ("stage_sizes", "widths", "text_channels"):
            object.__setattr__(self, name, _ints(f"model.{name}", getattr(self, name)))
        if len(self.stage_sizes) != len(self.widths):
            _fail("model.widths", list(self.widths), "one width per stage of model.stage_sizes")
        _int("model.embedding_size", self.embedding_size, 1)
        if not isinstance(self.small_stem, bool):
            _fail("model.small_stem", self.small_stem, "true or false")

    def encoders(self, vocab_size: int) -> imgtrain.ModelConfig:
        """The encoders for a vocabulary of ``vocab_size`` tokens."""
        return imgtrain.ModelConfig(
            self.max_encoding_size,
            vocab_size,
            self.stage_sizes,
            self.widths,
            self.embedding_size,
            self.text_channels,
            self.small_stem,
        )


@dataclass(frozen=True)
class EvalConfig:
    """Evaluation (static).

    Attributes:
      mlp_epochs: the most epochs of the MLP classifier (scikit-learn's ``max_iter``: 1000).
    """

    mlp_epochs: int = 1000

    def __post_init__(self):
        _int("eval.mlp_epochs", self.mlp_epochs, 1)


SECTIONS: dict[str, type] = {
    "data": DataConfig,
    "model": ModelConfig,
    "train": imgtrain.TrainConfig,
    "eval": EvalConfig,
}


@dataclass(frozen=True)
class StaticConfig:
    """Everything that fixes a compiled program. Hashable: runs are grouped by it."""

    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: imgtrain.TrainConfig = field(default_factory=imgtrain.TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)

    def __post_init__(self):
        batch = self.train.batch_size
        if self.data.n_val < batch and not self.data.path:
            _fail("data.n_val", self.data.n_val, f"at least train.batch_size = {batch}")
        uses_split = not (self.data.path or self.data.fresh_batches)
        if uses_split and self.data.n_train < batch:
            _fail("data.n_train", self.data.n_train, f"at least train.batch_size = {batch}")
        subsets = len(view_subsets(self.data.n_images + 1))
        if self.model.max_encoding_size < subsets:
            _fail(
                "model.max_encoding_size",
                self.model.max_encoding_size,
                f"at least {subsets} with data.changed (a chunk for each subset of views)",
            )

    @property
    def views(self) -> tuple[str, ...]:
        """The views' names: the images', then ``text``."""
        return VIEWS if self.data.n_images == 2 else ("image", "text")

    def readouts(self) -> list[tuple[str, tuple[int, ...] | None]]:
        """``(subset, dims)`` of every scored readout: with three views each subset of views
        and its chunk of the encoding (:func:`jaxmmcl.losses.subset_chunks`, the subset named
        by its views joined with ``+``); with two the whole encodings, ``("", None)``."""
        if self.data.n_images == 1:
            return [("", None)]
        chunks = subset_chunks(len(self.views), self.model.max_encoding_size)
        return [("+".join(self.views[v] for v in subset), dims) for subset, dims in chunks]

    @property
    def constant_loss(self) -> float:
        """The training loss of a constant encoder: NT-Xent's ``log(2 * batch_size - 1)`` for
        every pair of views of every subset."""
        pairs = sum(math.comb(len(s), 2) for s in view_subsets(len(self.views)))
        return pairs * float(np.log(2 * self.train.batch_size - 1))


TRACED_KEYS = {"model.encoding_size": "encoding_size"}
"""Dotted user key -> :class:`Hyperparams` field, for the traced keys."""


@struct.dataclass
class Hyperparams:
    """Traced per-run values (stacked by :meth:`ImageText.stack` into int32 ``(R,)``).

    Attributes:
      encoding_size: the units of the run's encodings, 1 to ``model.max_encoding_size``.
    """

    encoding_size: Any = 12


@dataclass(frozen=True)
class RunConfig:
    """One run: static config, traced encoding size and seed."""

    static: StaticConfig = field(default_factory=StaticConfig)
    hyper: Hyperparams = field(default_factory=Hyperparams)
    seed: int = 0

    def __post_init__(self):
        _int("seed", self.seed, 0)
        size, most = self.hyper.encoding_size, self.static.model.max_encoding_size
        if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= most:
            _fail(
                "model.encoding_size",
                size,
                f"an integer from 1 to model.max_encoding_size ({most})",
            )
        if self.static.data.changed and size != most:
            _fail(
                "model.encoding_size",
                size,
                f"model.max_encoding_size ({most}) with data.changed (the subsets' chunks "
                "split the whole encoding)",
            )

    def to_dict(self) -> dict[str, Any]:
        """Nested plain-Python mapping with every key."""
        out = {}
        for section in SECTIONS:
            values = dataclasses.asdict(getattr(self.static, section))
            out[section] = {k: plain(v) for k, v in values.items()}
        out["model"]["encoding_size"] = self.hyper.encoding_size
        out["seed"] = self.seed
        return out

    def flat(self) -> dict[str, Any]:
        """The config as a flat mapping of dotted keys."""
        return flatten(self.to_dict())


class Scenes(NamedTuple):
    """An evaluation split: ``images`` ``(V, n, s, s, 3)`` uint8 (V images of every scene),
    the captions' token ids ``(n, T)`` and every view's factor columns (V image views', then
    the text's)."""

    images: np.ndarray
    tokens: np.ndarray
    latents: tuple[dict[str, np.ndarray], ...]


class Data(NamedTuple):
    """An experiment's data: the training batches, the evaluation splits and the vocabulary."""

    source: imgtrain.BatchSource
    val: Scenes
    test: Scenes
    vocab: Vocabulary


def render_scenes(
    key: jax.Array, n: int, image_size: int, changed: tuple[str, ...] = (), chunk: int = 256
) -> tuple[np.ndarray, list[str], tuple[dict[str, np.ndarray], ...]]:
    """``n`` scenes of the key: their images (uint8, ``(V, n, s, s, 3)``: the scene's, and with
    ``changed`` a second with those fields redrawn), the first image's captions and every
    view's factor columns."""
    first = sample_factors(key, n)
    scenes = [first]
    if changed:
        scenes.append(change_factors(jax.random.fold_in(key, 1), first, changed))
    images = np.empty((len(scenes), n, image_size, image_size, 3), np.uint8)
    for v, f in enumerate(scenes):
        for start in range(0, n, chunk):
            # Fixed-size chunks (the last one padded by repeating indices) compile once.
            idx = np.minimum(np.arange(start, start + chunk), n - 1)
            rendered = np.asarray(to_uint8(render_batch(take(f, idx), image_size)))
            images[v, start : start + chunk] = rendered[: n - start]
    latents = (*(image_latents(f) for f in scenes), text_latents(first))
    return images, captions(first), latents


@functools.cache
def load_data(data: DataConfig) -> Data:
    """The data of ``data``, rendered or read once and kept for the life of the process: every
    program of a sweep shares it (the compiled training step is keyed by the batch source)."""
    if data.path:
        vocab = load_vocabulary(data.path)
        splits = [load_split(data.path, s, vocab, image_size=data.image_size) for s in SPLITS]
        train, val, test = splits
        mean, std = channel_stats(train.images)
        source = imgtrain.array_source(train.images, train.tokens, mean, std)

        def scenes(split):
            return Scenes(
                split.images[None], split.tokens, (split.image_latents, split.text_latents)
            )

        return Data(source, scenes(val), scenes(test), vocab)
    # Fixed keys, independent of the training seeds: every run sees the same splits (the
    # three-view variant its own).
    key = jax.random.key(2**31 - 2 if data.changed else 2**31 - 1)
    val, test = (
        render_scenes(jax.random.fold_in(key, i), n, data.image_size, data.changed)
        for i, n in ((1, data.n_val), (2, data.n_test))
    )
    if data.fresh_batches:
        vocab = full_vocabulary()
        mean, std = channel_stats(val[0][0])
        source = imgtrain.rendered_source(data.image_size, vocab, mean, std, changed=data.changed)
    else:
        images, texts, _ = render_scenes(
            jax.random.fold_in(key, 0), data.n_train, data.image_size, data.changed
        )
        # As the official loader: the vocabulary of the training captions.
        tokenized = [tokenize(t) for t in texts]
        vocab = Vocabulary.build(tokenized)
        mean, std = channel_stats(images[0])
        source = imgtrain.array_source(images, vocab.encode(tokenized), mean, std)

    def encoded(split):
        images, texts, latents = split
        return Scenes(images, vocab.encode(tokenize(t) for t in texts), latents)

    return Data(source, encoded(val), encoded(test), vocab)


@dataclass
class Trained:
    """The outcome of training a program's runs (leading axis R = runs, in order).

    Attributes:
      states: per device group, its runs' final :class:`~jaxmmcl.imgtxt.train.RunState`.
      group_sizes: runs per group.
      loss_history: ``(R, n_chunks)`` mean training loss per ``log_every`` chunk.
      constant_loss: the loss of a constant encoder (:attr:`StaticConfig.constant_loss`).
      compile_seconds: seconds from the start to the end of the first training step
        (initialisation, compilation and one step; 0 when restored after the last step).
    """

    states: list
    group_sizes: list[int]
    loss_history: np.ndarray
    constant_loss: float
    compile_seconds: float

    @property
    def final_loss(self) -> np.ndarray:
        """``(R,)`` mean loss of the last chunk."""
        return self.loss_history[:, -1]

    @property
    def diverged(self) -> np.ndarray:
        """``(R,)`` whether a logged loss was not finite."""
        return ~np.isfinite(self.loss_history).all(axis=1)

    @property
    def status(self) -> np.ndarray:
        """``(R,)`` each run's :func:`~jaxmmcl.training.run_status`: failed when the last
        chunk's loss is above the first chunk's and above a constant encoder's."""
        history = self.loss_history
        return run_status(self.diverged, history[:, 0], history[:, -1], self.constant_loss)


def _conv_flops(static: StaticConfig) -> float:
    """Multiply-adds x 2 of one image through the ResNet's convolutions."""
    model, size = static.model, static.data.image_size
    side = size // 2 if model.small_stem else size // 4
    flops = 2 * (size // 2) ** 2 * (9 if model.small_stem else 49) * 3 * model.widths[0]
    channels = model.widths[0]
    for stage, (blocks, width) in enumerate(zip(model.stage_sizes, model.widths, strict=True)):
        side = side // 2 if stage > 0 else side
        flops += 2 * side**2 * 9 * width * (channels + width * (2 * blocks - 1))
        channels = width
    return float(flops)


class ImageText:
    """The image/text experiment (the interface of :mod:`jaxmmcl.experiment`)."""

    name = "imgtxt"
    traced_keys = TRACED_KEYS

    def keys(self) -> list[str]:
        """Every valid dotted key."""
        return dotted_keys(SECTIONS, TRACED_KEYS)

    def run_config(self, flat: Mapping[str, Any]) -> RunConfig:
        """A validated run from dotted keys (missing keys take their defaults)."""
        sections, hyper = split_keys(flat, SECTIONS, TRACED_KEYS)
        static = StaticConfig(**{s: cls(**sections[s]) for s, cls in SECTIONS.items()})
        return RunConfig(static, Hyperparams(**hyper), flat.get("seed", 0))

    def defaults(self) -> dict[str, Any]:
        """Every key's default, nested."""
        return RunConfig().to_dict()

    def stack(self, hypers: list[Hyperparams]) -> Hyperparams:
        """Per-run values stacked into ``(R,)`` int32."""
        return Hyperparams(np.asarray([h.encoding_size for h in hypers], np.int32))

    def check(self, static: StaticConfig, mesh: Mesh) -> None:
        """Refuses what the devices cannot run: a precision, or several processes."""
        check_supported(static.train.precision, mesh.devices.flat[0].platform)
        if jax.process_count() > 1:
            raise ConfigError(
                "experiment imgtxt: runs in one process (its runs train side by side on the "
                "local devices); --distributed is for the simulation's sweeps"
            )

    def memory_per_run(self, static: StaticConfig) -> float:
        """Bytes one run needs on its device, roughly: the training split (each device holds
        a copy), parameters with their gradients and Adam moments, and the ResNet's
        activations kept for the backward pass."""
        model, size = static.model, static.data.image_size
        batch = static.train.batch_size
        images = static.data.n_images
        split = 0 if static.data.fresh_batches else images * static.data.n_train * size**2 * 3
        params = sum(
            9 * w * w * 2 * b for b, w in zip(model.stage_sizes, model.widths, strict=True)
        )
        side = size // 2 if model.small_stem else size // 4
        activations = 0
        for stage, (blocks, width) in enumerate(zip(model.stage_sizes, model.widths, strict=True)):
            side = side // 2 if stage > 0 else side
            activations += 2 * blocks * side**2 * width * 4  # conv, batch norm, ReLU, block sum
        return float(split + 16 * params + 4 * images * batch * (activations + 3 * size**2))

    def program_size(self, static: StaticConfig, mesh: Mesh, budget: float) -> int:
        """Runs per program: a device's share is one vmapped call (module docstring), one run
        on CPU, elsewhere as many as fit ``budget`` bytes."""
        if mesh.devices.flat[0].platform == "cpu":
            return mesh.size
        return max(1, int(budget // self.memory_per_run(static))) * mesh.size

    def too_large(self, static: StaticConfig) -> str:
        """The keys that make a run large, for the message that one does not fit."""
        return (
            f"data.image_size={static.data.image_size}, data.n_train={static.data.n_train}, "
            f"train.batch_size={static.train.batch_size}"
        )

    def padded(self, runs: int, mesh: Mesh) -> int:
        """Runs a program of ``runs`` computes: no padding (each device its own group)."""
        return runs

    def describe(self, static: StaticConfig) -> str:
        """The static config in one line (``--dry-run``)."""
        data, model, train = static.data, static.model, static.train
        source = (
            f"data={data.path}"
            if data.path
            else "fresh renders"
            if data.fresh_batches
            else f"n_train={data.n_train}"
        )
        views = f" 3 views (changed: {','.join(data.changed)})" if data.changed else ""
        return (
            f"image/text {data.image_size}px resnet={list(model.stage_sizes)}x"
            f"{list(model.widths)}{' small-stem' if model.small_stem else ''} "
            f"units={model.max_encoding_size} {source}{views} batch={train.batch_size} "
            f"steps={train.steps} lr={train.learning_rate:g} {train.schedule}"
        )

    def prepare(self, static: StaticConfig) -> None:
        """Renders or reads the data (:func:`load_data`, kept for the programs)."""
        load_data(static.data)

    def train_flops(self, static: StaticConfig) -> float:
        """FLOPs of training one run: the ResNet's convolutions, forward and backward."""
        images = static.data.n_images * static.train.batch_size
        return 3 * _conv_flops(static) * images * static.train.steps

    def eval_flops(self, static: StaticConfig) -> float:
        """FLOPs of scoring one run: encoding both splits (the probes are small)."""
        data = static.data
        return _conv_flops(static) * data.n_images * (data.n_val + data.n_test)

    def files(self, static: StaticConfig) -> dict[str, str]:
        """Files the output folder gets: the vocabulary the captions were tokenised with."""
        return {VOCAB_FILE: load_data(static.data).vocab.to_json()}

    def release(self) -> None:
        """Nothing to free between programs: every program reuses the same compiled step."""

    def train(
        self,
        static: StaticConfig,
        seeds: np.ndarray,
        hypers: Hyperparams,
        *,
        progress: Callable[[int, int], None] | None = None,
        on_chunk: Callable[[int, np.ndarray], None] | None = None,
        checkpoint=None,
        mesh: Mesh | None = None,
    ) -> Trained:
        """Trains R runs split evenly over the devices (each device's share as one vmapped
        call, :meth:`program_size`), the devices side by side."""
        start = time.perf_counter()
        first_step: list[float] = []
        data = load_data(static.data)
        model = static.model.encoders(data.vocab.size)
        devices = list(mesh.devices.flat) if mesh is not None else jax.local_devices()
        per_call = math.ceil(len(seeds) / len(devices))
        starts = range(0, len(seeds), per_call)
        sizes = np.asarray(hypers.encoding_size)
        groups = [(np.asarray(seeds[s : s + per_call]), sizes[s : s + per_call]) for s in starts]
        states, history = imgtrain.train_groups(
            groups,
            model,
            static.train,
            data.source,
            progress,
            devices,
            on_chunk=on_chunk,
            checkpoint=checkpoint,
            on_first_step=lambda: first_step.append(time.perf_counter()),
        )
        return Trained(
            states,
            [len(g[0]) for g in groups],
            history,
            static.constant_loss,
            first_step[0] - start if first_step else 0.0,
        )

    def evaluate(
        self, static: StaticConfig, seeds: np.ndarray, hypers: Hyperparams, trained: Trained
    ) -> list[list[dict[str, Any]]]:
        """Every run's result rows, in the order of the runs: one per readout
        (:meth:`StaticConfig.readouts`) x encoder x factor of the encoder's modality. A
        three-view readout's image encoder is scored on both images (pooled, each with its own
        factors); its rows' ``role`` is ``c`` where the subset's views share the factor
        (:func:`~jaxmmcl.imgtxt.threeview.theory`) and the subset trains the encoder."""
        data = load_data(static.data)
        model = static.model.encoders(data.vocab.size)
        diverged = trained.diverged
        status = trained.status
        shared_by = {
            "+".join(VIEWS[v] for v in subset): fields
            for subset, fields in theory(static.data.changed).items()
        }
        out: list[list[dict[str, Any]]] = []
        start = 0
        for state, n in zip(trained.states, trained.group_sizes, strict=True):
            runs = slice(start, start + n)
            start += n
            h_val, h_test = (
                _encodings(state, split, model, data.source) for split in (data.val, data.test)
            )
            # A diverged run's encodings are not finite: scored as zeros, reported as NaN.
            keep = ~diverged[runs][:, None, None]
            h_val = [np.where(keep, h, 0.0) for h in h_val]
            h_test = [np.where(keep, h, 0.0) for h in h_test]
            val_loss = imgtrain.validation_loss(
                h_val, static.train.batch_size, static.train.temperature, data.source
            )
            scored = []
            for subset, dims in static.readouts():
                cut = (lambda h: h) if dims is None else (lambda h, d=list(dims): h[..., d])
                images = len(h_val) - 1
                readouts = {
                    "image": (
                        np.concatenate([cut(h) for h in h_val[:images]], axis=1),
                        np.concatenate([cut(h) for h in h_test[:images]], axis=1),
                        _pooled(data.val.latents[:images]),
                        _pooled(data.test.latents[:images]),
                    ),
                    "text": (
                        cut(h_val[-1]),
                        cut(h_test[-1]),
                        data.val.latents[-1],
                        data.test.latents[-1],
                    ),
                }
                for encoder, factors in ENCODERS:
                    scores = score_factors(
                        *readouts[encoder],
                        factors,
                        key=jax.random.key(0),
                        mlp_epochs=static.eval.mlp_epochs,
                    )
                    trains = encoder == "image" or "text" in subset.split("+")
                    shared = shared_by.get(subset, set()) if trains else set()
                    scored.append((subset, encoder, factors, scores, shared))
            for r in range(n):
                i = runs.start + r
                per_run = {
                    "val_loss": math.nan if diverged[i] else float(val_loss[r]),
                    "loss": float(trained.final_loss[i]),
                    "status": str(status[i]),
                }
                rows = []
                for subset, encoder, factors, scores, shared in scored:
                    for factor, _ in factors:
                        values = {
                            metric: math.nan if diverged[i] else float(v[r])
                            for (name, metric), v in scores.items()
                            if name == factor
                        }
                        role = "c" if FIELD.get(factor) in shared else ""
                        head = {
                            "encoder": encoder,
                            "subset": subset,
                            "factor": factor,
                            "role": role,
                        }
                        rows.append(head | values | per_run)
                out.append(rows)
        return out


def _encodings(state, scenes: Scenes, model: imgtrain.ModelConfig, source) -> list[np.ndarray]:
    """Every view's ``(R, n, k)`` encodings of the scenes: the images', then the text's."""
    views = [
        imgtrain.encode(state, images, scenes.tokens, model, source) for images in scenes.images
    ]
    return [h for h, _ in views] + [views[0][1]]


def _pooled(latents: tuple[dict[str, np.ndarray], ...]) -> dict[str, np.ndarray]:
    """The factor columns of several image views, concatenated as their encodings are."""
    return {c: np.concatenate([lat[c] for lat in latents]) for c in latents[0]}


EXPERIMENT = ImageText()
