"""The official code's simulations, seed for seed (``simulation.draws: official``).

The official ``main_mlp.py --seed K`` draws its per-simulation parameters from three generators,
each seeded with K; :func:`official_simulation` draws the same numbers the same way:

* covariances (``--statistical-dependence``): ``scipy.stats.wishart.rvs(n, I_n, size=1,
  random_state=K)`` for every block, so blocks of one size share one matrix, and the style
  perturbation's covariance is the style block's (as in jaxmmcl's own draws);
* mechanisms: NumPy's global generator after ``np.random.seed(K)``, consumed by
  ``construct_invertible_mlp`` for f1, then for f2: each draws its own pool of 25,000 matrices
  for its condition-number threshold (the pool's 0.1 % quantile, the sorted pool's entry 25),
  then rejection-samples its layers (entries uniform in [-1, 1], columns normalised to unit
  length, redrawn until the condition number is at most the threshold), cast to float32. The
  multi-view setting draws f2 too and then uses f1 for both;
* B and a (``--content-dependent-style``): ``torch.randn(n_s, n_c)`` then ``torch.randn(n_s)``
  from a ``torch.Generator`` seeded with K, on the CPU (the official code draws them on its
  device: on a CUDA device torch's generator gives other numbers), in a child process so that
  PyTorch never shares a process with XLA. B is scaled by ``simulation.causal_strength`` (1 in
  the official code).

Only the simulation is shared: the batches a run trains on come from its own key, so results
are comparable run for run in the simulation each seed draws, not step for step.
"""

from __future__ import annotations

import json
import subprocess
import sys

import jax
import numpy as np

from jaxmmcl.config import ConfigError, HyperArrays, SimulationConfig
from jaxmmcl.latents import LatentParams
from jaxmmcl.simulation import Simulation
from jaxmmcl.structure import structure_of

POOL = 25_000
POOL_QUANTILE = 0.001
# Candidates examined per vectorised draw of the rejection sampler (acceptance is about 0.1 %).
_CHUNK = 4096


def _normalised(a: np.ndarray) -> np.ndarray:
    # The official l2_normalize(A, axis=0): every column divided by its L2 norm.
    return a / np.sqrt(np.sum(a * a, axis=-2, keepdims=True))


def invertible_mlp_weights(rng: np.random.RandomState, n: int, n_layers: int) -> np.ndarray:
    """The layers of one ``construct_invertible_mlp(n, n_layers, cond_thresh_ratio=0.001,
    n_iter_cond_thresh=25000)`` call, drawn from ``rng`` exactly as that call draws them.

    Returns:
      ``(n_layers, n, n)`` float32 weights (``nn.Linear`` layout: a layer computes
      ``x @ W.T``); ``rng`` is left where the official call leaves NumPy's global state.
    """
    pool = _normalised(rng.uniform(-1, 1, (POOL, n, n)))
    threshold = np.sort(np.linalg.cond(pool))[int(POOL * POOL_QUANTILE)]
    layers = []
    for _ in range(n_layers):
        while True:
            state = rng.get_state()
            candidates = _normalised(rng.uniform(-1, 1, (_CHUNK, n, n)))
            accepted = np.flatnonzero(np.linalg.cond(candidates) <= threshold)
            if accepted.size:
                first = int(accepted[0])
                # Rewind: the official loop stops drawing at the first accepted matrix.
                rng.set_state(state)
                rng.uniform(-1, 1, (first + 1, n, n))
                layers.append(candidates[first])
                break
    return np.stack(layers).astype(np.float32)


def _covariance_factor(seed: int, n: int, statistical: bool) -> np.ndarray:
    """``L`` with ``L @ L.T`` = the official Wishart draw (or the identity)."""
    if not statistical or n == 0:
        return np.eye(n, dtype=np.float32)
    from scipy.stats import wishart

    sigma = np.asarray(wishart.rvs(n, np.eye(n), size=1, random_state=seed)).reshape(n, n)
    # A symmetric square root: the draws with df = n can be nearly singular, where a Cholesky
    # factorisation may fail.
    values, vectors = np.linalg.eigh(sigma)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))).astype(np.float32)


# Run in a child process: PyTorch loaded into a process that also runs XLA has crashed in XLA's
# persistent compilation cache (segmentation faults while an executable was serialised).
_TORCH_DRAWS = """
import json, sys
try:
    import torch
except ImportError:
    sys.exit(3)
n_s, n_c, seeds = json.loads(sys.stdin.read())
out = {}
for seed in seeds:
    generator = torch.Generator(device="cpu")
    generator.manual_seed(seed)
    b = torch.randn(n_s, n_c, generator=generator)
    a = torch.randn(n_s, generator=generator)
    out[seed] = [b.tolist(), a.tolist()]
print(json.dumps(out))
"""


