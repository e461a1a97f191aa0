"""Scores of trained encoders per ground-truth factor: predictors fitted on the validation
split's encodings, scored on the test split's.

Each encoding is first standardised with the validation split's statistics, as the paper's
evaluation does (scikit-learn's ``StandardScaler``). Continuous factors: R^2 of linear
regression (``r2_linear``) and of cross-validated RBF kernel ridge (``r2_nonlinear``, the
numerical simulation's grid). Discrete factors: accuracy of logistic regression
(``acc_linear``) and of a one-hidden-layer MLP classifier (``acc_nonlinear``, trained as
scikit-learn's ``MLPClassifier(max_iter=1000)`` of the paper's evaluation).
All predictors come from :mod:`jaxmmcl.evaluation`; every run is scored with the same compiled
programs, since encodings are padded with zeros to one width (zero columns change neither
distances nor least-squares fits, and get zero weight under an L2 penalty).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from jaxmmcl.config import ConfigError
from jaxmmcl.evaluation import (
    kernel_ridge_r2_grid,
    linear_r2,
    logistic_accuracy,
    mlp_accuracy,
    standardise,
)

# (modality, factor column, kind): the factors scored for each encoding. Text colour is scored
# by its name's index; object_zpos is constant and not scored.
IMAGE_FACTORS = (
    ("object_shape", "discrete"),
    ("object_xpos", "discrete"),
    ("object_ypos", "discrete"),
    ("object_color", "continuous"),
    ("object_alpharot", "continuous"),
    ("object_betarot", "continuous"),
    ("object_gammarot", "continuous"),
    ("spotlight_pos", "continuous"),
    ("spotlight_color", "continuous"),
    ("background_color", "continuous"),
)
TEXT_FACTORS = (
    ("object_shape", "discrete"),
    ("object_xpos", "discrete"),
    ("object_ypos", "discrete"),
    ("object_color_index", "discrete"),
    ("text_phrasing", "discrete"),
)


def dense_labels(fit: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Relabels discrete values as ``0..c-1`` by the classes present in the fit set.

    Test values absent from the fit set become -1 (never predicted, so counted as errors).

    Returns:
      Fit labels ``(n_fit,)``, test labels ``(n_test,)`` (int32) and the number of classes c.
    """
    classes = np.unique(fit)
    lookup = {v: i for i, v in enumerate(classes.tolist())}
    fit_labels = np.array([lookup[v] for v in fit.tolist()], np.int32)
    test_labels = np.array([lookup.get(v, -1) for v in test.tolist()], np.int32)
    return fit_labels, test_labels, len(classes)


def score_factors(
    h_fit: np.ndarray,
    h_test: np.ndarray,
    latents_fit: dict[str, np.ndarray],
    latents_test: dict[str, np.ndarray],
    factors: tuple[tuple[str, str], ...],
    *,
    key: jax.Array,
    mlp_epochs: int = 1000,
) -> dict[tuple[str, str], np.ndarray]:
    """Scores of R runs' encodings for each factor.

    Args:
      h_fit: ``(R, n_fit, k)`` encodings of the validation split (standardised here, and the
        test split's with its statistics).
      h_test: ``(R, n_test, k)`` encodings of the test split.
      latents_fit, latents_test: factor columns, ``(n_fit,)`` and ``(n_test,)``.
      factors: ``(column, "continuous" | "discrete")`` pairs.
      key: key of the MLP classifiers' initialisation.
      mlp_epochs: the most epochs of the MLP classifier (:func:`~jaxmmcl.evaluation.mlp_fit`).

    Returns:
      ``{(factor, metric): (R,) scores}``.
    """
    for name, _ in factors:
        if name not in latents_fit or name not in latents_test:
            raise ConfigError(f"evaluation: factor {name!r} missing from the latents")
    h_fit, h_test = standardise(jnp.asarray(h_fit), jnp.asarray(h_test))
    out = {}
    continuous = [name for name, kind in factors if kind == "continuous"]
    if continuous:
        y_fit = np.stack([latents_fit[c] for c in continuous], -1).astype(np.float64)
        y_test = np.stack([latents_test[c] for c in continuous], -1).astype(np.float64)
        runs = h_fit.shape[0]
        tile = lambda y: np.broadcast_to(y, (runs, *y.shape))  # noqa: E731
        kr = kernel_ridge_r2_grid(h_fit, tile(y_fit), h_test, tile(y_test), (1,) * len(continuous))
        lin = jax.vmap(jax.vmap(linear_r2, in_axes=(None, 1, None, 1)), in_axes=(0, None, 0, None))
        r2 = np.asarray(lin(h_fit, y_fit, h_test, y_test))
        for j, name in enumerate(continuous):
            out[(name, "r2_linear")] = r2[:, j]
            out[(name, "r2_nonlinear")] = kr.r2[:, j]
    for name, kind in factors:
        if kind != "discrete":
            continue
        fit, test, n_classes = dense_labels(latents_fit[name], latents_test[name])
        if n_classes < 2:
            raise ConfigError(f"evaluation: factor {name!r} has one class in the fit split")
        logistic = jax.vmap(
            lambda a, b: logistic_accuracy(a, fit, b, test, n_classes)  # noqa: B023
        )
        mlp = jax.vmap(
            lambda a, b: mlp_accuracy(key, a, fit, b, test, n_classes, epochs=mlp_epochs)  # noqa: B023
        )
        out[(name, "acc_linear")] = np.asarray(logistic(h_fit, h_test))
        out[(name, "acc_nonlinear")] = np.asarray(mlp(h_fit, h_test))
    return out
