"""The generative structure as data: factors and views, K views end to end, the subsets
structure of multiview-crl, the nonlinear dependence, the new result columns, and the
identifiability pattern itself."""

from __future__ import annotations

import csv
import itertools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from scipy.optimize import linear_sum_assignment
from scipy.stats import pearsonr
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

from jaxmmcl.config import (
    ConfigError,
    Hyperparams,
    SimulationConfig,
    run_config_from_dict,
    stack_hyperparams,
)
from jaxmmcl.evaluation.protocol import encode_eval_samples, evaluate_grid, readouts
from jaxmmcl.grid import train_grid
from jaxmmcl.latents import init_latent_params, key_slots, sample_latents
from jaxmmcl.runner import run_sweep
from jaxmmcl.structure import structure_of
from jaxmmcl.sweeps import load_sweep

VIEWS = [[0, 1, 2, 3, 4], [0, 1, 2, 4, 5], [0, 1, 2, 3, 5], [0, 1, 3, 4, 5]]


def test_the_paper_structure_with_k_views():
    structure = structure_of(SimulationConfig(n_c=2, n_s=3, n_m=1, n_views=3))
    names = [f.name for f in structure.factors]
    assert names == ["c", "s", "s_tilde", "s_tilde3", "m1", "m2", "m3"]
    assert [f.copy_of for f in structure.factors][2:4] == ["s", "s"]
    assert [v.inputs[1][0] for v in structure.views] == ["s", "s_tilde", "s_tilde3"]
    assert key_slots(structure) == 2 + 2 * 2 + 3
    # The content shared by every subset of views is c; the copies of s differ per view.
    assert structure.subsets() == ((0, 1), (0, 2), (1, 2), (0, 1, 2))
    assert structure.shared((0, 2)) == (("c", 0), ("c", 1))


def test_the_subsets_structure_of_multiview_crl():
    structure = structure_of(SimulationConfig(structure="subsets", views=VIEWS))
    assert structure.factor("z").size == 6 and structure.n_views == 4
    assert len(structure.subsets()) == 11  # every subset of >= 2 views shares a latent
    assert [c for _, c in structure.shared((0, 1, 2, 3))] == [0, 1]
    # View 2 observes (0, 1, 2, 4, 5): the content {0, 1, 2, 4} of views 1 and 2 is at 0-3.
    assert structure.content_dims((0, 1), 1) == (0, 1, 2, 3)
    assert structure.content_dims((0, 1), 0) == (0, 1, 2, 4)
    cfg = run_config_from_dict(
        {"simulation": {"structure": "subsets", "views": VIEWS}, "eval": {"readout": "subsets"}}
    )
    assert cfg.static.encoding_size(2) == 5 and cfg.static.widths(0)[0] == 50
    assert len(readouts(cfg.static)) == 6 * 2 + 4 * 3 + 4


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"simulation": {"structure": "subsets"}},
            r"simulation.views: expected at least two views",
        ),
        ({"simulation": {"views": [[0, 1]]}}, r"simulation.views: expected \[\] unless"),
        ({"simulation": {"structure": "subsets", "views": [[0, 0]]}}, r"simulation.views"),
        ({"simulation": {"n_views": 1}}, r"simulation.n_views: expected an integer >= 2"),
        ({"simulation": {"mixing": "tanh"}}, r"simulation.mixing: expected one of mlp,"),
        ({"simulation": {"causal": "cubic"}}, r"simulation.causal: expected one of linear"),
        ({"train": {"loss": "subsets"}}, r"model.encoding_size: expected 0 with train.loss"),
        ({"eval": {"metrics": ["mcc", "nope"]}}, r"eval.metrics: expected one of"),
        (
            {
                "simulation": {"structure": "subsets", "views": [[0, 1], [1, 2, 3]]},
                "simulation.shared_mixing": True,
            },
            r"simulation.shared_mixing: expected false",
        ),
    ],
)
def test_bad_structures_are_refused_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=message):
        run_config_from_dict(values)


def test_the_nonlinear_dependence_adds_strength_times_a_random_mlp_of_the_parent():
    """Oracle: the formula s = s0 + strength * W2 tanh(W1 c) + a in NumPy, with s0 the style
    noise the same key draws without the dependence."""
    sim = SimulationConfig(n_c=2, n_s=3, n_m=1, causal="mlp")

    def draw(strength):
        hyper = jax.tree.map(
            lambda x: x[0], stack_hyperparams([Hyperparams(causal_strength=strength)])
        )
        params = init_latent_params(jax.random.key(1), sim, hyper)
        return params, sample_latents(jax.random.key(2), params, 500)

    params, lat = draw(2.0)
    _, free = draw(0.0)
    p = jax.tree.map(np.asarray, params.causal["s"])
    c = np.asarray(lat["c"], np.float64)
    expected = np.asarray(free["s"]) + np.tanh(c @ p["w1"].T) @ p["w2"].T + p["a"]
    np.testing.assert_allclose(lat["s"], expected, rtol=1e-4, atol=1e-5)
    np.testing.assert_array_equal(lat["c"], free["c"])
    assert np.abs(p["a"]).max() > 0 and not np.any(jax.device_get(free["s"]) == lat["s"])


