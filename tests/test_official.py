"""``simulation.draws: official``: the official main_mlp.py's simulations, seed for seed.

Oracles: the official code's own recipe written literally (NumPy's global generator drawing one
matrix at a time), SciPy's Wishart sampler and PyTorch's seeded generator.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np
import pytest
from scipy.stats import wishart

from jaxmmcl.config import ConfigError, Hyperparams, SimulationConfig, stack_hyperparams
from jaxmmcl.official import invertible_mlp_weights, official_simulation, official_simulations


def official_construct_invertible_mlp(n, n_layers):
    """utils/invertible_network_utils.construct_invertible_mlp's draws (cond_thresh_ratio
    0.001, n_iter_cond_thresh 25000), one np.random call at a time as it makes them."""

    def l2_normalize(a):
        return a / np.sqrt(np.sum(a * a, 0))

    cond_list = np.zeros([25000])
    for i in range(25000):
        cond_list[i] = np.linalg.cond(l2_normalize(np.random.uniform(-1, 1, [n, n])))
    cond_list.sort()
    threshold = cond_list[int(25000 * 0.001)]
    layers = []
    for _ in range(n_layers):
        cond = threshold + 1
        while cond > threshold:
            weight = l2_normalize(np.random.uniform(-1, 1, (n, n)))
            cond = np.linalg.cond(weight)
        layers.append(weight.astype(np.float32))
    return np.stack(layers)


def test_mechanism_draws_are_the_official_ones_and_leave_numpy_where_it_does():
    np.random.seed(11)
    expected = official_construct_invertible_mlp(3, 2)
    after = np.random.uniform()
    rng = np.random.RandomState(11)
    got = invertible_mlp_weights(rng, 3, 2)
    np.testing.assert_array_equal(got, expected)
    # The next draw (f2's pool in main_mlp.py) continues from the same state.
    assert rng.uniform() == after


def test_wishart_covariances_are_scipys_with_the_seed_shared_by_blocks_of_one_size():
    sim = SimulationConfig(n_c=2, n_s=2, n_m=3, mixing_layers=1)
    simulation = official_simulation(5, sim, p_change=0.75, statistical=True, causal_strength=0.0)
    lat = simulation.latents
    cov = lat.covariance
    for factor, n in ((cov["c"], 2), (cov["s"], 2), (cov["m1"], 3)):
        sigma = wishart.rvs(n, np.eye(n), size=1, random_state=5)
        np.testing.assert_allclose(factor @ factor.T, sigma, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(cov["c"], cov["s"])
    np.testing.assert_array_equal(cov["m1"], cov["m2"])
    assert not np.any(lat.causal["s"]["b"]) and not np.any(lat.causal["s"]["a"])
    independent = official_simulation(5, sim, p_change=1.0, statistical=False, causal_strength=0)
    np.testing.assert_array_equal(independent.latents.covariance["m1"], np.eye(3))
    # The mechanisms do not depend on the dependence settings: one NumPy stream per seed.
    np.testing.assert_array_equal(independent.mechanisms[0], simulation.mechanisms[0])
    assert not np.array_equal(*simulation.mechanisms)


def test_causal_draws_are_torchs_seeded_generator():
    """B then a from torch.randn of a CPU generator seeded with the seed (drawn in a child
    process; the oracle too, so that PyTorch stays out of the test process)."""
    pytest.importorskip("torch")
    sim = SimulationConfig(n_c=2, n_s=3, n_m=0, mixing_layers=1, shared_mixing=True)
    simulation = official_simulation(4, sim, p_change=0.75, statistical=False, causal_strength=2)
    oracle = subprocess.run(
        [sys.executable, "-c", "import json, torch; g = torch.Generator().manual_seed(4); "
         "print(json.dumps([torch.randn(3, 2, generator=g).tolist(), "
         "torch.randn(3, generator=g).tolist()]))"],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    b, a = (np.asarray(x, np.float32) for x in json.loads(oracle))
    np.testing.assert_array_equal(simulation.latents.causal["s"]["b"], 2 * b.reshape(3, 2))
    np.testing.assert_array_equal(simulation.latents.causal["s"]["a"], a)
    np.testing.assert_array_equal(*simulation.mechanisms)


def test_causal_official_draws_without_torch_name_the_missing_package(monkeypatch, tmp_path):
    (tmp_path / "torch.py").write_text("raise ImportError('no torch here')\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path))
    sim = SimulationConfig(n_c=2, n_s=2, n_m=0, mixing_layers=1)
    with pytest.raises(ConfigError, match=r"simulation\.draws.*PyTorch"):
        official_simulation(0, sim, p_change=1.0, statistical=False, causal_strength=1.0)


def test_official_draws_stack_per_run_and_reject_what_they_cannot_draw():
    sim = SimulationConfig(n_c=2, n_s=2, n_m=0, mixing_layers=1, draws="official")
    hypers = stack_hyperparams([Hyperparams(statistical=True), Hyperparams(p_change=0.5)])
    stacked = official_simulations(np.array([3, 8]), hypers, sim)
    for i, (seed, statistical) in enumerate(((3, True), (8, False))):
        alone = official_simulation(
            seed, sim, p_change=[1.0, 0.5][i], statistical=statistical, causal_strength=0.0
        )
        for a, b in zip(jax.tree.leaves(stacked), jax.tree.leaves(alone), strict=True):
            np.testing.assert_array_equal(a[i], b)
    for key, value in (("mixing", "linear"), ("discrete", "c")):
        with pytest.raises(ConfigError, match=rf"simulation\.{key}.*draws = 'official'"):
            SimulationConfig(**{key: value, "draws": "official"})
