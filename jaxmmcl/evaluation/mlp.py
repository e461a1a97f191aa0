"""A small MLP regressor: the cheaper nonlinear alternative to cross-validated kernel ridge.

One MLP with two ReLU hidden layers and one linear output per target column is trained with
full-batch Adam on standardised targets; its R^2 is reported per column. It has no
hyperparameter search, so it is a lower bound on what is nonlinearly predictable, but its cost
is linear in the number of samples.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import optax

from jaxmmcl.evaluation.linear import r2_score


class _Regressor(nn.Module):
    hidden: int
    outputs: int

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Dense(self.hidden)(x))
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.outputs)(x)


def mlp_r2(
    key: jax.Array,
    x_fit: jnp.ndarray,
    y_fit: jnp.ndarray,
    x_test: jnp.ndarray,
    y_test: jnp.ndarray,
    *,
    hidden: int = 64,
    steps: int = 2000,
    learning_rate: float = 3e-3,
) -> jnp.ndarray:
    """Test-set R^2 per target column of an MLP fitted on the fit set.

    Args:
      key: initialisation key.
      x_fit, y_fit: ``(n_fit, k)`` inputs (ideally standardised) and ``(n_fit, t)`` targets.
      x_test, y_test: ``(n_test, k)`` and ``(n_test, t)``.
      hidden: width of the two hidden layers.
      steps: full-batch Adam steps (cosine-decayed learning rate).
      learning_rate: peak Adam step size.

    Returns:
      ``(t,)`` R^2 per target column.
    """
    mean, std = jnp.mean(y_fit, axis=0), jnp.std(y_fit, axis=0)
    std = jnp.where(std > 0, std, 1.0)
    target = (y_fit - mean) / std
    model = _Regressor(hidden, y_fit.shape[1])
    params = model.init(key, x_fit[:1])
    tx = optax.adam(optax.cosine_decay_schedule(learning_rate, steps))
    opt_state = tx.init(params)

    def loss_fn(params):
        return jnp.mean((model.apply(params, x_fit) - target) ** 2)

    def step(carry, _):
        params, opt_state = carry
        grads = jax.grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), None

    (params, _), _ = jax.lax.scan(step, (params, opt_state), length=steps)
    return r2_score(y_test, model.apply(params, x_test) * std + mean)
