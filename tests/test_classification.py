"""Logistic regression and MLP classifier accuracy against scikit-learn."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.neural_network import MLPClassifier

from jaxmmcl.evaluation.classification import (
    logistic_accuracy,
    logistic_fit,
    mlp_accuracy,
    mlp_fit,
    softmax_hessian,
)

N = 200


def _problem(n_classes: int, seed: int = 0, noise: float = 0.8, k: int = 4):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((2 * N, k)).astype(np.float32)
    logits = x @ rng.standard_normal((k, n_classes)) + noise * rng.standard_normal(
        (2 * N, n_classes)
    )
    labels = np.argmax(logits, 1)
    return x[:N], labels[:N], x[N:], labels[N:]


@pytest.mark.parametrize("n_classes", [2, 4])
def test_logistic_equals_sklearn(n_classes):
    x_fit, y_fit, x_test, y_test = _problem(n_classes)
    ref = LogisticRegression().fit(x_fit, y_fit)
    params = logistic_fit(jnp.asarray(x_fit), jnp.asarray(y_fit), n_classes)
    w, b = np.asarray(params["w"]), np.asarray(params["b"])
    acc = np.mean(np.argmax(x_test @ w + b, 1) == y_test)
    # One test sample of slack: scikit-learn itself stops at a gradient tolerance of 1e-4.
    assert abs(acc - ref.score(x_test, y_test)) <= 1 / N + 1e-6
    if n_classes == 2:  # scikit-learn's binomial vector is the difference of the two columns
        w, b = (w[:, 1] - w[:, 0])[:, None], np.array([b[1] - b[0]])
    else:  # intercepts are identified only up to a common shift
        b, ref.intercept_ = b - b.mean(), ref.intercept_ - ref.intercept_.mean()
    np.testing.assert_allclose(w, ref.coef_.T, atol=1e-2)
    np.testing.assert_allclose(b, ref.intercept_, atol=1e-2)


def test_softmax_hessian_equals_jax_hessian():
    rng = np.random.default_rng(3)
    x1 = jnp.asarray(np.c_[rng.normal(size=(40, 3)), np.ones(40)], jnp.float32)
    labels = jnp.asarray(rng.integers(0, 5, 40))
    v = jnp.asarray(rng.normal(size=(4, 5)), jnp.float32)

    def loss(flat):
        logits = x1 @ flat.reshape(4, 5)
        return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))

    p = jax.nn.softmax(x1 @ v, axis=-1)
    np.testing.assert_allclose(
        softmax_hessian(x1, p), jax.hessian(loss)(v.reshape(-1)), rtol=1e-4, atol=1e-6
    )


def test_logistic_regularisation_strength_follows_c():
    x_fit, y_fit, _, _ = _problem(4, seed=1)
    for c in (0.01, 100.0):
        ref = LogisticRegression(C=c).fit(x_fit, y_fit)
        w = np.asarray(logistic_fit(jnp.asarray(x_fit), jnp.asarray(y_fit), 4, c=c)["w"])
        np.testing.assert_allclose(w, ref.coef_.T, atol=2e-2 * max(1.0, np.abs(w).max()))


def test_logistic_vmaps_over_runs():
    runs = [_problem(4, seed=s) for s in range(3)]
    stacked = [np.stack(a) for a in zip(*runs, strict=True)]
    acc = jax.jit(jax.vmap(functools.partial(logistic_accuracy, n_classes=4)))(*stacked)
    single = []
    for x_fit, y_fit, x_test, y_test in runs:
        params = logistic_fit(jnp.asarray(x_fit), jnp.asarray(y_fit), 4)
        single.append(np.mean(np.argmax(x_test @ params["w"] + params["b"], 1) == y_test))
    np.testing.assert_allclose(np.asarray(acc), single, atol=1e-6)


def test_mlp_comparable_to_sklearn_on_easy_problem():
    rng = np.random.default_rng(3)
    centres = 3.0 * rng.standard_normal((3, 2))
    labels = rng.integers(0, 3, 2 * N)
    x = (centres[labels] + rng.standard_normal((2 * N, 2))).astype(np.float32)
    ref = MLPClassifier(max_iter=500, random_state=0).fit(x[:N], labels[:N])
    ref_acc = ref.score(x[N:], labels[N:])
    acc = mlp_accuracy(jax.random.key(0), x[:N], labels[:N], x[N:], labels[N:], 3, epochs=500)
    assert float(acc) >= min(ref_acc - 0.03, 0.9)


@pytest.mark.filterwarnings("ignore::sklearn.exceptions.ConvergenceWarning")
def test_mlp_trains_as_far_as_sklearn_on_many_clusters():
    """Labels shared by 9 of 63 clusters on a 4-D sphere (as an encoding of shape x position
    of the image/text experiment): the classifier needs scikit-learn's thousands of minibatch
    steps. Full-batch Adam for 1000 steps (``batch_size=n``) falls short, as it did on real
    encodings (0.86 against scikit-learn's 0.92)."""
    rng = np.random.default_rng(1)
    centres = rng.standard_normal((63, 4))
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    which = rng.integers(0, 63, 1600)
    x = (centres[which] + 0.15 * rng.standard_normal((1600, 4))).astype(np.float32)
    labels = (which % 7).astype(np.int32)
    data = (x[:800], labels[:800], x[800:], labels[800:])
    ref_acc = MLPClassifier(max_iter=1000, random_state=0).fit(*data[:2]).score(*data[2:])
    acc = float(mlp_accuracy(jax.random.key(0), *data, 7))
    full_batch = float(mlp_accuracy(jax.random.key(0), *data, 7, batch_size=800))
    assert acc == pytest.approx(ref_acc, abs=0.025)
    assert full_batch < ref_acc - 0.03


def test_mlp_stops_when_its_loss_stalls():
    """On a separable problem the loss stalls long before 1000 epochs: a larger budget changes
    nothing. Without the stopping rule every extra epoch would move the weights."""
    x_fit, y_fit, *_ = _problem(3, noise=0.0)
    fit = functools.partial(mlp_fit, jax.random.key(0), x_fit, y_fit, 3)
    stopped, longer = fit(epochs=1000), fit(epochs=3000)
    for name in stopped:
        np.testing.assert_array_equal(stopped[name], longer[name])
    assert not np.array_equal(fit(epochs=5)["w1"], fit(epochs=6)["w1"])


def test_mlp_accuracy_vmaps_over_runs():
    """Run i of a vmapped batch equals the run alone, though the runs stop after different
    numbers of epochs."""
    runs = [_problem(3, seed=s, noise=n) for s, n in ((0, 0.0), (1, 0.8))]
    stacked = [np.stack(a) for a in zip(*runs, strict=True)]
    keys = jax.random.split(jax.random.key(0), 2)
    accuracy = functools.partial(mlp_accuracy, n_classes=3, epochs=300)
    together = jax.vmap(accuracy)(keys, *stacked)
    alone = [accuracy(keys[i], *runs[i]) for i in range(2)]
    np.testing.assert_allclose(np.asarray(together), np.asarray(alone), atol=1e-6)
