"""One-hidden-layer MLPs trained as scikit-learn's ``MLPRegressor`` and ``MLPClassifier``.

Both of the official evaluation's MLP probes (``MLPRegressor(max_iter=1000)``, the lighter
nonlinear option of the numerical simulation, and ``MLPClassifier(max_iter=1000)`` of the
image/text experiment) train the same way, which :func:`train_mlp` reproduces: 100 ReLU hidden
units, Glorot-uniform weights and biases, Adam (learning rate 1e-3) on minibatches of
``min(200, n)`` rows of a reshuffled fit set, an L2 penalty ``alpha / (2 * rows) * ||W||^2``
(``alpha`` = 1e-4), stopped when the epoch loss has failed to fall by ``tol`` = 1e-4 below the
best so far for more than 10 epochs in a row, or after ``max_iter`` epochs. The same training,
not the same random numbers: scores agree with scikit-learn's to within its own seed-to-seed
spread.

:func:`mlp_r2` is the regressor: identity outputs, one per target column, on the raw targets
(scikit-learn does not standardise them). Its gradient is scikit-learn's: ``(pred - y)`` per
output, so the fitted objective is ``sum_t mean_i (pred_it - y_it)^2 / 2``, while the loss its
stopping rule watches is ``mean_it (pred_it - y_it)^2 / 2`` (the two differ by the number of
outputs). The classifier is :func:`jaxmmcl.evaluation.mlp_fit`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax import lax

from jaxmmcl.evaluation.linear import r2_score


def init_mlp(
    key: jax.Array, n_in: int, hidden: int, n_out: int, dtype, fan_out=None
) -> dict[str, jnp.ndarray]:
    """scikit-learn's initialisation of a ``n_in -> hidden -> n_out`` MLP.

    Every layer's weights and biases are uniform in ``+-sqrt(6 / (fan_in + fan_out))``.
    ``fan_out`` (default ``n_out``, may be traced) is the output layer's fan-out in that bound,
    for outputs padded beyond the real ones.
    """
    k1, k2 = jax.random.split(key)
    params = {}
    for (kw_name, kb_name), layer_key, fan_in, width, fan in (
        (("w1", "b1"), k1, n_in, hidden, hidden),
        (("w2", "b2"), k2, hidden, n_out, n_out if fan_out is None else fan_out),
    ):
        bound = jnp.sqrt(6.0 / (fan_in + fan))
        kw, kb = jax.random.split(layer_key)
        params[kw_name] = jax.random.uniform(kw, (fan_in, width), dtype, -bound, bound)
        params[kb_name] = jax.random.uniform(kb, (width,), dtype, -bound, bound)
    return params


def mlp_outputs(params: dict[str, jnp.ndarray], x: jnp.ndarray) -> jnp.ndarray:
    """``relu(x W1 + b1) W2 + b2``: ``(n, k) -> (n, n_out)``."""
    return jax.nn.relu(x @ params["w1"] + params["b1"]) @ params["w2"] + params["b2"]


# per_row(outputs (b, n_out), targets (b, ...)) -> (b,) the data term of each row.
PerRowLoss = Callable[[jnp.ndarray, jnp.ndarray], jnp.ndarray]


def train_mlp(
    key: jax.Array,
    params: dict[str, jnp.ndarray],
    x: jnp.ndarray,
    targets: jnp.ndarray,
    per_row: PerRowLoss,
    *,
    report_scale: jnp.ndarray | float = 1.0,
    epochs: int = 1000,
    batch_size: int = 200,
    learning_rate: float = 1e-3,
    l2: float = 1e-4,
    tol: float = 1e-4,
    patience: int = 10,
) -> dict[str, jnp.ndarray]:
    """scikit-learn's MLP training loop (module docstring), from initial ``params``.

    Each epoch shuffles the fit set and takes one Adam step per minibatch of ``batch_size``
    rows (the last one smaller when ``n`` is not a multiple) on the batch's objective
    ``sum_i per_row_i / rows + l2 / (2 * rows) * (||W1||^2 + ||W2||^2)``. The stopping rule
    watches the epoch's row-weighted mean of the batches' reported losses, in which the data
    term is scaled by ``report_scale``.

    Args:
      key: PRNG key of the shuffles.
      params: initial parameters (:func:`init_mlp`).
      x: features ``(n, k)``; targets: ``(n, ...)``, whatever ``per_row`` takes.
      per_row: the data loss of each row of a batch.
      report_scale: factor of the data term in the reported loss (the regressor's ``1 / t``).
      epochs: the most passes over the fit set (static; scikit-learn's ``max_iter``).
      batch_size: minibatch rows (static), capped at ``n``.
      learning_rate, l2, tol, patience: scikit-learn's ``learning_rate_init``, ``alpha``,
        ``tol`` and ``n_iter_no_change``.

    Returns:
      The trained parameters.
    """
    n = x.shape[0]
    batch_size = min(batch_size, n)
    n_batches = -(-n // batch_size)
    # Slots past n in the last batch point at row 0 with weight 0: static shapes for jit, and
    # the batch's loss is the mean over its real rows, as in scikit-learn's smaller last batch.
    padding = n_batches * batch_size - n
    weights = (jnp.arange(n + padding) < n).astype(x.dtype).reshape(n_batches, batch_size)
    counts = jnp.sum(weights, axis=1)
    opt = optax.adam(learning_rate)

    def batch_loss(params, rows, weight, count):
        data = jnp.sum(weight * per_row(mlp_outputs(params, x[rows]), targets[rows])) / count
        penalty = l2 / (2 * count) * (jnp.sum(params["w1"] ** 2) + jnp.sum(params["w2"] ** 2))
        return data + penalty, data * report_scale + penalty

    def batch_step(carry, batch):
        params, opt_state, total = carry
        rows, weight, count = batch
        grads, reported = jax.grad(batch_loss, has_aux=True)(params, rows, weight, count)
        updates, opt_state = opt.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state, total + reported * count), None

    def epoch(carry):
        params, opt_state, done, best, stale = carry
        order = jax.random.permutation(jax.random.fold_in(key, done), n)
        rows = jnp.pad(order, (0, padding)).reshape(n_batches, batch_size)
        (params, opt_state, total), _ = lax.scan(
            batch_step, (params, opt_state, jnp.zeros((), x.dtype)), (rows, weights, counts)
        )
        loss = total / n
        stale = jnp.where(loss > best - tol, stale + 1, 0)
        return params, opt_state, done + 1, jnp.minimum(best, loss), stale

    def running(carry):
        _, _, done, _, stale = carry
        return (done < epochs) & (stale <= patience)

    zero = jnp.zeros((), jnp.int32)
    carry = (params, opt.init(params), zero, jnp.asarray(jnp.inf, x.dtype), zero)
    params, *_ = lax.while_loop(running, epoch, carry)
    return params


@functools.partial(jax.jit, static_argnames=("hidden", "epochs", "batch_size"))
def mlp_r2(
    key: jax.Array,
    x_fit: jnp.ndarray,
    y_fit: jnp.ndarray,
    x_test: jnp.ndarray,
    y_test: jnp.ndarray,
    column_mask: jnp.ndarray | None = None,
    *,
    hidden: int = 100,
    epochs: int = 1000,
    batch_size: int = 200,
    learning_rate: float = 1e-3,
) -> jnp.ndarray:
    """Test-set R^2 per target column of ``MLPRegressor(max_iter=epochs)`` fitted on the fit set.

    Args:
      key: PRNG key of the initialisation and the shuffles.
      x_fit, y_fit: ``(n_fit, k)`` inputs (standardised, as the official evaluation's) and
        ``(n_fit, t)`` targets.
      x_test, y_test: ``(n_test, k)`` and ``(n_test, t)``.
      column_mask: optional ``(t,)`` 0/1: the real target columns; the others are padding,
        which neither the fit nor the stopping rule sees (their output weights start at zero
        and stay there), so a padded block is fitted as the block alone would be (from other
        random numbers).
      hidden, epochs, batch_size, learning_rate: scikit-learn's ``hidden_layer_sizes``,
        ``max_iter``, ``batch_size``, ``learning_rate_init``.

    Returns:
      ``(t,)`` R^2 per target column (padding columns: meaningless).
    """
    t = y_fit.shape[1]
    mask = jnp.ones((t,), x_fit.dtype) if column_mask is None else column_mask.astype(x_fit.dtype)
    n_real = jnp.sum(mask)
    init_key, shuffle_key = jax.random.split(key)
    params = init_mlp(init_key, x_fit.shape[1], hidden, t, x_fit.dtype, fan_out=n_real)
    params["w2"] = params["w2"] * mask
    params["b2"] = params["b2"] * mask

    def per_row(outputs, targets):
        return 0.5 * jnp.sum(mask * (outputs - targets) ** 2, axis=-1)

    params = train_mlp(
        shuffle_key,
        params,
        x_fit,
        y_fit,
        per_row,
        report_scale=1.0 / n_real,
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
    )
    return r2_score(y_test, mlp_outputs(params, x_test))