def _grid_config(n_views=3, **eval_):
    return run_config_from_dict(
        TINY
        | {
            "simulation": TINY["simulation"] | {"n_views": n_views},
            "eval": TINY["eval"] | eval_,
        }
    ).static


def test_run_i_of_a_k_view_grid_equals_the_run_alone():
    static = _grid_config()
    hypers = [Hyperparams(p_change=0.5, learning_rate=2e-3), Hyperparams(causal_strength=1.0)]
    seeds = [7, 2]
    grid = train_grid(static, jnp.asarray(seeds), stack_hyperparams(hypers))
    assert set(grid.params) == {"g1", "g2", "g3"}
    for i, (seed, hyper) in enumerate(zip(seeds, hypers, strict=True)):
        alone = train_grid(static, jnp.asarray([seed]), stack_hyperparams([hyper]))
        chex.assert_trees_all_equal(
            jax.tree.map(lambda x, i=i: x[i], grid.params),
            jax.tree.map(lambda x: x[0], alone.params),
        )


def test_a_third_view_trains_and_evaluates_end_to_end(tmp_path):
    sweep = load_sweep(
        {
            "name": "three",
            "base": TINY | {"simulation": TINY["simulation"] | {"n_views": 3}},
            "axes": {"seed": [0]},
        }
    )
    rows = run_sweep(sweep, tmp_path, show_progress=False)
    assert {r["encoder"] for r in rows} == {"h1", "h2", "h3"}
    own = {(r["encoder"], r["role"]): r["factor"] for r in rows if r["role"]}
    assert own["h3", "s"] == "s_tilde3" and own["h2", "m"] == "m2" and own["h1", "c"] == "c"
    assert {r["status"] for r in rows} == {"ok"} and np.isfinite(
        [r["r2_linear"] for r in rows]
    ).all()
    assert (tmp_path / "three.md").is_file()


def test_a_new_variant_is_one_object_and_one_registry_line(tmp_path, monkeypatch):
    """A mechanism, a dependence, a loss and a metric registered from outside the package run
    a sweep end to end by name: the metric's column reaches results.csv and the report."""
    from jaxmmcl.evaluation import metrics
    from jaxmmcl.latents import DEPENDENCES, Dependence
    from jaxmmcl.losses import LOSSES, Loss
    from jaxmmcl.mechanisms import MECHANISMS, Mechanism

    def quadratic_r2(key, h_fit, h_test, y_fit, y_test, targets):
        square = lambda h: jnp.concatenate([h, h**2], axis=-1)  # noqa: E731
        out = metrics.linear(key, square(h_fit), square(h_test), y_fit, y_test, targets)
        return {"r2_quadratic": out["r2_linear"]}

    infonce = LOSSES["infonce"].apply
    monkeypatch.setitem(MECHANISMS, "tanh", Mechanism(jnp.tanh, jnp.arctanh))
    monkeypatch.setitem(
        DEPENDENCES,
        "quadratic",
        Dependence(
            lambda keys, n_parent, n_child, strength: (
                strength * jax.random.normal(keys[0], (n_child, n_parent))
            ),
            lambda b, parent, noise: noise + (parent**2) @ b.T,
        ),
    )
    monkeypatch.setitem(
        LOSSES, "infonce_cold", Loss(lambda hs, negs, t, s, p: infonce(hs, negs, t / 2, s, p))
    )
    monkeypatch.setitem(
        metrics.METRICS,
        "r2_quadratic",
        metrics.Metric(("r2_quadratic",), ("quadratic R²",), quadratic_r2),
    )
    base = TINY | {
        "simulation": TINY["simulation"]
        | {"mixing": "tanh", "causal": "quadratic", "causal_strength": 1.0, "p_change": 0.75},
        "train": TINY["train"] | {"loss": "infonce_cold"},
        "eval": TINY["eval"] | {"metrics": ["r2_linear", "r2_quadratic"]},
    }
    sweep = load_sweep(
        {
            "name": "plugins",
            "base": base,
            "axes": {"setting": {"causal": {"simulation.p_change": 0.75}}, "seed": [0]},
            "report": [{"lines": {"x": "setting", "score": "r2_quadratic"}}],
        }
    )
    rows = run_sweep(sweep, tmp_path, show_progress=False)
    with open(tmp_path / "results.csv") as f:
        header = next(csv.reader(f))
    assert header.index("r2_linear") < header.index("r2_quadratic") < header.index("val_loss")
    assert {r["status"] for r in rows} == {"ok"}
    # Quadratic features contain the linear ones: on the fit set never worse; on the test set
    # of 64 samples within sampling noise.
    linear = np.asarray([r["r2_linear"] for r in rows])
    quadratic = np.asarray([r["r2_quadratic"] for r in rows])
    assert np.isfinite(quadratic).all() and (quadratic > linear - 0.3).all()
    assert "quadratic R²" in (tmp_path / "plugins.md").read_text()


