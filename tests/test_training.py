"""The training grid: vmapped runs equal runs trained alone; divergence stays contained."""

from __future__ import annotations

import dataclasses
import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from jaxmmcl.config import Hyperparams, run_config_from_dict, stack_hyperparams
from jaxmmcl.encoders import encode
from jaxmmcl.evaluation.protocol import evaluate_grid
from jaxmmcl.grid import train_grid
from jaxmmcl.training import lr_multiplier

STATIC = run_config_from_dict(TINY).static
HYPERS = [
    Hyperparams(p_change=1.0, learning_rate=1e-3),
    Hyperparams(p_change=0.75, causal_strength=1.0, learning_rate=3e-3),
    Hyperparams(p_change=0.5, statistical=True, learning_rate=1e-3, temperature=0.5),
    Hyperparams(p_change=0.75, statistical=True, causal_strength=2.0, learning_rate=2e-3),
]
SEEDS = [3, 1, 4, 1]


@pytest.mark.parametrize("at_once", ["auto", None, 3])
def test_run_i_of_a_vmapped_grid_equals_the_run_alone(at_once):
    # auto on CPU: lax.map, one run at a time, bitwise equal to the run alone; None: all 4 runs
    # vmapped; 3: a vmapped batch of 3 and a remainder of 1 (float32 rounding apart).
    hypers = stack_hyperparams(HYPERS)
    grid = train_grid(STATIC, jnp.asarray(SEEDS), hypers, at_once=at_once)
    scores = evaluate_grid(STATIC, jnp.asarray(SEEDS), grid.simulation, grid.params, hypers)
    exact = at_once == "auto"
    close = functools.partial(
        np.testing.assert_allclose, rtol=0 if exact else 1e-4, atol=0 if exact else 1e-5
    )
    for i, (seed, hyper) in enumerate(zip(SEEDS, HYPERS, strict=True)):
        one_hyper = stack_hyperparams([hyper])
        alone = train_grid(STATIC, jnp.asarray([seed]), one_hyper)
        close(grid.loss_history[i], alone.loss_history[0])
        chex.assert_trees_all_close(
            jax.tree.map(lambda x, i=i: x[i], grid.params),
            jax.tree.map(lambda x: x[0], alone.params),
            rtol=0 if exact else 1e-4,
            atol=0 if exact else 1e-5,
        )
        one = evaluate_grid(STATIC, jnp.asarray([seed]), alone.simulation, alone.params, one_hyper)
        for name in ("r2_linear", "r2_nonlinear", "val_loss"):
            close(getattr(scores, name)[i], getattr(one, name)[0], atol=0 if exact else 1e-4)


def test_runs_with_equal_seeds_share_the_simulation_but_not_other_seeds():
    grid = train_grid(STATIC, jnp.asarray(SEEDS), stack_hyperparams(HYPERS))
    np.testing.assert_array_equal(
        grid.simulation.mechanisms[0][1], grid.simulation.mechanisms[0][3]
    )
    assert not np.allclose(grid.simulation.mechanisms[0][0], grid.simulation.mechanisms[0][1])
    assert grid.loss_history.shape == (4, 2) and not grid.diverged.any()


def test_a_diverged_run_is_marked_and_does_not_spoil_the_others():
    hypers = [Hyperparams(learning_rate=1e-3), Hyperparams(learning_rate=1e-3, temperature=1e-38)]
    grid = train_grid(STATIC, jnp.asarray([0, 0]), stack_hyperparams(hypers))
    assert grid.diverged.tolist() == [False, True]
    assert np.isnan(grid.final_loss[1]) and np.isfinite(grid.final_loss[0])
    alone = train_grid(STATIC, jnp.asarray([0]), stack_hyperparams(hypers[:1]))
    np.testing.assert_allclose(grid.loss_history[0], alone.loss_history[0], rtol=1e-4)
    for leaf in jax.tree.leaves(grid.params):
        assert np.all(np.isfinite(leaf))


def test_training_lowers_the_loss():
    static = dataclasses.replace(
        STATIC, train=dataclasses.replace(STATIC.train, steps=200, log_every=100)
    )
    grid = train_grid(
        static, jnp.asarray([0]), stack_hyperparams([Hyperparams(learning_rate=3e-3)])
    )
    first, last = grid.loss_history[0]
    assert last < first - 0.1


def test_at_once_must_be_a_positive_integer():
    with pytest.raises(ValueError, match=r"at_once: .* got 0"):
        train_grid(STATIC, jnp.asarray([0]), stack_hyperparams(HYPERS[:1]), at_once=0)


