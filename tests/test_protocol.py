"""The evaluation protocol: block bookkeeping and scores against scikit-learn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from sklearn.linear_model import LinearRegression, LogisticRegression
from sklearn.metrics import r2_score

from jaxmmcl.config import Hyperparams, SimulationConfig, run_config_from_dict, stack_hyperparams
from jaxmmcl.evaluation import metrics
from jaxmmcl.evaluation.linear import block_means
from jaxmmcl.evaluation.metrics import METRICS, Targets
from jaxmmcl.evaluation.protocol import (
    discrete_factors,
    encode_eval_samples,
    evaluate_grid,
    readouts,
)
from jaxmmcl.grid import train_grid
from jaxmmcl.keys import run_keys
from jaxmmcl.latents import code_classes, init_latent_params
from jaxmmcl.mechanisms import invert_mechanism
from jaxmmcl.objective import batch_loss
from jaxmmcl.simulation import Simulation, sample_intervened_views

KEY = jax.random.key(0)


def spec(sizes, discrete=None, **kwargs):
    """The metrics' static description of targets of these sizes."""
    fields = {
        "discrete": discrete or (False,) * len(sizes),
        "n_classes": 3,
        "epochs": 500,
        "nonlinear": "mlp",
        "mcc": "pearson",
        "per_latent": False,
    }
    return Targets(sizes=sizes, **(fields | kwargs))


def synthetic_samples(n=400, seed=0):
    """Targets (c: 2, s: 2, m1: 1); h1 sees c linearly, h2 sees c nonlinearly. Returns
    ``(h_fit, h_test, y_fit, y_test)`` with readouts ``(2, n, 3)`` and the sizes."""
    rng = np.random.default_rng(seed)
    y = rng.normal(size=(2 * n, 5)).astype(np.float32)
    c = y[:, :2]
    h1 = np.concatenate([c @ np.array([[1.0, 0.5], [-0.3, 2.0]]), rng.normal(size=(2 * n, 1))], 1)
    h2 = np.concatenate([np.tanh(c) + c**3 / 5, rng.normal(size=(2 * n, 1))], 1)
    h = np.stack([h1, h2]).astype(np.float32)
    return (jnp.asarray(h[:, :n]), jnp.asarray(h[:, n:]), y[:n], y[n:]), (2, 2, 1)


def test_block_means():
    per_column = jnp.asarray([[1.0, 3.0, 5.0, 7.0, 9.0]])
    np.testing.assert_allclose(block_means(per_column, (2, 2, 1)), [[2.0, 6.0, 9.0]])


def test_linear_scores_match_sklearn_per_block_and_per_latent():
    samples, sizes = synthetic_samples()
    scores = metrics.linear(KEY, *samples, spec(sizes, per_latent=True))
    got, per_latent = np.asarray(scores["r2_linear"]), np.asarray(scores["r2_linear@latent"])
    h_fit, h_test, y_fit, y_test = samples
    bounds = np.cumsum((0, *sizes))
    for e in range(2):
        model = LinearRegression().fit(h_fit[e], y_fit)
        pred = model.predict(h_test[e])
        for b in range(3):
            cols = slice(bounds[b], bounds[b + 1])
            np.testing.assert_allclose(
                got[e, b], r2_score(y_test[:, cols], pred[:, cols]), atol=1e-4
            )
        for j in range(5):
            alone = LinearRegression().fit(h_fit[e], y_fit[:, j]).predict(h_test[e])
            np.testing.assert_allclose(per_latent[e, j], r2_score(y_test[:, j], alone), atol=1e-4)
    assert got[0, 0] > 0.99 and abs(got[0, 1]) < 0.05


def test_mlp_regressor_finds_the_nonlinear_content():
    samples, sizes = synthetic_samples()
    got = np.asarray(metrics.nonlinear_mlp(KEY, *samples, spec(sizes))["r2_nonlinear"])
    linear = np.asarray(metrics.linear(KEY, *samples, spec(sizes))["r2_linear"])
    assert got[1, 0] > 0.95 and got[1, 0] > linear[1, 0] + 0.02
    # Independent blocks: nothing to find (a small negative R^2 is overfitting on 400 samples).
    assert -0.3 < got[0, 1] < 0.1 and -0.3 < got[1, 2] < 0.1