def test_mcc_and_per_latent_rows_equal_scipy_and_sklearn_on_the_same_encodings(tmp_path):
    """The sweep's results.csv, against scipy and scikit-learn on the encodings of the same runs
    (trained again: a run's numbers do not depend on how it is run)."""
    base = TINY | {"eval": TINY["eval"] | {"metrics": ["r2_linear", "mcc"], "per_latent": True}}
    sweep = load_sweep({"name": "mcc", "base": base, "axes": {"seed": [3]}})
    run_sweep(sweep, tmp_path, show_progress=False)
    with (tmp_path / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert {"mcc", "latent", "r2_linear"} <= set(rows[0]) and "r2_nonlinear" not in rows[0]
    static, runs = sweep.groups()[0]
    hypers = stack_hyperparams([runs[0].config.hyper])
    trained = train_grid(static, jnp.asarray([3]), hypers)
    samples = encode_eval_samples(
        jnp.uint32(3),
        jax.tree.map(lambda x: x[0], trained.simulation),
        jax.tree.map(lambda x: x[0], trained.params),
        static,
    )
    h_fit, h_test = np.asarray(samples.h_fit[0]), np.asarray(samples.h_test[0])
    y_fit, y_test = np.asarray(samples.y_fit), np.asarray(samples.y_test)
    columns = {"c": (0, 2), "s": (2, 4), "s_tilde": (4, 6), "m1": (6, 8), "m2": (8, 10)}
    for e, encoder in enumerate(("h1", "h2")):
        for factor, (lo, hi) in columns.items():
            block = next(
                r for r in rows if (r["encoder"], r["factor"], r["latent"]) == (encoder, factor, "")
            )
            corr = np.abs(
                [
                    [pearsonr(y_test[:, j], h_test[e][:, d])[0] for d in range(2)]
                    for j in range(lo, hi)
                ]
            )
            best = max(
                np.mean([corr[i, p[i]] for i in range(2)]) for p in itertools.permutations(range(2))
            )
            rows_, cols_ = linear_sum_assignment(-corr)
            assert best == pytest.approx(corr[rows_, cols_].mean())
            assert float(block["mcc"]) == pytest.approx(best, abs=1e-5)
            for j in range(lo, hi):
                latent = next(
                    r
                    for r in rows
                    if (r["encoder"], r["factor"], r["latent"]) == (encoder, factor, str(j - lo))
                )
                pred = LinearRegression().fit(h_fit[e], y_fit[:, j]).predict(h_test[e])
                assert float(latent["r2_linear"]) == pytest.approx(
                    r2_score(y_test[:, j], pred), abs=1e-4
                )
                assert latent["mcc"] == ""


def test_contrastive_training_recovers_content_and_discards_style():
    """The identifiability pattern itself, at a tiny size (multi-view, LeCun initialisation,
    which converges in fewer steps): after training, the content is predictable from both
    encodings and the style, which changes between the views, is not."""
    static = run_config_from_dict(
        {
            "simulation": {"n_c": 2, "n_s": 2, "n_m": 0},
            "model": {"widths": [32, 32], "init": "lecun"},
            "train": {
                "batch_size": 128,
                "steps": 1000,
                "log_every": 1000,
                "warmup_steps": 60,
                "schedule": "cosine",
            },
            "eval": {
                "n_fit": 512,
                "n_test": 512,
                "nonlinear": "mlp",
                "mlp_epochs": 100,
                "val_batches": 1,
                "val_batch_size": 128,
            },
        }
    ).static
    hypers = stack_hyperparams([Hyperparams(p_change=1.0, learning_rate=3e-3)])
    trained = train_grid(static, jnp.asarray([0]), hypers)
    scores = evaluate_grid(static, jnp.asarray([0]), trained.simulation, trained.params, hypers)
    r2 = dict(zip(scores.factors, np.asarray(scores.r2_nonlinear)[0].T, strict=True))
    assert min(r2["c"]) > 0.85
    assert max(r2["s"][0], r2["s_tilde"][1]) < 0.2
