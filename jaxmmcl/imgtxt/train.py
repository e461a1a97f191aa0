"""Contrastive training of an image and a text encoder, vmapped over runs.

The views are one or two images and the caption. Both images go through the one image
encoder (multiview-crl's multimodal setting: one encoder per modality); with one image the loss
is NT-Xent of image and text, with two it is multiview-crl's loss over the subsets of the three
views (:func:`jaxmmcl.losses.subsets_nt_xent`).

A run is a (seed, encoding size) pair. All runs share one model with ``encoding_size`` =
the largest size of the sweep; a run of size k masks its encodings to the first k units
(:func:`~jaxmmcl.imgtxt.models.encoding_mask`), so any set of runs trains as one
``jit(vmap(...))`` program. Each run draws its own batches from its own key.
Several such programs (groups of runs) train at the same time, one per device
(:func:`train_groups`).

Batches come from a :class:`BatchSource`: gathered from a fixed training split held in device
memory as uint8 images and token ids, in shuffled epochs of full batches, as the official
``DataLoader(shuffle=True, drop_last=True)`` (:func:`array_source`); or, as a declared option,
rendered on the device from freshly sampled factors inside every training step
(:func:`rendered_source`, no files, no fixed set). Either way the input pipeline is part of the
compiled step, and a run's batches are a function of its data key and the step number.

Batch normalisation: each run has its own ``batch_stats``; the training step applies the
encoders with ``mutable=["batch_stats"]`` and carries the updated running averages in the
state. Under ``vmap`` over runs, batch statistics are per run (the batch axis is inside the
vmapped function), exactly as if every run were trained alone.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxmmcl.checkpoints import Checkpoint
from jaxmmcl.config import PRECISIONS, ConfigError
from jaxmmcl.imgtxt.factors import change_factors, sample_factors
from jaxmmcl.imgtxt.models import (
    EMBEDDING_SIZE,
    TEXT_CHANNELS,
    ResNetEncoder,
    TextEncoder,
    encoding_mask,
)
from jaxmmcl.imgtxt.render import render_batch
from jaxmmcl.imgtxt.text import Vocabulary, caption_tokens
from jaxmmcl.losses import LOSSES
from jaxmmcl.precision import EVALUATION, check_supported, matmul_precision
from jaxmmcl.training import chunk_lengths, make_optimizer


@dataclass(frozen=True)
class ModelConfig:
    """Encoder architecture (static).

    Attributes:
      encoding_size: units of both encoders' outputs (the largest encoding size of the runs).
      vocab_size: the text encoder's number of token ids.
      stage_sizes, widths: the ResNet's BasicBlocks and channels per stage.
      embedding_size, text_channels: the text encoder's embedding width and convolution
        channels.
      small_stem: the ResNet's stem (see :class:`~jaxmmcl.imgtxt.models.ResNetEncoder`).
    """

    encoding_size: int
    vocab_size: int
    stage_sizes: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    embedding_size: int = EMBEDDING_SIZE
    text_channels: tuple[int, ...] = TEXT_CHANNELS
    small_stem: bool = False

    def image_encoder(self) -> ResNetEncoder:
        return ResNetEncoder(self.encoding_size, self.stage_sizes, self.widths, self.small_stem)

    def text_encoder(self) -> TextEncoder:
        return TextEncoder(
            self.encoding_size, self.vocab_size, self.embedding_size, self.text_channels
        )


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation (static).

    Attributes:
      batch_size: pairs per step.
      steps: optimiser steps.
      learning_rate: Adam's step size (peak value with ``schedule="cosine"``).
      schedule: ``"constant"`` or ``"cosine"`` (decay to 0 over the steps after the warm-up).
      warmup_steps: steps of linear warm-up from ``learning_rate / warmup_steps`` to
        ``learning_rate`` before the schedule (0: none, the official code's choice).
      clip_norm: gradients are clipped to this global L2 norm.
      temperature: NT-Xent temperature.
      log_every: steps per reported mean loss (and per progress update).
      precision: how the training step's float32 products and convolutions compute
        (:mod:`jaxmmcl.precision`; ``"float32"`` by default). The official PyTorch code
        computes its matrix products in float32; its cuDNN convolutions may use TF32, which
        PyTorch allows for convolutions by default.
    """

    batch_size: int = 256
    steps: int = 100_000
    learning_rate: float = 1e-5
    schedule: str = "constant"
    warmup_steps: int = 0
    clip_norm: float = 2.0
    temperature: float = 1.0
    log_every: int = 100
    precision: str = "float32"

    def __post_init__(self):
        for name in ("batch_size", "steps", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"train.{name}: expected an integer >= 1, got {value!r}")
        if isinstance(self.warmup_steps, bool) or not isinstance(self.warmup_steps, int):
            raise ConfigError(f"train.warmup_steps: expected an integer, got {self.warmup_steps!r}")
        if not 0 <= self.warmup_steps < self.steps:
            raise ConfigError(
                f"train.warmup_steps: expected 0 <= warmup_steps < train.steps ({self.steps}), "
                f"got {self.warmup_steps!r}"
            )
        if self.batch_size < 2:
            raise ConfigError(f"train.batch_size: expected >= 2, got {self.batch_size!r}")
        if self.schedule not in ("constant", "cosine"):
            raise ConfigError(f"train.schedule: expected constant or cosine, got {self.schedule!r}")
        for name in ("learning_rate", "clip_norm", "temperature"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not value > 0 or not np.isfinite(value):
                raise ConfigError(f"train.{name}: expected a number > 0, got {value!r}")
        if self.precision not in PRECISIONS:
            raise ConfigError(
                f"train.precision: expected one of {', '.join(PRECISIONS)}, got {self.precision!r}"
            )


@dataclass(frozen=True, eq=False)
class BatchSource:
    """Where training batches come from (hashed by identity: it keys compiled programs).

    Attributes:
      arrays: device arrays the batches are drawn from (a pytree; empty when rendering).
      draw: ``draw(arrays, key, step, n) -> (images (V, n, s, s, 3) float32 in [0, 1],
        tokens (n, T))``: the batch of training step ``step`` of the run whose data key is
        ``key``, V images of each scene; traceable.
      mean, std: per-channel normalisation of the images, ``(3,)`` each.
      image_size, max_length: shapes of a batch.
      n_images: V, the images of a scene (1, or 2 for the three-view experiment).
    """

    arrays: Any
    draw: Callable
    mean: np.ndarray
    std: np.ndarray
    image_size: int
    max_length: int
    n_images: int = 1

    @property
    def loss(self):
        """The views' loss: NT-Xent of image and text, or multiview-crl's over the subsets of
        three views (:data:`jaxmmcl.losses.LOSSES`)."""
        return LOSSES["ntxent" if self.n_images == 1 else "subsets_ntxent"]


def rendered_source(
    image_size: int,
    vocab: Vocabulary,
    mean,
    std,
    *,
    causal_hue: bool = True,
    changed: tuple[str, ...] = (),
) -> BatchSource:
    """Fresh renders: every step a batch of newly sampled factors, rendered and captioned on
    the device (no fixed training set). With ``changed`` (field names of
    :class:`~jaxmmcl.imgtxt.factors.Factors`) a second image of each scene is rendered with
    those fields redrawn (:func:`~jaxmmcl.imgtxt.factors.change_factors`)."""

    def draw(arrays, key, step, n):
        step_key = jax.random.fold_in(key, step)
        f = sample_factors(step_key, n, causal_hue=causal_hue)
        scenes = [f]
        if changed:
            second = jax.random.fold_in(step_key, 1)
            scenes.append(change_factors(second, f, changed, causal_hue=causal_hue))
        images = jnp.stack([render_batch(g, image_size) for g in scenes])
        return images, caption_tokens(f, vocab)

    return BatchSource(
        {},
        draw,
        np.asarray(mean),
        np.asarray(std),
        image_size,
        vocab.max_length,
        2 if changed else 1,
    )


def array_source(images: np.ndarray, tokens: np.ndarray, mean, std) -> BatchSource:
    """Shuffled epochs of full batches of a split held in device memory.

    As the official ``DataLoader(shuffle=True, drop_last=True)``: epoch e visits the split in
    the order of a permutation drawn from ``fold_in(key, e)``, in ``len // n`` batches of ``n``
    scenes, dropping the last ``len % n``.

    Args:
      images: ``(N, s, s, 3)`` uint8, or ``(V, N, s, s, 3)`` for V images of every scene.
      tokens: ``(N, T)`` int32.
      mean, std: per-channel normalisation, ``(3,)`` each.
    """
    images = images if images.ndim == 5 else images[None]

    def draw(arrays, key, step, n):
        size = arrays["tokens"].shape[0]
        per_epoch = size // n
        epoch, batch = step // per_epoch, step % per_epoch
        order = jax.random.permutation(jax.random.fold_in(key, epoch), size)
        idx = jax.lax.dynamic_slice_in_dim(order, batch * n, n)
        return arrays["images"][:, idx].astype(jnp.float32) / 255.0, arrays["tokens"][idx]

    arrays = {"images": jnp.asarray(images), "tokens": jnp.asarray(tokens)}
    return BatchSource(
        arrays,
        draw,
        np.asarray(mean),
        np.asarray(std),
        images.shape[2],
        tokens.shape[1],
        images.shape[0],
    )


@struct.dataclass
class RunState:
    """Training state of one run (a leading run axis when stacked).

    Attributes:
      params: ``{"image": ..., "text": ...}`` encoder parameters.
      batch_stats: ``{"image": ..., "text": ...}`` batch-norm running averages.
      opt_state: Adam state.
      key: the run's data key (its batches are a function of this key and the step).
      step: training steps taken (int32 scalar).
      size: the run's encoding size (int32 scalar; units past it are masked).
    """

    params: dict
    batch_stats: dict
    opt_state: optax.OptState
    key: jax.Array
    step: jnp.ndarray
    size: jnp.ndarray


def _optimizer(train: TrainConfig) -> optax.GradientTransformation:
    # The numerical simulation's optimiser: Adam after clipping, the config's schedule.
    return make_optimizer(train.learning_rate, train)


def _normalise(images, source: BatchSource):
    return (images - jnp.asarray(source.mean)) / jnp.asarray(source.std)


def init_run(seed, size, model: ModelConfig, train: TrainConfig, source: BatchSource) -> RunState:
    """Initial state of the run ``(seed, size)``; its keys derive from the seed alone."""
    key = jax.random.key(seed)
    k_img, k_txt, k_data = jax.random.split(key, 3)
    images = jnp.zeros((1, source.image_size, source.image_size, 3))
    tokens = jnp.zeros((1, source.max_length), jnp.int32)
    v_img = model.image_encoder().init(k_img, images, train=False)
    v_txt = model.text_encoder().init(k_txt, tokens, train=False)
    params = {"image": v_img["params"], "text": v_txt["params"]}
    stats = {"image": v_img["batch_stats"], "text": v_txt["batch_stats"]}
    opt_state = _optimizer(train).init(params)
    zero = jnp.zeros((), jnp.int32)
    return RunState(params, stats, opt_state, k_data, zero, jnp.asarray(size, jnp.int32))


def _apply(model: ModelConfig, params, stats, images, tokens, train: bool):
    """Both encoders' outputs (unmasked) and, in training, the updated batch stats."""
    img, txt = model.image_encoder(), model.text_encoder()
    if not train:
        h1 = img.apply({"params": params["image"], "batch_stats": stats["image"]}, images, False)
        h2 = txt.apply({"params": params["text"], "batch_stats": stats["text"]}, tokens, False)
        return h1, h2, stats
    h1, s1 = img.apply(
        {"params": params["image"], "batch_stats": stats["image"]},
        images,
        True,
        mutable=["batch_stats"],
    )
    h2, s2 = txt.apply(
        {"params": params["text"], "batch_stats": stats["text"]},
        tokens,
        True,
        mutable=["batch_stats"],
    )
    return h1, h2, {"image": s1["batch_stats"], "text": s2["batch_stats"]}


def train_step(
    state: RunState, arrays, model: ModelConfig, train: TrainConfig, source: BatchSource
) -> tuple[RunState, jnp.ndarray]:
    """One optimiser step of one run on its next batch; returns the new state and the loss.

    The step's products and convolutions compute at ``train.precision``.
    """
    images, tokens = source.draw(arrays, state.key, state.step, train.batch_size)
    # Every image of the batch through the image encoder at once (batch statistics over all).
    images = _normalise(images.reshape(-1, *images.shape[2:]), source)
    mask = encoding_mask(state.size, model.encoding_size)

    def loss_fn(params):
        h_images, h_text, stats = _apply(model, params, state.batch_stats, images, tokens, True)
        views = (*jnp.split(h_images * mask, source.n_images), h_text * mask)
        return source.loss.apply(views, (), train.temperature, None, None), stats

    with matmul_precision(train.precision):
        (loss, stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = _optimizer(train).update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    new = RunState(params, stats, opt_state, state.key, state.step + 1, state.size)
    return new, loss


def over_runs(fn: Callable, in_axes: tuple, n_runs: int) -> Callable:
    """``jax.vmap(fn, in_axes)`` for several runs; for one run, ``fn`` applied to the run's
    slice with the run axis restored on the outputs.

    XLA's CPU backend turns convolutions with vmapped weights into grouped convolutions, whose
    gradients it runs an order of magnitude slower than plain ones (measured: 28 s against
    3 s per step of one run); a single run therefore bypasses vmap.
    """
    if n_runs > 1:
        return jax.vmap(fn, in_axes=in_axes)

    def single(*args):
        args = [
            jax.tree.map(lambda a: a[0], x) if axis == 0 else x
            for x, axis in zip(args, in_axes, strict=True)
        ]
        return jax.tree.map(lambda a: a[None], fn(*args))

    return single


@functools.cache
def _programs(model: ModelConfig, train: TrainConfig, source: BatchSource, n_runs: int):
    init = jax.jit(
        over_runs(lambda seed, size: init_run(seed, size, model, train, source), (0, 0), n_runs)
    )
    step = jax.jit(
        over_runs(lambda s, a: train_step(s, a, model, train, source), (0, None), n_runs),
        donate_argnums=0,
    )
    return init, step


def train_runs(
    seeds: np.ndarray,
    sizes: np.ndarray,
    model: ModelConfig,
    train: TrainConfig,
    source: BatchSource,
) -> tuple[RunState, np.ndarray]:
    """Trains R runs as one vmapped program (:func:`train_groups` with one group).

    Args:
      seeds: ``(R,)`` integer seeds.
      sizes: ``(R,)`` encoding sizes, each in ``[1, model.encoding_size]``.
      model, train: static configs.
      source: the batches.

    Returns:
      The final states (leading axis R) and the ``(R, n_chunks)`` mean loss of each
      ``log_every`` steps.
    """
    states, history = train_groups([(seeds, sizes)], model, train, source)
    return states[0], history


def train_groups(
    groups: Sequence[tuple[np.ndarray, np.ndarray]],
    model: ModelConfig,
    train: TrainConfig,
    source: BatchSource,
    progress: Callable[[int, int], None] | None = None,
    devices: Sequence[jax.Device] | None = None,
    *,
    on_chunk: Callable[[int, np.ndarray], None] | None = None,
    checkpoint: Checkpoint | None = None,
    on_first_step: Callable[[], None] | None = None,
) -> tuple[list[RunState], np.ndarray]:
    """Trains several groups of runs at the same time, group g on device g.

    Each group is one vmapped program (:func:`over_runs`) on its own device, with its own copy
    of the source's arrays; the groups advance in lock step, one asynchronously dispatched step
    each in turn, so the devices compute concurrently. On a CPU host with one JAX device per
    core (:func:`jaxmmcl.distributed.use_cpu_cores`) this trains two single-run groups 1.3x
    faster than one after another (``benchmarks/RESULTS.md``). A run's result depends only on
    its seed and size, not on its group or device.

    Steps are dispatched one compiled step at a time rather than as a ``lax.scan``: XLA's CPU
    backend runs convolutions inside a loop body several times slower than at the top level
    (measured: 0.8 against 0.11 CPU seconds per step of the CPU-scale model), and dispatch is
    asynchronous, so the host loop costs nothing on an accelerator.

    Args:
      groups: ``(seeds, sizes)`` per group, ``(R_g,)`` each (as in :func:`train_runs`).
      model, train: static configs.
      source: the batches.
      progress: called as ``progress(steps_done, train.steps)`` after every ``log_every``
        steps (each run has then taken ``steps_done`` steps).
      devices: where the groups run; default ``jax.local_devices()``. At least as many as
        groups.
      on_chunk: called as ``on_chunk(step, losses)`` after every ``log_every`` steps with the
        chunk's mean loss of every run, ``(R,)`` (groups in order); after a restore, first
        once for every restored chunk.
      checkpoint: where to resume from and save to (at the end of a chunk); None trains from
        scratch, unsaved.
      on_first_step: called once the first step of every group has finished (the programs
        are then compiled; the caller may time that).

    Returns:
      The final states of every group (leading axis R_g) and the ``(R, n_chunks)`` mean loss
      of each ``log_every`` steps of every run, groups in order.
    """
    devices = list(jax.local_devices() if devices is None else devices)
    check_supported(train.precision, devices[0].platform)
    if "tokens" in source.arrays and len(source.arrays["tokens"]) < train.batch_size:
        raise ConfigError(
            f"training split: {len(source.arrays['tokens'])} pairs, fewer than one batch of "
            f"{train.batch_size}"
        )
    if not 1 <= len(groups) <= len(devices):
        raise ConfigError(f"train_groups: {len(groups)} groups for {len(devices)} devices")
    for _, sizes in groups:
        bad = [int(k) for k in np.ravel(sizes) if not 1 <= k <= model.encoding_size]
        if bad:
            raise ConfigError(f"encoding size {bad[0]}: expected 1 to {model.encoding_size}")
    states, arrays, steps = [], [], []
    for (seeds, sizes), device in zip(groups, devices, strict=False):
        init, step = _programs(model, train, source, len(seeds))
        # Committed inputs place each group's programs on its own device.
        put = functools.partial(jax.device_put, device=device)
        states.append(init(put(np.asarray(seeds, np.uint32)), put(np.asarray(sizes, np.int32))))
        arrays.append(put(source.arrays))
        steps.append(step)
    lengths = chunk_lengths(train)
    history = np.full((sum(len(s) for s, _ in groups), len(lengths)), np.nan, np.float32)
    done = 0
    restored = checkpoint.restore(states, history) if checkpoint is not None else None
    if restored is not None:
        states, history = list(restored[0]), restored[1]
        done = int(np.asarray(states[0].step)[0])
        for c, end in enumerate(itertools.accumulate(lengths)):
            if end <= done and on_chunk is not None:
                on_chunk(end, history[:, c])
        if progress is not None:
            progress(done, train.steps)
    for c, (n_steps, end) in enumerate(zip(lengths, itertools.accumulate(lengths), strict=True)):
        if end <= done:
            continue
        losses: list[list[jax.Array]] = [[] for _ in groups]
        for _ in range(n_steps):
            for g in range(len(groups)):
                states[g], loss = steps[g](states[g], arrays[g])
                losses[g].append(loss)
            if on_first_step is not None:
                jax.block_until_ready(losses)
                on_first_step()
                on_first_step = None
        history[:, c] = np.concatenate(
            [np.mean(np.stack([np.asarray(x) for x in chunk]), 0) for chunk in losses]
        )
        done = end
        if on_chunk is not None:
            on_chunk(end, history[:, c])
        if checkpoint is not None:
            checkpoint.maybe_save(done, states, history, force=done == train.steps)
        if progress is not None:
            progress(done, train.steps)
    return states, history


@functools.partial(jax.jit, static_argnums=(3, 4, 5))
def _encode_batch(state: RunState, images, tokens, model: ModelConfig, source, n_runs: int):
    def one(s):
        with matmul_precision(EVALUATION):
            h1, h2, _ = _apply(
                model, s.params, s.batch_stats, _normalise(images, source), tokens, False
            )
        mask = encoding_mask(s.size, model.encoding_size)
        return h1 * mask, h2 * mask

    return over_runs(one, (0,), n_runs)(state)


def encode(
    state: RunState,
    images: np.ndarray,
    tokens: np.ndarray,
    model: ModelConfig,
    source: BatchSource,
    batch_size: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """Encodings of a data set by every run (evaluation mode: batch-norm running averages).

    Args:
      state: R stacked run states.
      images: ``(n, s, s, 3)`` float in [0, 1] or uint8.
      tokens: ``(n, T)`` int32.

    Returns:
      Image and text encodings, ``(R, n, model.encoding_size)`` each, zero past each run's size.
    """
    n, n_runs = images.shape[0], state.size.shape[0]
    scale = 255.0 if images.dtype == np.uint8 else 1.0
    out1, out2 = [], []
    for start in range(0, n, batch_size):
        # Fixed-size batches (the last padded by repetition) compile once.
        idx = np.minimum(np.arange(start, start + batch_size), n - 1)
        x = jnp.asarray(images[idx], jnp.float32) / scale
        h1, h2 = _encode_batch(state, x, jnp.asarray(tokens[idx]), model, source, n_runs)
        keep = min(batch_size, n - start)
        out1.append(np.asarray(h1[:, :keep]))
        out2.append(np.asarray(h2[:, :keep]))
    return np.concatenate(out1, axis=1), np.concatenate(out2, axis=1)


def validation_loss(
    hs: Sequence[np.ndarray], batch_size: int, temperature: float, source: BatchSource
) -> np.ndarray:
    """The training loss (``source.loss``) averaged over consecutive full batches of
    ``batch_size`` scenes, per run.

    Args:
      hs: every view's ``(R, n, k)`` encodings (from :func:`encode`), the images' first and
        the text's last; ``n >= batch_size``.

    Returns:
      ``(R,)`` float.
    """
    n_batches = hs[0].shape[1] // batch_size
    if n_batches == 0:
        raise ConfigError(f"validation split: fewer pairs ({hs[0].shape[1]}) than a batch")
    cut = n_batches * batch_size
    split = lambda h: h[:, :cut].reshape(h.shape[0], n_batches, batch_size, -1)  # noqa: E731
    loss = jax.vmap(jax.vmap(lambda *views: source.loss.apply(views, (), temperature, None, None)))
    return np.asarray(loss(*map(split, hs))).mean(axis=1)