def causal_draws(seeds: list[int], n_s: int, n_c: int) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """The official B ``(n_s, n_c)`` and a ``(n_s,)`` of each seed, float32: ``torch.randn``
    from a CPU ``torch.Generator`` seeded with the seed, B first (one child process for all)."""
    request = json.dumps([n_s, n_c, [int(s) for s in seeds]])
    child = subprocess.run(
        [sys.executable, "-c", _TORCH_DRAWS], input=request, capture_output=True, text=True
    )
    if child.returncode == 3:
        raise ConfigError(
            "simulation.draws: 'official' with causal dependence draws B and a with PyTorch, "
            "which is not installed (pip install 'jaxmmcl[bench]')"
        )
    if child.returncode != 0:
        raise RuntimeError(f"drawing B and a with PyTorch failed:\n{child.stderr[-2000:]}")
    draws = json.loads(child.stdout)
    return {
        int(seed): (np.asarray(b, np.float32).reshape(n_s, n_c), np.asarray(a, np.float32))
        for seed, (b, a) in draws.items()
    }


def official_simulation(
    seed: int,
    sim: SimulationConfig,
    *,
    p_change: float,
    statistical: bool,
    causal_strength: float,
    causal: tuple[np.ndarray, np.ndarray] | None = None,
    change_scales: np.ndarray | None = None,
) -> Simulation:
    """The simulation of the official ``main_mlp.py --seed SEED`` (module docstring).

    Args:
      seed: the run's seed (>= 0).
      sim: block sizes and mechanisms (``mixing: mlp``, ``discrete: none``).
      p_change, statistical, causal_strength: the run's hyperparameters.
      causal: the seed's ``(B, a)`` from :func:`causal_draws`, when already drawn.
      change_scales: the run's ``simulation.change_scales`` (default: ones).

    Returns:
      A :class:`~jaxmmcl.simulation.Simulation` of NumPy float32 arrays (one run, unstacked).
    """
    seed = int(seed)
    structure = structure_of(sim)
    factor = {n: _covariance_factor(seed, n, statistical) for n in {sim.n_c, sim.n_s, sim.n_m}}
    rng = np.random.RandomState(seed)
    dim = structure.view_dim(0)
    f1 = invertible_mlp_weights(rng, dim, sim.mixing_layers)
    f2 = invertible_mlp_weights(rng, dim, sim.mixing_layers)
    if causal_strength != 0:
        b, a = causal if causal is not None else causal_draws([seed], sim.n_s, sim.n_c)[seed]
        b = np.float32(causal_strength) * b
    else:
        b = np.zeros((sim.n_s, sim.n_c), np.float32)
        a = np.zeros((sim.n_s,), np.float32)
    latents = LatentParams(
        covariance={f.name: factor[f.size] for f in structure.factors if f.copy_of is None},
        causal={"s": {"b": b, "a": a}},
        p_change=np.float32(p_change),
        change_scales=np.ones((1,), np.float32) if change_scales is None else change_scales,
        structure=structure,
        n_classes=sim.n_classes,
        dependence=sim.causal,
    )
    return Simulation(latents, (f1, f1 if sim.shared_mixing else f2))


def official_simulations(seeds, hypers: HyperArrays, sim: SimulationConfig) -> Simulation:
    """:func:`official_simulation` of R runs, stacked (leading axis R, NumPy arrays).

    Args:
      seeds: ``(R,)`` integer seeds.
      hypers: the runs' stacked hyperparameters.
      sim: the group's simulation config.
    """
    hypers = jax.device_get(hypers)
    seeds = [int(s) for s in np.asarray(seeds)]
    strengths = np.asarray(hypers.causal_strength)
    causal_seeds = [s for s, strength in zip(seeds, strengths, strict=True) if strength != 0]
    causal = causal_draws(causal_seeds, sim.n_s, sim.n_c) if causal_seeds else {}
    runs = [
        official_simulation(
            seed,
            sim,
            p_change=float(hypers.p_change[i]),
            statistical=bool(hypers.statistical[i] > 0),
            causal_strength=float(hypers.causal_strength[i]),
            causal=causal.get(seed),
            change_scales=np.asarray(hypers.change_scales[i], np.float32),
        )
        for i, seed in enumerate(seeds)
    ]
    return jax.tree.map(lambda *leaves: np.stack(leaves), *runs)
