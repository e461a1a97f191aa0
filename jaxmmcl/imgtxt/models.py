"""The image and text encoders (Flax linen), with batch normalisation.

* :class:`ResNetEncoder` -- ResNet with BasicBlocks (the paper: ResNet-18, stages [2, 2, 2, 2]
  of widths 64-512), global average pooling, a 100-unit layer, LeakyReLU, then a linear layer to
  the encoding. Smaller variants (fewer blocks, narrower stages) serve the CPU scale.
* :class:`TextEncoder` -- token ids -> embedding (128; equal to a linear layer applied to one-hot
  tokens) -> three 2-D convolutions over the (sequence, embedding) plane seen as a one-channel
  image (4 x 4, stride 2, padding 1, channels 25, 50, 100, each with batch norm and ReLU) ->
  linear to the encoding. The CPU scale uses a narrower variant (smaller embedding and
  channels).

Both take ``train``: in training, batch norm normalises by batch statistics and updates its
running averages (the ``batch_stats`` collection, applied with ``mutable=["batch_stats"]``); in
evaluation it uses the running averages. Each encoder outputs ``encoding_size`` units; a run with
a smaller encoding size multiplies the output by a 0/1 mask (:func:`encoding_mask`), which is
the same model as a narrower last layer (the masked units get no gradient), so runs of all sizes
share one program.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax.numpy as jnp

EMBEDDING_SIZE = 128
TEXT_CHANNELS = (25, 50, 100)
IMAGE_HIDDEN = 100


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with batch norm and a residual connection (projected by a 1 x 1
    convolution when the stride or width changes)."""

    width: int
    stride: int

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = nn.Conv(self.width, (3, 3), self.stride, padding=1, use_bias=False)(x)
        y = nn.relu(norm()(y))
        y = nn.Conv(self.width, (3, 3), padding=1, use_bias=False)(y)
        y = norm()(y)
        if self.stride != 1 or x.shape[-1] != self.width:
            x = nn.Conv(self.width, (1, 1), self.stride, use_bias=False)(x)
            x = norm()(x)
        return nn.relu(x + y)


class ResNetEncoder(nn.Module):
    """``(n, s, s, 3)`` normalised images -> ``(n, encoding_size)``.

    Attributes:
      encoding_size: output units.
      stage_sizes: BasicBlocks per stage; ResNet-18: ``(2, 2, 2, 2)``.
      widths: channels per stage; ResNet-18: ``(64, 128, 256, 512)``. The stem has
        ``widths[0]`` channels.
      small_stem: ``False``: ResNet's stem (7 x 7 stride-2 convolution, then 3 x 3 stride-2
        max pooling: 4x downsampling); ``True``: one 3 x 3 stride-2 convolution (2x), which
        keeps small objects in small images resolvable.
    """

    encoding_size: int
    stage_sizes: Sequence[int] = (2, 2, 2, 2)
    widths: Sequence[int] = (64, 128, 256, 512)
    small_stem: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        if self.small_stem:
            x = nn.Conv(self.widths[0], (3, 3), 2, padding=1, use_bias=False)(x)
        else:
            x = nn.Conv(self.widths[0], (7, 7), 2, padding=3, use_bias=False)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        if not self.small_stem:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(width, stride)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.leaky_relu(nn.Dense(IMAGE_HIDDEN)(x))
        return nn.Dense(self.encoding_size)(x)


class TextEncoder(nn.Module):
    """``(n, length)`` token ids -> ``(n, encoding_size)``.

    Attributes:
      encoding_size: output units.
      vocab_size: number of token ids.
      embedding_size: embedding width (the paper: 128).
      channels: channels of the three convolutions (the paper: 25, 50, 100).
    """

    encoding_size: int
    vocab_size: int
    embedding_size: int = EMBEDDING_SIZE
    channels: Sequence[int] = TEXT_CHANNELS

    @nn.compact
    def __call__(self, tokens: jnp.ndarray, train: bool) -> jnp.ndarray:
        x = nn.Embed(self.vocab_size, self.embedding_size)(tokens)[..., None]
        for channels in self.channels:
            x = nn.Conv(channels, (4, 4), 2, padding=1)(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        return nn.Dense(self.encoding_size)(x.reshape(x.shape[0], -1))


def encoding_mask(size: jnp.ndarray, encoding_size: int) -> jnp.ndarray:
    """``(encoding_size,)`` float mask with ones on the first ``size`` units (``size`` may be
    traced)."""
    return (jnp.arange(encoding_size) < size).astype(jnp.float32)