def test_mismatched_inputs_are_refused_at_the_boundary():
    # chex's shape checks at the API's boundaries name the offending input before any tracing.
    with pytest.raises(AssertionError, match="shape prefix"):
        train_grid(STATIC, jnp.asarray([0, 1]), stack_hyperparams(HYPERS[:3]))
    grid_hypers = stack_hyperparams(HYPERS[:1])
    grid = train_grid(STATIC, jnp.asarray([0]), grid_hypers)
    with pytest.raises(AssertionError, match="shape prefix"):
        evaluate_grid(STATIC, jnp.asarray([0, 1]), grid.simulation, grid.params, grid_hypers)
    params = jax.tree.map(lambda x: x[0], grid.params)
    x = jnp.zeros((4, STATIC.view_dim(0) + 1))
    with pytest.raises(AssertionError, match="shape"):
        encode(params, (x, x), STATIC)


def test_cosine_schedule_with_warmup():
    train = dataclasses.replace(STATIC.train, steps=100, warmup_steps=10, schedule="cosine")
    values = np.asarray([lr_multiplier(s, train) for s in (0, 9, 10, 55, 100)])
    np.testing.assert_allclose(values, [0.1, 1.0, 1.0, 0.5, 0.0], atol=1e-6)


def test_train_run_and_make_train_vmapped_equal_the_grid_program():
    from jaxmmcl.training import make_train, train_run

    hypers = stack_hyperparams(HYPERS[1:3])
    grid = train_grid(STATIC, jnp.asarray(SEEDS[1:3]), hypers)
    batch = jax.jit(jax.vmap(make_train(STATIC)))(jnp.asarray(SEEDS[1:3]), hypers)
    close = functools.partial(np.testing.assert_allclose, rtol=1e-4, atol=1e-5)
    for i in range(2):
        alone = train_run(SEEDS[1 + i], jax.tree.map(lambda x, i=i: x[i], hypers), STATIC)
        for trained in (alone, jax.tree.map(lambda x, i=i: x[i], batch)):
            close(trained.loss_history, grid.loss_history[i])
            for a, b in zip(
                jax.tree.leaves(trained.state.params), jax.tree.leaves(grid.params), strict=True
            ):
                close(a, b[i])


def test_make_train_refuses_host_drawn_simulations():
    from jaxmmcl.errors import ConfigError
    from jaxmmcl.training import make_train

    official = dataclasses.replace(
        STATIC, simulation=dataclasses.replace(STATIC.simulation, draws="official")
    )
    with pytest.raises(ConfigError, match="draws: 'official'"):
        make_train(official)


def _finite_static(n_train: int = 128):
    config = {**TINY, "simulation": {**TINY["simulation"], "n_train": n_train}}
    return run_config_from_dict(config).static


def test_a_fixed_training_set_is_drawn_once_and_cycled_in_shuffled_epochs():
    from jaxmmcl.training import init_run, training_views

    static = _finite_static()  # 128 pairs, batches of 32 pairs + 32 negatives: 2 steps an epoch
    simulation, state = init_run(0, jax.tree.map(jnp.asarray, HYPERS[1]), static)
    epochs: list[list[int]] = [[], [], []]
    first_seen: dict[int, np.ndarray] = {}
    for step in range(6):
        xs, order = training_views(state.replace(step=jnp.int32(step)), simulation, static)
        state = state.replace(order=order)
        indices = np.asarray(order)[(step % 2) * 64 : (step % 2 + 1) * 64]
        epochs[step // 2] += indices.tolist()
        rows = np.concatenate([np.asarray(x) for x in xs], axis=1)
        for i, row in zip(indices, rows, strict=True):
            # The same pair (both views) whenever its index comes round again.
            np.testing.assert_array_equal(first_seen.setdefault(int(i), row), row)
    for epoch in epochs:
        assert sorted(epoch) == list(range(128))  # every pair once an epoch
    assert epochs[0] != epochs[1] != epochs[2]  # shuffled anew every epoch
    assert len(first_seen) == 128


def test_run_i_of_a_finite_set_grid_equals_the_run_alone():
    static = _finite_static()
    hypers = stack_hyperparams(HYPERS[:3])
    grid = train_grid(static, jnp.asarray(SEEDS[:3]), hypers)
    for i in range(3):
        alone = train_grid(static, jnp.asarray([SEEDS[i]]), stack_hyperparams([HYPERS[i]]))
        np.testing.assert_array_equal(grid.loss_history[i], alone.loss_history[0])
        chex.assert_trees_all_equal(
            jax.tree.map(lambda x, i=i: x[i], grid.params),
            jax.tree.map(lambda x: x[0], alone.params),
        )
    # A finite set trains differently from fresh pairs, from the first step on.
    fresh = train_grid(STATIC, jnp.asarray(SEEDS[:1]), stack_hyperparams(HYPERS[:1]))
    assert not np.allclose(fresh.loss_history[0], grid.loss_history[0])


def test_a_training_set_smaller_than_two_batches_is_refused():
    from jaxmmcl.errors import ConfigError

    with pytest.raises(ConfigError, match=r"simulation.n_train: expected 0 or at least .* 64"):
        _finite_static(63)
