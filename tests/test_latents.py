"""The generative process: latents, their dependence structure, and the mechanisms."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxmmcl.config import Hyperparams, SimulationConfig, stack_hyperparams
from jaxmmcl.latents import code_classes, decode_classes, init_latent_params, sample_latents
from jaxmmcl.mechanisms import (
    MECHANISMS,
    apply_mechanism,
    condition_threshold,
    init_mixings,
    invert_mechanism,
)
from jaxmmcl.simulation import init_simulation, sample_intervened_views, sample_views
from jaxmmcl.structure import structure_of

SIM = SimulationConfig(n_c=3, n_s=4, n_m=2)
DIM = 3 + 4 + 2


def hyper(**kwargs):
    return jax.tree.map(lambda x: x[0], stack_hyperparams([Hyperparams(**kwargs)]))


def draw(n=20_000, sim=SIM, **kwargs):
    key = jax.random.key(0)
    params = init_latent_params(jax.random.fold_in(key, 1), sim, hyper(**kwargs))
    return params, sample_latents(jax.random.fold_in(key, 2), params, n)


def test_content_is_shared_and_blocks_have_their_sizes():
    simulation = init_simulation(jax.random.key(3), SIM, hyper(p_change=0.5))
    (x1, x2), lat = sample_views(jax.random.key(4), simulation, SIM, 100)
    assert x1.shape == x2.shape == (100, DIM)
    assert lat["s"].shape == lat["s_tilde"].shape == (100, 4) and lat["m1"].shape == (100, 2)
    assert [v.inputs for v in structure_of(SIM).views] == [
        (("c", None), ("s", None), ("m1", None)),
        (("c", None), ("s_tilde", None), ("m2", None)),
    ]


@pytest.mark.parametrize("p_change", [0.0, 0.25, 0.75, 1.0])
def test_fraction_of_changed_style_components_matches_p_change(p_change):
    _, lat = draw(p_change=p_change)
    changed = np.mean(np.asarray(lat["s"] != lat["s_tilde"]))
    assert abs(changed - p_change) < 0.01


def test_independent_blocks_are_standard_normal_and_uncorrelated():
    _, lat = draw()
    z = np.asarray(jnp.concatenate([lat[k] for k in ("c", "s", "m1", "m2")], axis=1))
    np.testing.assert_allclose(np.cov(z.T), np.eye(z.shape[1]), atol=0.05)


def test_causal_dependence_shows_in_the_sample_covariance():
    params, lat = draw(causal_strength=2.0)
    c, s = np.asarray(lat["c"]), np.asarray(lat["s"])
    # s = s0 + B c + a with c ~ N(0, I): Cov(s, c) = B, Cov(s) = I + B B^T.
    b = np.asarray(params.causal["s"]["b"])
    cross = (s - s.mean(0)).T @ (c - c.mean(0)) / len(c)
    np.testing.assert_allclose(cross, b, atol=0.1)
    np.testing.assert_allclose(np.cov(s.T), np.eye(4) + b @ b.T, atol=0.3 * np.abs(b).max() ** 2)
    _, indep = draw(causal_strength=0.0)
    cross0 = np.asarray(indep["s"]).T @ np.asarray(indep["c"]) / len(c)
    assert np.abs(cross0).max() < 0.05


def test_statistical_dependence_uses_the_wishart_covariance():
    params, lat = draw(statistical=True)
    factor = np.asarray(params.covariance["c"])
    assert not np.allclose(factor, np.eye(3))
    np.testing.assert_allclose(
        np.cov(np.asarray(lat["c"]).T),
        factor @ factor.T,
        atol=0.05 * np.abs(factor @ factor.T).max(),
    )


def test_statistical_blocks_of_one_size_share_their_covariance_and_stay_uncorrelated():
    # As in the paper's code, which seeds every block's Wishart draw alike.
    sim = SimulationConfig(n_c=3, n_s=3, n_m=3)
    params, lat = draw(sim=sim, statistical=True)
    for name in ("s", "m1", "m2"):
        np.testing.assert_array_equal(params.covariance[name], params.covariance["c"])
    blocks = [np.asarray(lat[b]) for b in ("c", "s", "m1", "m2")]
    cov = np.asarray(params.covariance["c"]) @ np.asarray(params.covariance["c"]).T
    scale = np.sqrt(np.diag(cov))
    for i, a in enumerate(blocks):
        for b in blocks[i + 1 :]:
            cross = (a - a.mean(0)).T @ (b - b.mean(0)) / len(a)
            assert np.abs(cross / np.outer(scale, scale)).max() < 0.05
    # Blocks of different sizes still get a covariance each (SIM: n_c 3, n_s 4, n_m 2).
    params, _ = draw(statistical=True)
    assert params.covariance["s"].shape == (4, 4) and params.covariance["m1"].shape == (2, 2)
    np.testing.assert_array_equal(params.covariance["m1"], params.covariance["m2"])


def test_statistical_style_perturbation_has_the_style_covariance():
    # p_change = 1: s_tilde - s = eps. Its covariance is the style block's (the paper's code
    # draws both from one Wishart random state), so no style direction is nearly invariant.
    params, lat = draw(statistical=True, p_change=1.0)
    factor = np.asarray(params.covariance["s"])
    cov = factor @ factor.T
    eps = np.asarray(lat["s_tilde"] - lat["s"])
    np.testing.assert_allclose(np.cov(eps.T), cov, atol=0.05 * np.abs(cov).max())
    # Every style direction changes by as much variance as it has (no causal term here).
    s = np.asarray(lat["s"])
    for v in np.linalg.eigh(cov)[1].T:
        assert abs(np.var(eps @ v) / np.var(s @ v) - 1.0) < 0.06


def test_empty_modality_specific_blocks_work():
    sim = SimulationConfig(n_c=2, n_s=2, n_m=0)
    simulation = init_simulation(jax.random.key(0), sim, hyper())
    (x1, _), lat = sample_views(jax.random.key(1), simulation, sim, 10)
    assert x1.shape == (10, 4) and lat["m1"].shape == (10, 0)


def test_mixing_matrices_meet_the_condition_rule():
    dim = DIM
    weights = init_mixings(jax.random.key(5), dim, 3, 2)
    assert weights.shape == (2, 3, dim, dim)
    w = np.asarray(weights, dtype=np.float64).reshape(-1, dim, dim)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)
    assert np.all(np.abs(w) <= 1.0)
    assert np.all(np.linalg.cond(w) <= condition_threshold(dim) * (1 + 1e-4))


ACTIVATIONS = {
    # Oracles: the activations of cl-ica's construct_invertible_mlp, in NumPy.
    "mlp": lambda x: np.where(x >= 0, x, 0.2 * x),
    "linear": lambda x: x,
    "elu": lambda x: np.where(x > 0, x, np.expm1(x)),
    "smooth_leaky_relu": lambda x: 0.2 * x + 0.8 * np.logaddexp(0, x),
    "softplus": lambda x: np.logaddexp(0, x),
    "drop": lambda x: np.where(x >= 0, x, 0.2 * x),
}


@pytest.mark.parametrize("kind", sorted(MECHANISMS))
def test_every_mechanism_computes_its_formula_and_inverts_if_it_says_so(kind):
    """The contract of a registered mechanism: its formula (NumPy oracle), and an invertible
    mechanism inverts; the non-invertible one loses what it drops."""
    assert set(ACTIVATIONS) == set(MECHANISMS)
    dim = DIM
    weights = init_mixings(jax.random.key(5), dim, 3, 1)[0]
    z = jax.random.normal(jax.random.key(6), (500, dim))
    x = apply_mechanism(weights, z, kind)
    w = np.asarray(weights, np.float64)
    expected = np.asarray(z, np.float64)
    if kind == "drop":
        expected = expected.copy()
        expected[:, 0] = 0.0
    for layer in range(3):
        expected = expected @ w[layer].T
        expected = ACTIVATIONS[kind](expected) if layer < 2 else expected
    np.testing.assert_allclose(x, expected, rtol=1e-4, atol=1e-4)
    if MECHANISMS[kind].invertible:
        np.testing.assert_allclose(invert_mechanism(weights, x, kind), z, atol=2e-3)
    else:
        with pytest.raises(ValueError, match="not invertible"):
            invert_mechanism(weights, x, kind)
        # Two latents that differ only in the dropped component give the same observation.
        np.testing.assert_array_equal(x, apply_mechanism(weights, z.at[:, 0].set(7.0), kind))


def test_a_mixing_layer_is_torch_linear_with_unit_norm_weights_out_of_each_input():
    """The official layer is nn.Linear(d, d, bias=False) with weight W: x @ W.T, W's columns
    (the weights leaving each input) of unit norm. Oracle: the formula in NumPy."""
    weights = np.asarray(init_mixings(jax.random.key(5), 4, 2, 1)[0], np.float64)
    z = np.asarray(jax.random.normal(jax.random.key(6), (50, 4)), np.float64)
    hidden = z @ weights[0].T
    expected = np.where(hidden >= 0, hidden, 0.2 * hidden) @ weights[1].T
    got = apply_mechanism(jnp.asarray(weights, jnp.float32), jnp.asarray(z, jnp.float32), "mlp")
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # Unit input 0 comes out as column 0 of W: its norm is 1 (a row of W is not normalised).
    out = np.asarray(apply_mechanism(jnp.asarray(weights[:1]), jnp.eye(4), "linear"))
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_condition_threshold_is_the_quantile_of_random_matrices():
    dim = 5
    rng = np.random.default_rng(123)
    w = rng.uniform(-1, 1, (25_000, dim, dim))
    w /= np.linalg.norm(w, axis=1, keepdims=True)
    reference = np.quantile(np.linalg.cond(w), 0.001)
    assert abs(condition_threshold(dim) - reference) / reference < 0.1


def test_shared_mixing_uses_one_mechanism():
    shared = SimulationConfig(n_c=2, n_s=2, n_m=0, shared_mixing=True)
    simulation = init_simulation(jax.random.key(0), shared, hyper())
    np.testing.assert_array_equal(*simulation.mechanisms)
    distinct = init_simulation(jax.random.key(0), SIM, hyper())
    assert not np.allclose(*distinct.mechanisms)


def test_class_code_is_standardised_and_decodes_back():
    k = 6
    labels = jnp.arange(k)
    values = np.asarray(code_classes(labels, k), np.float64)
    # Oracle: standardise the uniform distribution on {0..k-1} numerically.
    ref = (np.arange(k) - np.arange(k).mean()) / np.arange(k).std()
    np.testing.assert_allclose(values, ref, rtol=1e-6)
    np.testing.assert_array_equal(decode_classes(code_classes(labels, k), k), labels)


def _chi_square(values, support):
    counts = np.asarray([np.sum(values == v) for v in support])
    expected = len(values) / len(support)
    assert counts.sum() == len(values)  # no value outside the support
    return np.sum((counts - expected) ** 2 / expected)


# 99.9 % quantile of chi-square with 3 degrees of freedom (k = 4 classes).
CHI2_3_999 = 16.27


@pytest.mark.parametrize(
    ("discrete", "blocks"), [("c", ["c"]), ("s", ["s", "s_tilde"]), ("m", ["m1", "m2"])]
)
def test_discrete_blocks_are_uniform_classes_and_the_others_unchanged(discrete, blocks):
    k = 4
    sim = SimulationConfig(n_c=3, n_s=4, n_m=2, discrete=discrete, n_classes=k)
    _, lat = draw(sim=sim, p_change=0.5)
    support = np.asarray(code_classes(jnp.arange(k), k))
    for name in blocks:
        block = np.asarray(lat[name])
        for j in range(block.shape[1]):
            assert _chi_square(block[:, j], support) < CHI2_3_999, (name, j)
    # The other blocks are drawn from the same random streams as without the option.
    _, continuous = draw(sim=SIM, p_change=0.5)
    for name in {"c", "s", "s_tilde", "m1", "m2"} - set(blocks):
        np.testing.assert_array_equal(lat[name], continuous[name])


@pytest.mark.parametrize("p_change", [0.0, 0.25, 0.75, 1.0])
def test_discrete_style_changes_with_frequency_p_change_to_another_uniform_class(p_change):
    k = 4
    sim = SimulationConfig(n_c=3, n_s=4, n_m=2, discrete="s", n_classes=k)
    _, lat = draw(sim=sim, p_change=p_change)
    s = np.asarray(decode_classes(lat["s"], k))
    s_tilde = np.asarray(decode_classes(lat["s_tilde"], k))
    changed = s != s_tilde
    assert abs(changed.mean() - p_change) < 0.01
    if p_change > 0:
        # The new class is uniform over the k - 1 others: the shift mod k is uniform on 1..k-1.
        shift = (s_tilde - s)[changed] % k
        assert _chi_square(shift, [1, 2, 3]) < 13.8  # chi-square(2) 99.9 % quantile
        assert _chi_square(s_tilde[:, 0], range(k)) < CHI2_3_999


def test_intervention_permutes_the_content_of_both_modalities_before_mixing():
    simulation = init_simulation(jax.random.key(3), SIM, hyper(p_change=0.5))
    (x1, x2), lat, permuted = sample_intervened_views(jax.random.key(4), simulation, SIM, 200)
    c, c_perm = np.asarray(lat["c"]), np.asarray(permuted["c"])
    # One permutation of the samples for all components: each row of c_perm is a row of c.
    rows = {tuple(row) for row in c}
    assert len(rows) == 200 and {tuple(row) for row in c_perm} == rows
    assert np.mean(np.all(c == c_perm, axis=1)) < 0.05
    # Both mechanisms see the same permuted content; the other blocks stay as drawn.
    z1 = np.concatenate([c_perm, lat["s"], lat["m1"]], axis=1)
    z2 = np.concatenate([c_perm, lat["s_tilde"], lat["m2"]], axis=1)
    f1, f2 = simulation.mechanisms
    np.testing.assert_allclose(invert_mechanism(f1, x1, SIM.mixing), z1, atol=1e-3)
    np.testing.assert_allclose(invert_mechanism(f2, x2, SIM.mixing), z2, atol=1e-3)
