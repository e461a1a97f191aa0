"""How float32 matrix products are computed: ``train.precision`` and the evaluation's policy.

The official code computes in full float32 (PyTorch 1.13 leaves TF32 off for matrix products).
XLA's default for float32 products on NVIDIA GPUs is one TF32 pass (10-bit mantissas), which
moved a Table 1 cell from 0.91 to 0.98 in our own GPU run. So every product of the training
step (encoders and loss) follows ``train.precision``, ``"float32"`` by default, and evaluation
(encodings, validation loss, regressors) always computes in float32 (the kernel ridge in
float64). On CPU devices float32 products are exact float32 whatever the setting, except
``"bfloat16"``, which rounds the inputs.

Names (``train.precision``) and what XLA computes:

* ``"float32"``: ``Precision.HIGHEST``, products in full float32;
* ``"tf32x3"``: ``DotAlgorithmPreset.TF32_TF32_F32_X3``, three TF32 passes that together carry
  about float32's mantissa (GPU only);
* ``"tf32"``: ``DotAlgorithmPreset.TF32_TF32_F32``, one TF32 pass (GPU only);
* ``"bfloat16"``: ``DotAlgorithmPreset.BF16_BF16_F32``, bfloat16 inputs, float32 accumulation.
"""

from __future__ import annotations

import contextlib

import jax

from jaxmmcl.config import ConfigError

# train.precision -> the value of jax.default_matmul_precision.
XLA_PRECISION = {
    "float32": "highest",
    "tf32x3": "TF32_TF32_F32_X3",
    "tf32": "TF32_TF32_F32",
    "bfloat16": "BF16_BF16_F32",
}
# Precisions XLA's CPU backend rejects ("not supported by dot_general on CPU").
GPU_ONLY = ("tf32x3", "tf32")
# What evaluation computes in, whatever the training precision.
EVALUATION = "float32"


def matmul_precision(name: str) -> contextlib.AbstractContextManager:
    """A context in which traced float32 products compute at precision ``name``.

    Use it around the code being traced (inside a jitted function, or around its first call);
    the precision becomes part of the traced products, and their transposes inherit it.
    """
    return jax.default_matmul_precision(XLA_PRECISION[name])


def check_supported(name: str, platform: str, key: str = "train.precision") -> None:
    """Raises :class:`ConfigError` when devices of ``platform`` cannot compute ``name``."""
    if name in GPU_ONLY and platform != "gpu":
        raise ConfigError(
            f"{key}: {name!r} needs a GPU (devices here: {platform}); use float32 or bfloat16"
        )
