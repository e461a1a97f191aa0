"""The PyTorch baseline of benchmarks/ computes what jaxmmcl computes, given the same inputs.

Same observations, same encoder weights (Flax parameters copied into torch modules): same
loss, same gradient, same parameters after one clipped Adam step; same mechanisms.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import pathlib
import sys

import pytest

torch = pytest.importorskip("torch")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import optax  # noqa: E402

from jaxmmcl.config import run_config_from_dict, stack_hyperparams  # noqa: E402
from jaxmmcl.encoders import encode  # noqa: E402
from jaxmmcl.losses import symmetric_info_nce  # noqa: E402
from jaxmmcl.mechanisms import apply_mechanism, condition_threshold  # noqa: E402
from jaxmmcl.simulation import sample_views  # noqa: E402
from jaxmmcl.training import init_run, make_optimizer  # noqa: E402

_PATH = pathlib.Path(__file__).parents[1] / "benchmarks" / "torch_baseline.py"
_spec = importlib.util.spec_from_file_location("torch_baseline", _PATH)
tb = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("torch_baseline", tb)
_spec.loader.exec_module(tb)

N = 24  # pairs per batch (and as many negatives)


@functools.cache
def _setup(shared: bool):
    cfg = run_config_from_dict(
        {
            "simulation": {"n_c": 2, "n_s": 2, "n_m": 0 if shared else 2, "shared_mixing": shared},
            "model": {"widths": [16, 24], "shared_encoder": shared},
            "train": {"batch_size": N, "steps": 10, "learning_rate": 1e-2},
        }
    )
    static = cfg.static
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([cfg.hyper]))
    simulation, state = jax.jit(init_run, static_argnums=2)(jnp.asarray(3), hyper, static)
    (x1, x2), _ = sample_views(jax.random.key(5), simulation, static.simulation, 2 * N)
    return static, hyper, simulation, state, np.array(x1), np.array(x2)


def _jax_loss(params, static, x1, x2, tau):
    h1, h2 = encode(params, (x1, x2), static)
    return symmetric_info_nce((h1[:N], h2[:N]), (h1[N:], h2[N:]), tau)


_value_and_grad = jax.jit(jax.value_and_grad(_jax_loss), static_argnums=1)


def _torch_linears(module):
    return [m for m in module if isinstance(m, torch.nn.Linear)]


def _flat_torch(g1, g2):
    mods = [g1] if g2 is g1 else [g1, g2]
    return [(lin.weight, lin.bias) for g in mods for lin in _torch_linears(g)]


def _flat_flax(params):
    out = []
    for name in sorted(params):
        dense = params[name]["params"]
        for layer in sorted(dense, key=lambda k: int(k.split("_")[1])):
            out.append((dense[layer]["kernel"], dense[layer]["bias"]))
    return out


@pytest.mark.parametrize("shared", [False, True])
@pytest.mark.parametrize("tau", [1.0, 0.5])
def test_same_loss_and_gradient(shared, tau):
    static, _, _, state, x1, x2 = _setup(shared)
    loss, grads = _value_and_grad(state.params, static, x1, x2, tau)
    g1, g2 = tb.encoders_from_flax(state.params)
    assert (g2 is g1) == shared
    t_loss = tb.batch_loss(g1, g2, torch.from_numpy(x1), torch.from_numpy(x2), tau)
    t_loss.backward()
    np.testing.assert_allclose(t_loss.item(), float(loss), rtol=1e-5, atol=1e-6)
    for (w, b), (k, kb) in zip(_flat_torch(g1, g2), _flat_flax(grads), strict=True):
        scale = float(jnp.max(jnp.abs(k)))
        np.testing.assert_allclose(w.grad.numpy().T, k, rtol=1e-4, atol=1e-5 * scale)
        np.testing.assert_allclose(b.grad.numpy(), kb, rtol=1e-4, atol=1e-5 * scale)


@pytest.mark.parametrize("clip_norm", [2.0, 1e-3])
def test_same_adam_step(clip_norm):
    static, hyper, _, state, x1, x2 = _setup(False)
    train = dataclasses.replace(static.train, clip_norm=clip_norm)
    _, grads = _value_and_grad(state.params, static, x1, x2, 1.0)
    norm = float(optax.tree.norm(grads))
    assert (norm > clip_norm) == (clip_norm < 1.0)  # the small norm really clips
    tx = make_optimizer(hyper.learning_rate, train)

    @jax.jit
    def adam_step(params, grads):
        updates, _ = tx.update(grads, tx.init(params), params)
        return optax.apply_updates(params, updates)

    new_params = adam_step(state.params, grads)

    g1, g2 = tb.encoders_from_flax(state.params)
    params = tb.encoder_parameters(g1, g2)
    opt, sched = tb.make_optimizer(params, float(hyper.learning_rate), static.train.steps)
    tb.batch_loss(g1, g2, torch.from_numpy(x1), torch.from_numpy(x2)).backward()
    t_norm = torch.nn.utils.clip_grad_norm_(params, clip_norm)
    np.testing.assert_allclose(float(t_norm), norm, rtol=1e-4)
    opt.step()
    sched.step()
    lr = float(hyper.learning_rate)
    # A first Adam step moves each parameter by about lr * sign(grad); compare the moves.
    for (w, b), (k, kb), (k0, kb0) in zip(
        _flat_torch(g1, g2), _flat_flax(new_params), _flat_flax(state.params), strict=True
    ):
        moved_t = w.detach().numpy().T - np.asarray(k0)
        moved_j = np.asarray(k) - np.asarray(k0)
        np.testing.assert_allclose(moved_t, moved_j, atol=1e-3 * lr)
        np.testing.assert_allclose(b.detach().numpy() - np.asarray(kb0), kb - kb0, atol=1e-3 * lr)


def test_same_mechanism_and_simulation():
    _, _, simulation, _, _, _ = _setup(False)
    sim = tb.simulation_from_jax(simulation)
    z = np.random.default_rng(0).normal(size=(7, 6)).astype(np.float32)
    for w_torch, w_jax in zip((sim.mixing1, sim.mixing2), simulation.mechanisms, strict=True):
        got = tb.mix(w_torch, torch.from_numpy(z)).numpy()
        np.testing.assert_allclose(got, apply_mechanism(w_jax, z, "mlp"), rtol=1e-5, atol=1e-5)
    x1, x2 = tb.sample_pairs(sim, 5, torch.Generator().manual_seed(0))
    assert x1.shape == x2.shape == (5, 6)


def test_baseline_trains():
    run = tb.init_run(
        0, n_c=2, n_s=2, n_m=2, widths=(16, 16), batch_size=32, steps=5, learning_rate=1e-2
    )
    before = [p.detach().clone() for p in tb.encoder_parameters(run.g1, run.g2)]
    losses = [run.step() for _ in range(5)]
    assert all(np.isfinite(losses))
    after = tb.encoder_parameters(run.g1, run.g2)
    assert all(not torch.equal(a, b) for a, b in zip(after, before, strict=True))
    assert run.g1 is not run.g2
    for m in run.sim.mixing1:
        assert torch.linalg.cond(m) <= condition_threshold(6) * (1 + 1e-4)
