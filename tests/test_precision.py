"""``train.precision``: what the traced products of training and evaluation compute in."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY

from jaxmmcl.config import PRECISIONS, ConfigError, run_config_from_dict, stack_hyperparams
from jaxmmcl.distributed import runs_at_once, runs_mesh
from jaxmmcl.evaluation.protocol import programs
from jaxmmcl.grid import setup_grid
from jaxmmcl.precision import XLA_PRECISION
from jaxmmcl.training import init_run, train_step


def dot_precisions(jaxpr) -> set[str]:
    """The precision of every dot_general in a closed jaxpr, sub-jaxprs included."""
    found = set()
    for eqn in jaxpr.jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            found.add(str(eqn.params["precision"]))
        for param in eqn.params.values():
            for sub in param if isinstance(param, tuple | list) else (param,):
                if isinstance(sub, jax.extend.core.ClosedJaxpr):
                    found |= dot_precisions(sub)
                elif isinstance(sub, jax.extend.core.Jaxpr):
                    found |= dot_precisions(jax.extend.core.ClosedJaxpr(sub, ()))
    return found


def tiny(precision: str):
    cfg = run_config_from_dict(TINY | {"train": TINY["train"] | {"precision": precision}})
    return cfg.static, stack_hyperparams([cfg.hyper])


def test_every_precision_has_an_xla_name():
    assert tuple(XLA_PRECISION) == PRECISIONS


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("float32", "(Precision.HIGHEST, Precision.HIGHEST)"), ("bfloat16", "BF16_BF16_F32")],
)
def test_training_step_products_follow_train_precision(precision, expected):
    """Forward and backward: every product of the step, none left at XLA's default."""
    static, hypers = tiny(precision)
    hyper = jax.tree.map(lambda x: x[0], hypers)
    simulation, state = init_run(jnp.asarray(0), hyper, static)
    jaxpr = jax.make_jaxpr(train_step, static_argnums=3)(state, simulation, hyper, static)
    assert dot_precisions(jaxpr) == {expected}


def test_evaluation_computes_in_float32_whatever_the_training_precision():
    static, hypers = tiny("bfloat16")
    trained = setup_grid(static, np.array([0]), hypers)
    seeds = jnp.asarray([0], jnp.uint32)
    mesh = runs_mesh(jax.local_devices()[:1])
    jaxpr = jax.make_jaxpr(programs(static, mesh, runs_at_once(mesh)).encode)(
        seeds, trained.simulation, trained.state.params
    )
    assert dot_precisions(jaxpr) == {"(Precision.HIGHEST, Precision.HIGHEST)"}


@pytest.mark.parametrize("precision", ["tf32", "tf32x3"])
def test_tf32_on_cpu_devices_is_refused_naming_the_key(precision):
    static, hypers = tiny(precision)
    with pytest.raises(ConfigError, match=f"train.precision: '{precision}' needs a GPU"):
        setup_grid(static, np.array([0]), hypers)
