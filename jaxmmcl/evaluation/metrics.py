"""The metrics a sweep can ask for (``eval.metrics``), each scoring every factor from every
readout of a run's encodings: the registry :data:`METRICS`.

A metric is a :class:`Metric`: the result columns it fills and how it computes them, on the
device inside a run's evaluation program (``device``: a pure function of one run's encodings,
vmapped over its readouts) or on the host over all runs at once (``host``). Both return, per
column, ``(..., readouts, factors)`` scores, and with ``per_latent`` also ``(..., readouts,
components)`` scores of every factor component alone (the result rows with a ``latent``).

* ``r2_linear``: least squares with intercept, R^2 on the test set, averaged uniformly over a
  factor's components (scikit-learn's ``LinearRegression`` and ``r2_score``).
* ``r2_nonlinear``: the paper's cross-validated RBF kernel ridge (``eval.nonlinear:
  kernel_ridge``, on the host) or scikit-learn's ``MLPRegressor(max_iter=1000)`` fitted per
  factor (``mlp``).
* ``accuracy``: for discrete factors, test accuracy per component with the class index as
  the label, logistic regression (``acc_linear``) and an MLP classifier trained as
  scikit-learn's ``MLPClassifier`` (``acc_nonlinear``); NaN for continuous factors.
* ``mcc``: the mean correlation coefficient between a factor's components and the readout's
  dimensions on the test set, optimally matched (``eval.mcc``: Pearson or Spearman;
  :func:`jaxmmcl.evaluation.mcc.mcc`). Without ``per_latent`` rows.

A new metric is one function and one entry. Device functions call LAPACK (least squares, the
logistic regression's Newton solves) one readout and one component at a time (``lax.map``, not
``vmap``): XLA:CPU runs a batched LAPACK call in parallel on its thread pool, and when every
thread of the pool runs a device's program (one device per core, as the CLI sets up) the
programs wait on each other forever (seen: 28 readouts of 1,024 samples on 2 devices).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy.optimize import linear_sum_assignment

from jaxmmcl.evaluation.classification import logistic_accuracy, mlp_accuracy
from jaxmmcl.evaluation.kernel_ridge import kernel_ridge_r2_grid
from jaxmmcl.evaluation.linear import block_means, fit_linear, r2_score
from jaxmmcl.evaluation.mcc import correlation_matrix
from jaxmmcl.evaluation.mlp import mlp_r2
from jaxmmcl.latents import decode_classes


class Targets(NamedTuple):
    """What is scored, static.

    Attributes:
      sizes: the scored factors' sizes, in the column order of the targets.
      discrete: per factor, whether it holds classes (scored by accuracy too).
      n_classes: classes per discrete component.
      epochs: the most epochs of the MLP probes (``eval.mlp_epochs``).
      nonlinear: ``eval.nonlinear``.
      mcc: ``eval.mcc`` (``pearson`` or ``spearman``).
      per_latent: also score every component alone.
    """

    sizes: tuple[int, ...]
    discrete: tuple[bool, ...]
    n_classes: int
    epochs: int
    nonlinear: str
    mcc: str
    per_latent: bool


Scores = dict[str, jnp.ndarray]
# Streams derived from a run's evaluation key (after its fit/test split, which must stay as it
# is, so that scores do not change): validation batches (1), MLP classifier (2), MLP regressor.
CLASSIFIER_STREAM = 2
REGRESSOR_STREAM = 3


def linear(key, h_fit, h_test, y_fit, y_test, targets: Targets) -> Scores:
    """``r2_linear`` for readouts ``h_fit`` ``(r, n_fit, w)``, ``h_test`` ``(r, n_test, w)``."""
    del key

    def one(h_fit, h_test):
        w, b = fit_linear(h_fit, y_fit)
        return r2_score(y_test, h_test @ w + b)

    per_column = jax.lax.map(lambda h: one(*h), (h_fit, h_test))  # LAPACK: one at a time
    out = {"r2_linear": block_means(per_column, targets.sizes)}
    if targets.per_latent:
        # Least squares decouples over target columns: each is the component fitted alone.
        out["r2_linear@latent"] = per_column
    return out


def _mlp_blocks(key, h_fit, h_test, y_fit, y_test, sizes, epochs):
    """``(r, len(sizes))`` MLP-regressor R^2, one regressor per readout and block, as the
    official evaluation fits ``MLPRegressor(max_iter=1000)`` on each block's columns: the blocks
    are padded to the largest size and fitted side by side (``vmap``), the padding masked out
    of each fit."""
    width = max(sizes)
    bounds = np.cumsum((0, *sizes))

    def padded(y):
        return jnp.stack(
            [
                jnp.pad(y[:, lo:hi], ((0, 0), (0, width - (hi - lo))))
                for lo, hi in itertools.pairwise(bounds)
            ]
        )

    y_fit, y_test = padded(y_fit), padded(y_test)
    masks = jnp.asarray(np.arange(width)[None, :] < np.asarray(sizes)[:, None], jnp.float32)
    keys = jax.random.split(key, len(sizes))

    def one(h_fit, h_test):
        def block(k, yf, yt, mask):
            r2 = mlp_r2(k, h_fit, yf, h_test, yt, mask, epochs=epochs)
            return jnp.sum(r2 * mask) / jnp.sum(mask)

        return jax.vmap(block)(keys, y_fit, y_test, masks)

    return jax.vmap(one)(h_fit, h_test)


def nonlinear_mlp(key, h_fit, h_test, y_fit, y_test, targets: Targets) -> Scores:
    """``r2_nonlinear`` by MLP regressors (``eval.nonlinear: mlp``); nothing otherwise."""
    if targets.nonlinear != "mlp":
        return {}
    key = jax.random.fold_in(key, REGRESSOR_STREAM)
    out = {
        "r2_nonlinear": _mlp_blocks(
            key, h_fit, h_test, y_fit, y_test, targets.sizes, targets.epochs
        )
    }
    if targets.per_latent:
        units = (1,) * sum(targets.sizes)
        out["r2_nonlinear@latent"] = _mlp_blocks(
            jax.random.fold_in(key, 1), h_fit, h_test, y_fit, y_test, units, targets.epochs
        )
    return out


def nonlinear_kernel_ridge(h_fit, h_test, y_fit, y_test, targets: Targets) -> Scores:
    """``r2_nonlinear`` by the cross-validated kernel ridge (``eval.nonlinear: kernel_ridge``),
    on the host: ``h_fit`` ``(R, r, n_fit, w)``, ``y_fit`` ``(R, n_fit, t)``.

    Every readout of every run is one regression problem, solved one after another (a
    problem's scores then never depend on the others; a loop also measured faster than
    batches of 30 at ``n_fit`` = 1024).
    """
    if targets.nonlinear != "kernel_ridge":
        return {}
    runs, readouts = h_fit.shape[:2]

    def solve(sizes):
        result = kernel_ridge_r2_grid(
            h_fit.reshape(runs * readouts, *h_fit.shape[2:]),
            np.repeat(y_fit, readouts, axis=0),
            h_test.reshape(runs * readouts, *h_test.shape[2:]),
            np.repeat(y_test, readouts, axis=0),
            sizes,
        )
        return result.r2.reshape(runs, readouts, -1)

    out = {"r2_nonlinear": solve(targets.sizes)}
    if targets.per_latent:
        out["r2_nonlinear@latent"] = solve((1,) * sum(targets.sizes))
    return out


def _accuracy(h_fit, h_test, y_fit, y_test, targets: Targets, classify) -> jnp.ndarray:
    """``(r, n_factors)`` accuracy of each discrete factor from each readout (NaN for the
    continuous ones), averaged uniformly over the factor's components; ``classify(h_fit,
    labels_fit, h_test, labels_test)`` -> accuracy."""
    bounds = np.cumsum((0, *targets.sizes))
    columns = np.concatenate(
        [np.arange(bounds[b], bounds[b + 1]) for b, d in enumerate(targets.discrete) if d]
    )
    labels_fit = decode_classes(y_fit[:, columns], targets.n_classes)
    labels_test = decode_classes(y_test[:, columns], targets.n_classes)
    scored = tuple(s for s, d in zip(targets.sizes, targets.discrete, strict=True) if d)

    def one(h_fit, h_test):
        per_column = jax.lax.map(
            lambda labels: classify(h_fit, labels[0], h_test, labels[1]),
            (labels_fit.T, labels_test.T),
        )
        return block_means(per_column, scored)

    # LAPACK: one at a time (module docstring).
    accuracy = jax.lax.map(lambda h: one(*h), (h_fit, h_test))
    where = np.flatnonzero(targets.discrete)
    return (
        jnp.full((h_fit.shape[0], len(targets.sizes)), jnp.nan, accuracy.dtype)
        .at[:, where]
        .set(accuracy)
    )


def accuracy(key, h_fit, h_test, y_fit, y_test, targets: Targets) -> Scores:
    """``acc_linear`` (logistic regression) and ``acc_nonlinear`` (MLP classifier)."""
    if not any(targets.discrete):
        return {}
    n_classes, epochs = targets.n_classes, targets.epochs
    mlp_key = jax.random.fold_in(key, CLASSIFIER_STREAM)

    def logistic(h_fit, labels_fit, h_test, labels_test):
        return logistic_accuracy(h_fit, labels_fit, h_test, labels_test, n_classes)

    def mlp(h_fit, labels_fit, h_test, labels_test):
        return mlp_accuracy(
            mlp_key, h_fit, labels_fit, h_test, labels_test, n_classes, epochs=epochs
        )

    return {
        "acc_linear": _accuracy(h_fit, h_test, y_fit, y_test, targets, logistic),
        "acc_nonlinear": _accuracy(h_fit, h_test, y_fit, y_test, targets, mlp),
    }


def correlations(key, h_fit, h_test, y_fit, y_test, targets: Targets) -> Scores:
    """Per readout, the absolute correlations between the targets' columns and the readout's
    dimensions on the test set, ``(r, t, w)``: what :func:`mcc_scores` matches on the host."""
    del key, h_fit, y_fit
    return {
        "mcc@corr": jax.vmap(lambda h: jnp.abs(correlation_matrix(y_test, h, targets.mcc)))(h_test)
    }


def mcc_scores(scores: Scores, targets: Targets) -> Scores:
    """Turns :func:`correlations`' ``mcc@corr`` (``(..., t, w)``) into ``mcc`` per factor:
    each factor's components matched one to one to the readout's dimensions so that the summed
    absolute correlation is largest (``scipy.optimize.linear_sum_assignment``), the matched
    correlations averaged; NaN where a correlation is not finite."""
    scores = dict(scores)
    corr = np.asarray(scores.pop("mcc@corr"))
    bounds = np.cumsum((0, *targets.sizes))
    lead = corr.shape[:-2]
    out = np.full((*lead, len(targets.sizes)), np.nan, np.float32)
    for index in np.ndindex(*lead):
        for b, (lo, hi) in enumerate(itertools.pairwise(bounds)):
            block = corr[index][lo:hi]
            if np.all(np.isfinite(block)):
                rows, cols = linear_sum_assignment(-block)
                out[(*index, b)] = np.mean(block[rows, cols])
    return scores | {"mcc": out}


class Metric(NamedTuple):
    """A metric (module docstring).

    Attributes:
      columns: the result columns it fills (``results.csv`` gains them).
      labels: each column's name in reports and figures.
      device: ``(key, h_fit, h_test, y_fit, y_test, targets) -> scores`` of one run's readouts
        ``(r, n, w)``, traced inside the run's evaluation program; or None.
      host: ``(h_fit, h_test, y_fit, y_test, targets) -> scores`` of all runs' readouts
        ``(R, r, n, w)`` as NumPy arrays; or None.
      finish: ``(scores, targets) -> scores``: turns what ``device`` returned (all columns of
        a width group, ``(R, r, ...)``) into the final scores on the host; or None.
    """

    columns: tuple[str, ...]
    labels: tuple[str, ...]
    device: Callable[..., Scores] | None = None
    host: Callable[..., Scores] | None = None
    finish: Callable[[Scores, Targets], Scores] | None = None


METRICS: dict[str, Metric] = {
    "r2_linear": Metric(("r2_linear",), ("linear R²",), device=linear),
    "r2_nonlinear": Metric(
        ("r2_nonlinear",), ("nonlinear R²",), device=nonlinear_mlp, host=nonlinear_kernel_ridge
    ),
    "accuracy": Metric(
        ("acc_linear", "acc_nonlinear"), ("linear accuracy", "nonlinear accuracy"), device=accuracy
    ),
    "mcc": Metric(("mcc",), ("MCC",), device=correlations, finish=mcc_scores),
}
"""``eval.metrics`` names -> their :class:`Metric`."""


def metric_columns() -> dict[str, str]:
    """The result columns of every registered metric -> their labels, in registry order."""
    return {
        column: label
        for metric in METRICS.values()
        for column, label in zip(metric.columns, metric.labels, strict=True)
    }
