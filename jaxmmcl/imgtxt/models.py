"""The image and text encoders (Flax linen), with batch normalisation.

* :class:`ResNetEncoder` -- ResNet with BasicBlocks (the paper: ResNet-18, stages [2, 2, 2, 2]
  of widths 64-512), global average pooling, a 100-unit layer, LeakyReLU, then a linear layer to
  the encoding. Smaller variants (fewer blocks, narrower stages) serve the CPU scale.
* :class:`TextEncoder` -- token ids -> embedding (128, with a bias; equal to the official linear
  layer applied to one-hot tokens) -> three 2-D convolutions over the (sequence, embedding)
  plane seen as a one-channel image (4 x 4, stride 2, padding 1, channels 25, 50, 100, each
  with batch norm and ReLU) -> linear to the encoding. The CPU scale uses a narrower variant
  (smaller embedding and channels).

Initialisation as the official PyTorch models: torchvision's ResNet initialises its convolutions
Kaiming-normal (fan-out, ReLU gain: variance ``2 / (out_channels * kh * kw)``) and its batch
norms to scale 1, shift 0; every ``nn.Linear`` (the ResNet's 100-unit layer, the heads, the text
encoder's embedding of one-hot tokens) and the text encoder's ``nn.Conv2d`` keep PyTorch's
default, weights and biases uniform in ``+-1/sqrt(fan_in)`` (the embedding's fan-in is the
vocabulary size, and it has a bias, as a linear layer on one-hot tokens does).

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

from jaxmmcl.encoders import torch_uniform

EMBEDDING_SIZE = 128
TEXT_CHANNELS = (25, 50, 100)
IMAGE_HIDDEN = 100


# torchvision's ResNet: kaiming_normal_(mode="fan_out", nonlinearity="relu") for convolutions.
_RESNET_CONV = nn.initializers.variance_scaling(2.0, "fan_out", "normal")


def _dense(features: int, fan_in: int) -> nn.Dense:
    """``nn.Dense`` initialised as PyTorch's ``nn.Linear`` with ``fan_in`` inputs."""
    return nn.Dense(features, kernel_init=torch_uniform(fan_in), bias_init=torch_uniform(fan_in))


def _conv(features: int, kernel: int, stride: int = 1, padding: int = 0) -> nn.Conv:
    """A ResNet convolution without bias, initialised as torchvision's."""
    return nn.Conv(
        features,
        (kernel, kernel),
        stride,
        padding=padding,
        use_bias=False,
        kernel_init=_RESNET_CONV,
    )


class BasicBlock(nn.Module):
    """Two 3 x 3 convolutions with batch norm and a residual connection (projected by a 1 x 1
    convolution when the stride or width changes)."""

    width: int
    stride: int

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        norm = lambda: nn.BatchNorm(use_running_average=not train, momentum=0.9)  # noqa: E731
        y = _conv(self.width, 3, self.stride, padding=1)(x)
        y = nn.relu(norm()(y))
        y = _conv(self.width, 3, padding=1)(y)
        y = norm()(y)
        if self.stride != 1 or x.shape[-1] != self.width:
            x = _conv(self.width, 1, self.stride)(x)
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
            x = _conv(self.widths[0], 3, 2, padding=1)(x)
        else:
            x = _conv(self.widths[0], 7, 2, padding=3)(x)
        x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        if not self.small_stem:
            x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
        for stage, (blocks, width) in enumerate(zip(self.stage_sizes, self.widths, strict=True)):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                x = BasicBlock(width, stride)(x, train)
        x = jnp.mean(x, axis=(1, 2))
        x = nn.leaky_relu(_dense(IMAGE_HIDDEN, x.shape[-1])(x))
        return _dense(self.encoding_size, IMAGE_HIDDEN)(x)


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
        # The official nn.Linear(vocab_size, embedding) of one-hot tokens: a row of its weight
        # per token, plus its bias.
        init = torch_uniform(self.vocab_size)
        x = nn.Embed(self.vocab_size, self.embedding_size, embedding_init=init)(tokens)
        x = x + self.param("embedding_bias", init, (self.embedding_size,))
        x = x[..., None]
        for channels in self.channels:
            fan_in = x.shape[-1] * 4 * 4
            x = nn.Conv(
                channels,
                (4, 4),
                2,
                padding=1,
                kernel_init=nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform"),
                bias_init=torch_uniform(fan_in),
            )(x)
            x = nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9)(x))
        x = x.reshape(x.shape[0], -1)
        return _dense(self.encoding_size, x.shape[-1])(x)


def encoding_mask(size: jnp.ndarray, encoding_size: int) -> jnp.ndarray:
    """``(encoding_size,)`` float mask with ones on the first ``size`` units (``size`` may be
    traced)."""
    return (jnp.arange(encoding_size) < size).astype(jnp.float32)