def test_mlp_regressor_r2_is_sklearns_mlpregressor():
    """scikit-learn's MLPRegressor(max_iter=1000) on the same data: R^2 within 0.02, for one
    target and for two (whose gradient scikit-learn does not divide by the outputs)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    from jaxmmcl.evaluation.mlp import mlp_r2

    rng = np.random.default_rng(0)
    n = 400
    x = rng.normal(size=(2 * n, 3)).astype(np.float32)
    noise = 0.3 * rng.normal(size=(2 * n, 2))
    y = np.stack([np.sin(2 * x[:, 0]), x[:, 1] * x[:, 2]], 1) + noise
    y = y.astype(np.float32)
    for cols in ([0], [0, 1]):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model = MLPRegressor(max_iter=1000, random_state=0).fit(x[:n], y[:n, cols].squeeze())
        expected = r2_score(y[n:, cols], model.predict(x[n:]).reshape(n, -1))
        got = mlp_r2(jax.random.key(0), x[:n], y[:n, cols], x[n:], y[n:, cols])
        assert abs(float(np.mean(got)) - expected) < 0.02
        assert expected > 0.7


def test_kernel_ridge_scores_match_sklearn_grid_search_per_block_and_per_latent():
    from sklearn.kernel_ridge import KernelRidge
    from sklearn.model_selection import GridSearchCV

    from jaxmmcl.evaluation.kernel_ridge import ALPHAS, GAMMAS

    (h_fit, h_test, y_fit, y_test), sizes = synthetic_samples(n=120)
    runs = [(h_fit, h_test, y_fit, y_test), (h_fit[:, ::-1], h_test[:, ::-1], y_fit, y_test)]
    stacked = [np.stack([np.asarray(r[i]) for r in runs]) for i in range(4)]
    scores = metrics.nonlinear_kernel_ridge(
        *stacked, spec(sizes, nonlinear="kernel_ridge", per_latent=True)
    )
    got, per_latent = scores["r2_nonlinear"], scores["r2_nonlinear@latent"]
    assert got.shape == (2, 2, 3) and per_latent.shape == (2, 2, 5)
    bounds = np.cumsum((0, *sizes))

    def sklearn(cols):
        search = GridSearchCV(KernelRidge(kernel="rbf"), {"alpha": ALPHAS, "gamma": GAMMAS}, cv=3)
        search.fit(np.asarray(h_fit[1], np.float64), y_fit[:, cols])
        return r2_score(y_test[:, cols], search.predict(h_test[1]))

    for b in range(3):
        np.testing.assert_allclose(
            got[0, 1, b], sklearn(slice(bounds[b], bounds[b + 1])), atol=1e-4
        )
    for j in (0, 4):
        np.testing.assert_allclose(per_latent[0, 1, j], sklearn(j), atol=1e-4)
    assert got[0, 1, 0] > 0.95


def test_accuracy_scores_match_sklearn_logistic_regression_per_component():
    """Blocks (c: 2, s: 2, m1: 1), s discrete with 3 classes: one component is a noisy
    function of h1, the other is independent of everything."""
    n, k = 300, 3
    rng = np.random.default_rng(1)
    h = rng.normal(size=(2, 2 * n, 3)).astype(np.float32)
    cut = np.quantile(h[0, :, 0], [1 / 3, 2 / 3])
    labels = np.stack(
        [np.digitize(h[0, :, 0] + 0.3 * rng.normal(size=2 * n), cut), rng.integers(0, k, 2 * n)],
        axis=1,
    )
    y = np.concatenate(
        [
            rng.normal(size=(2 * n, 2)),
            np.asarray(code_classes(jnp.asarray(labels), k)),
            rng.normal(size=(2 * n, 1)),
        ],
        axis=1,
    ).astype(np.float32)
    targets = spec((2, 2, 1), discrete=(False, True, False), n_classes=k, epochs=200)
    got = metrics.accuracy(KEY, jnp.asarray(h[:, :n]), jnp.asarray(h[:, n:]), y[:n], y[n:], targets)
    got = np.asarray(got["acc_linear"])
    assert got.shape == (2, 3) and np.isnan(got[:, [0, 2]]).all()
    for e in range(2):
        per_component = [
            LogisticRegression().fit(h[e, :n], labels[:n, j]).score(h[e, n:], labels[n:, j])
            for j in range(2)
        ]
        np.testing.assert_allclose(got[e, 1], np.mean(per_component), atol=0.01)
    assert got[0, 1] > got[1, 1] + 0.2


@pytest.mark.parametrize("method", ["pearson", "spearman"])
def test_mcc_is_scipys_correlations_optimally_matched(method):
    """Oracle: scipy's pearsonr/spearmanr of every component with every readout dimension,
    the best one-to-one matching found by trying every permutation."""
    import itertools

    from scipy.stats import pearsonr, spearmanr

    (h_fit, h_test, y_fit, y_test), sizes = synthetic_samples(n=200)
    targets = spec(sizes, mcc=method)
    scores = metrics.correlations(KEY, h_fit, h_test, y_fit, y_test, targets)
    got = METRICS["mcc"].finish(jax.device_get(scores), targets)["mcc"]
    correlate = pearsonr if method == "pearson" else spearmanr
    bounds = np.cumsum((0, *sizes))
    for e in range(2):
        for b in range(3):
            cols = range(bounds[b], bounds[b + 1])
            corr = np.abs(
                [[correlate(y_test[:, c], h_test[e][:, d])[0] for d in range(3)] for c in cols]
            )
            best = max(
                np.mean([corr[i, p[i]] for i in range(len(cols))])
                for p in itertools.permutations(range(3), len(cols))
            )
            np.testing.assert_allclose(got[e, b], best, atol=1e-5)
    assert got[0, 0] > 0.9 and got[0, 1] < 0.2


def test_intervention_ideal_encoders_predict_the_permuted_content_not_the_original():
    """The paper's Figure 8 pattern: both encodings predict c' (R^2 near 1), neither c."""
    sim = SimulationConfig(n_c=2, n_s=2, n_m=1, mixing="linear", mixing_layers=1)
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([Hyperparams(p_change=0.5)]))
    # Orthogonal one-layer mechanisms: invertible without the rejection sampler's compile time.
    rng = np.random.default_rng(0)
    f1, f2 = (np.linalg.qr(rng.normal(size=(5, 5)))[0][None].astype(np.float32) for _ in "12")
    latent_params = init_latent_params(jax.random.key(0), sim, hyper)
    simulation = Simulation(latent_params, (jnp.asarray(f1), jnp.asarray(f2)))
    (x1, x2), latents, permuted = sample_intervened_views(jax.random.key(1), simulation, sim, 800)
    # Ideal encoders: each recovers the content of its own input exactly.
    h1 = invert_mechanism(f1, x1, sim.mixing)[:, :2]
    h2 = invert_mechanism(f2, x2, sim.mixing)[:, :2]
    h, y = jnp.stack([h1, h2]), jnp.concatenate([latents["c"], permuted["c"]], axis=1)
    # Rows: h1, h2; columns: c, c_perm.
    scores = metrics.linear(KEY, h[:, :400], h[:, 400:], y[:400], y[400:], spec((2, 2)))
    np.testing.assert_allclose(scores["r2_linear"], [[0.0, 1.0], [0.0, 1.0]], atol=0.03)


@pytest.fixture(scope="module")
def discrete_intervention_grid():
    """Two tiny runs with discrete content (3 classes) under the intervention test."""
    static = run_config_from_dict(
        TINY
        | {
            "simulation": TINY["simulation"] | {"discrete": "c", "n_classes": 3},
            "train": TINY["train"] | {"steps": 4, "log_every": 4},
            "eval": TINY["eval"] | {"intervention": True},
        }
    ).static
    seeds = jnp.asarray([0, 5])
    hypers = stack_hyperparams(
        [
            Hyperparams(learning_rate=1e-3),
            Hyperparams(p_change=0.5, causal_strength=1.0, temperature=0.5),
        ]
    )
    trained = train_grid(static, seeds, hypers)
    scores = evaluate_grid(static, seeds, trained.simulation, trained.params, hypers)
    return static, seeds, hypers, trained, scores


def test_evaluate_grid_scores_discrete_and_permuted_content(discrete_intervention_grid):
    static, seeds, _, trained, scores = discrete_intervention_grid
    assert scores.factors == ("c", "c_perm", "s", "s_tilde", "m1", "m2")
    assert discrete_factors(static) == ("c", "c_perm")
    for r2 in (scores.r2_linear, scores.r2_nonlinear):
        assert r2.shape == (2, 2, 6) and np.isfinite(r2).all()
    for acc in (scores.acc_linear, scores.acc_nonlinear):
        assert acc.shape == (2, 2, 6) and np.isnan(acc[..., 2:]).all()
        assert np.all((acc[..., :2] >= 0) & (acc[..., :2] <= 1))
    assert scores.val_loss.shape == (2,) and np.isfinite(scores.val_loss).all()
    # The c_perm targets are the c targets permuted across the set (same multiset of rows).
    samples = jax.vmap(lambda *run: encode_eval_samples(*run, static))(
        jnp.asarray(seeds, jnp.uint32), trained.simulation, trained.params
    )
    assert readouts(static)[1].encoder == "h2"
    for y in (samples.y_fit, samples.y_test):
        for c, c_perm in zip(np.asarray(y[..., :2]), np.asarray(y[..., 2:4]), strict=True):
            rows, counts = np.unique(c, axis=0, return_counts=True)
            rows_perm, counts_perm = np.unique(c_perm, axis=0, return_counts=True)
            np.testing.assert_array_equal(rows, rows_perm)
            np.testing.assert_array_equal(counts, counts_perm)


def test_validation_loss_is_the_mean_training_loss_on_eval_derived_keys(discrete_intervention_grid):
    static, seeds, hypers, trained, scores = discrete_intervention_grid
    assert (static.eval.val_batches, static.eval.val_batch_size) == (2, 32)
    loss = jax.jit(batch_loss, static_argnums=(4, 5))
    for i, seed in enumerate(np.asarray(seeds)):
        # eval.val_batches batches from the evaluation key (the training key is run_keys[1]).
        keys = jax.random.split(jax.random.fold_in(run_keys(seed)[2], 1), 2)
        run = jax.tree.map(lambda x, i=i: x[i], (trained.params, trained.simulation, hypers))
        expected = np.mean([loss(run[0], key, run[1], run[2], static, 32) for key in keys])
        np.testing.assert_allclose(scores.val_loss[i], expected, rtol=1e-5)


def test_device_metrics_never_deadlock_two_devices_that_fill_the_thread_pool():
    """Three width groups of readouts (12 x 4, 12 x 3, 4 x 2 dimensions, as multiview-crl's
    subsets) of 1,024 samples, on two CPU devices sharing a pool of two threads: batched
    LAPACK calls had deadlocked the programs (metrics calls LAPACK one readout at a time)."""
    import os
    import subprocess
    import sys

    script = (
        "import jax, jax.numpy as jnp, numpy as np\n"
        "from jaxmmcl.distributed import per_run, runs_mesh\n"
        "from jaxmmcl.evaluation import metrics\n"
        "t = metrics.Targets((1,) * 6, (False,) * 6, 3, 5, 'kernel_ridge', 'pearson', True)\n"
        "def run(k, hs, y):\n"
        "    return [metrics.linear(k, h, h, y, y, t)['r2_linear'] for h in hs]\n"
        "f = jax.jit(per_run(run, runs_mesh(), 1))\n"
        "r = np.random.default_rng(0)\n"
        "hs = [jnp.asarray(r.normal(size=(2, n, 1024, w)), jnp.float32)\n"
        "      for n, w in ((12, 4), (12, 3), (4, 2))]\n"
        "y = jnp.asarray(r.normal(size=(2, 1024, 6)), jnp.float32)\n"
        "keys = jax.random.split(jax.random.key(0), 2)\n"
        "print([o.shape for o in f(keys, hs, y)])\n"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("NPROC", "JAX_NUM_CPU_DEVICES")}
    out = subprocess.run(
        [sys.executable, "-c", script],
        env=env | {"JAX_NUM_CPU_DEVICES": "2", "NPROC": "2"},
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert out.stdout.strip() == "[(2, 12, 6), (2, 12, 6), (2, 4, 6)]"
