"""Classification accuracy for discrete ground-truth factors, in JAX.

Two classifiers, both pure functions of arrays, jittable (``n_classes`` and the loop lengths are
static) and vmappable over a leading run axis:

* :func:`logistic_accuracy` -- multinomial logistic regression with scikit-learn's
  ``LogisticRegression()`` objective (L2 penalty ``1 / (2 C)`` on the weights, unpenalised
  intercepts, C = 1), minimised by full-batch Newton steps to a tight gradient tolerance.
* :func:`mlp_accuracy` -- a one-hidden-layer ReLU MLP trained as scikit-learn's
  ``MLPClassifier`` is (the paper's probe; :mod:`jaxmmcl.evaluation.mlp`): Glorot-uniform
  initialisation, softmax cross-entropy with an L2 penalty, Adam on shuffled minibatches of
  200, stopped when the epoch loss stalls. The same training, not the same random numbers:
  accuracies agree with scikit-learn's to within its own seed-to-seed spread.

Labels are integers in ``[0, n_classes)``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxmmcl.evaluation.mlp import init_mlp, mlp_outputs, train_mlp


def _softmax_loss(params, x, labels):
    logits = x @ params["w"] + params["b"]
    return jnp.mean(optax.softmax_cross_entropy_with_integer_labels(logits, labels))


def softmax_hessian(x1: jnp.ndarray, p: jnp.ndarray) -> jnp.ndarray:
    """Hessian of the mean softmax cross-entropy of logits ``x1 @ V`` in ``V``, in closed form.

    Args:
      x1: features, shape ``(n, d)`` (the intercept as a column of ones).
      p: the softmax probabilities at ``V``, shape ``(n, C)``.

    Returns:
      ``(d C, d C)``: entry ``(a C + c, b C + e)`` (``V[a, c]`` and ``V[b, e]`` flattened
      row-major) is ``mean_i x1[i, a] x1[i, b] (p[i, c] [c = e] - p[i, c] p[i, e])``.
      Memory ``O(n d C + (d C)^2)``.
    """
    n, d = x1.shape
    size = d * p.shape[1]
    weighted = jnp.einsum("ia,ib,ic->abc", x1, x1, p) / n
    eye = jnp.eye(p.shape[1], dtype=p.dtype)
    diagonal = jnp.einsum("abc,ce->acbe", weighted, eye).reshape(size, size)
    z = (x1[:, :, None] * p[:, None, :]).reshape(n, size)
    return diagonal - z.T @ z / n


@functools.partial(jax.jit, static_argnames=("n_classes", "max_steps"))
def logistic_fit(
    x: jnp.ndarray,
    labels: jnp.ndarray,
    n_classes: int,
    *,
    c: float = 1.0,
    max_steps: int = 50,
    tol: float = 1e-6,
) -> dict[str, jnp.ndarray]:
    """Fits L2-regularised multinomial logistic regression like ``LogisticRegression(C=c)``.

    Minimises ``mean_i CE(x_i W + b, labels_i) + penalty / (2 c n)`` where the penalty is
    ``||W||^2`` for ``n_classes > 2`` (scikit-learn's multinomial parametrisation, one weight
    column per class) and ``2 ||W||^2`` for two classes: scikit-learn fits a single binomial
    weight vector ``w = W[:, 1] - W[:, 0]``, whose penalty ``||w||^2`` equals ``2 ||W||^2`` at
    the symmetric optimum ``W[:, 0] = -W[:, 1]``.

    The optimiser is Newton's method with a vectorised backtracking search over step sizes
    ``1, 1/2, ..., 1/512`` (the best loss wins, so the loss never increases): the problem has
    only ``(k + 1) n_classes`` parameters, Newton converges in a handful of steps, and its
    program compiles much faster than L-BFGS with a line search.

    Args:
      x: features, shape ``(n, k)``.
      labels: integer labels, shape ``(n,)``.
      n_classes: number of classes (static), at least 2.
      c: inverse regularisation strength, scikit-learn's ``C``.
      max_steps: Newton step limit (static).
      tol: stop once the gradient's largest absolute entry is below this.

    Returns:
      ``{"w": (k, n_classes), "b": (n_classes,)}``.
    """
    n, k = x.shape
    strength = (2.0 if n_classes == 2 else 1.0) / (2.0 * c * n)

    def unflatten(theta):
        return {"w": theta[: k * n_classes].reshape(k, n_classes), "b": theta[k * n_classes :]}

    def loss(theta):
        params = unflatten(theta)
        return _softmax_loss(params, x, labels) + strength * jnp.sum(params["w"] ** 2)

    grad_fn = jax.grad(loss)
    # The Hessian in closed form: jax.hessian's forward-over-reverse pass carries a tangent of
    # the (n, n_classes) logits per parameter, O(n d^2 C^2) memory.
    x1 = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)
    penalty = jnp.concatenate(
        [jnp.full(k * n_classes, 2.0 * strength, x.dtype), jnp.zeros(n_classes, x.dtype)]
    )

    def hess_fn(theta):
        params = unflatten(theta)
        p = jax.nn.softmax(x @ params["w"] + params["b"], axis=-1)
        return softmax_hessian(x1, p) + jnp.diag(penalty)

    # Adding a constant to every intercept changes nothing: the Hessian is singular along that
    # direction (where the gradient is zero), so a tiny ridge makes the Newton system solvable.
    ridge = 1e-6 * jnp.eye((k + 1) * n_classes, dtype=x.dtype)
    step_sizes = 0.5 ** jnp.arange(10, dtype=x.dtype)

    def cond(carry):
        step, _, grad = carry
        return (step < max_steps) & (jnp.max(jnp.abs(grad)) > tol)

    def body(carry):
        step, theta, grad = carry
        direction = jnp.linalg.solve(hess_fn(theta) + ridge, grad)
        candidates = theta - step_sizes[:, None] * direction
        losses = jax.vmap(loss)(candidates)
        best = jnp.argmin(jnp.where(jnp.isnan(losses), jnp.inf, losses))
        theta = jnp.where(losses[best] <= loss(theta), candidates[best], theta)
        return step + 1, theta, grad_fn(theta)

    theta = jnp.zeros((k + 1) * n_classes, x.dtype)
    _, theta, _ = lax.while_loop(cond, body, (0, theta, grad_fn(theta)))
    return unflatten(theta)


@functools.partial(jax.jit, static_argnames=("n_classes", "max_steps"))
def logistic_accuracy(
    x_fit: jnp.ndarray,
    labels_fit: jnp.ndarray,
    x_test: jnp.ndarray,
    labels_test: jnp.ndarray,
    n_classes: int,
    *,
    c: float = 1.0,
    max_steps: int = 50,
) -> jnp.ndarray:
    """Test accuracy of :func:`logistic_fit` fitted on the fit set.

    Args:
      x_fit, labels_fit: shapes ``(n_fit, k)`` and ``(n_fit,)``.
      x_test, labels_test: shapes ``(n_test, k)`` and ``(n_test,)``.
      n_classes: number of classes (static).
      c, max_steps: as in :func:`logistic_fit`.

    Returns:
      A scalar: the fraction of test labels predicted correctly.
    """
    params = logistic_fit(x_fit, labels_fit, n_classes, c=c, max_steps=max_steps)
    pred = jnp.argmax(x_test @ params["w"] + params["b"], axis=-1)
    return jnp.mean(pred == labels_test)


@functools.partial(jax.jit, static_argnames=("n_classes", "hidden", "epochs", "batch_size"))
def mlp_fit(
    key: jax.Array,
    x: jnp.ndarray,
    labels: jnp.ndarray,
    n_classes: int,
    *,
    hidden: int = 100,
    epochs: int = 1000,
    batch_size: int = 200,
    learning_rate: float = 1e-3,
    l2: float = 1e-4,
    tol: float = 1e-4,
    patience: int = 10,
) -> dict[str, jnp.ndarray]:
    """Trains a one-hidden-layer ReLU classifier as scikit-learn's ``MLPClassifier`` does.

    Softmax cross-entropy, trained by :func:`jaxmmcl.evaluation.mlp.train_mlp`: shuffled
    minibatches of ``batch_size`` rows, each step on the batch's mean cross-entropy plus
    ``l2 / (2 * rows in the batch) * ||W||^2``, stopped when the epoch's mean loss has failed to
    fall by ``tol`` below the best so far for more than ``patience`` epochs in a row, or after
    ``epochs`` epochs (scikit-learn's ``max_iter``; the paper's evaluation sets 1000).

    Args:
      key: PRNG key for the initialisation and the shuffles.
      x: features, shape ``(n, k)`` (standardised, as the paper's evaluation does).
      labels: integer labels, shape ``(n,)``.
      n_classes: number of classes (static).
      hidden: hidden width (static); scikit-learn's default is 100.
      epochs: the most passes over the fit set (static).
      batch_size: minibatch rows (static), capped at ``n``; scikit-learn's default is 200.
      learning_rate, l2, tol, patience: scikit-learn's ``learning_rate_init``, ``alpha``,
        ``tol`` and ``n_iter_no_change``.

    Returns:
      ``{"w1": (k, hidden), "b1": (hidden,), "w2": (hidden, n_classes), "b2": (n_classes,)}``.
    """
    init_key, shuffle_key = jax.random.split(key)
    params = init_mlp(init_key, x.shape[1], hidden, n_classes, x.dtype)
    return train_mlp(
        shuffle_key,
        params,
        x,
        labels,
        optax.softmax_cross_entropy_with_integer_labels,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        l2=l2,
        tol=tol,
        patience=patience,
    )


@functools.partial(jax.jit, static_argnames=("n_classes", "hidden", "epochs", "batch_size"))
def mlp_accuracy(
    key: jax.Array,
    x_fit: jnp.ndarray,
    labels_fit: jnp.ndarray,
    x_test: jnp.ndarray,
    labels_test: jnp.ndarray,
    n_classes: int,
    *,
    hidden: int = 100,
    epochs: int = 1000,
    batch_size: int = 200,
    learning_rate: float = 1e-3,
) -> jnp.ndarray:
    """Test accuracy of :func:`mlp_fit` trained on the fit set.

    Args:
      key: PRNG key for the initialisation and the shuffles.
      x_fit, labels_fit: shapes ``(n_fit, k)`` and ``(n_fit,)``.
      x_test, labels_test: shapes ``(n_test, k)`` and ``(n_test,)``.
      n_classes, hidden, epochs, batch_size, learning_rate: as in :func:`mlp_fit`.

    Returns:
      A scalar: the fraction of test labels predicted correctly.
    """
    params = mlp_fit(
        key,
        x_fit,
        labels_fit,
        n_classes,
        hidden=hidden,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    return jnp.mean(jnp.argmax(mlp_outputs(params, x_test), axis=-1) == labels_test)
