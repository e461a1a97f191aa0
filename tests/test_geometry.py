"""Latent geometries (cl-ica) and anisotropic changes (AnInfoNCE): the samplers against closed
forms, the losses against NumPy and against InfoNCE, the loss's own learning rate, the config's
checks, and a vmapped grid of anisotropic runs against its runs alone."""

from __future__ import annotations

import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import TINY
from scipy import stats
from scipy.special import iv

from jaxmmcl import geometry
from jaxmmcl.config import ConfigError, Hyperparams, run_config_from_dict, stack_hyperparams
from jaxmmcl.encoders import encode
from jaxmmcl.grid import train_grid
from jaxmmcl.latents import init_latent_params, sample_latents
from jaxmmcl.losses import LOSSES, anisotropic_info_nce, lp_info_nce, symmetric_info_nce
from jaxmmcl.simulation import init_simulation
from jaxmmcl.training import init_state, train_step

SCALES = (0.45, 0.35, 0.25, 0.2)
PAIR = {
    "simulation": {
        "structure": "pair",
        "n_z": 4,
        "marginal": "sphere",
        "conditional": "projected_normal",
        "change_scales": list(SCALES),
        "shared_mixing": True,
    },
    "model": {"widths": [16, 16], "shared_encoder": True, "normalize": "sphere"},
    "train": TINY["train"] | {"loss": "aninfonce"},
    "eval": TINY["eval"] | {"per_latent": True},
}


def _latents(values, n, seed=0):
    config = run_config_from_dict(values)
    hyper = stack_hyperparams([config.hyper])
    params = init_latent_params(
        jax.random.key(seed), config.static.simulation, jax.tree.map(lambda x: x[0], hyper)
    )
    return jax.device_get(sample_latents(jax.random.key(seed + 1), params, n))


def test_the_sphere_marginal_is_uniform_on_the_unit_sphere():
    z = _latents(PAIR, 20_000)["z"]
    np.testing.assert_allclose(np.linalg.norm(z, axis=1), 1.0, atol=1e-5)
    # Uniform on S^(n-1): mean 0 and second moment I / n.
    np.testing.assert_allclose(z.mean(0), 0.0, atol=0.02)
    np.testing.assert_allclose(z.T @ z / len(z), np.eye(4) / 4, atol=0.01)


def test_the_projected_normal_keeps_the_sphere_and_changes_each_component_by_its_scale():
    lat = _latents(PAIR, 20_000)
    z, z_tilde = lat["z"], lat["z_tilde"]
    np.testing.assert_allclose(np.linalg.norm(z_tilde, axis=1), 1.0, atol=1e-5)
    spread = (z_tilde - z).std(0)
    # Projection and rejection shrink the change, but keep its order across components.
    assert np.all(np.diff(spread) < 0), spread
    # The candidates kept have norms within the threshold of 1, so the projection moves them
    # by less than it, and the change is about the scale.
    np.testing.assert_allclose(spread, SCALES, rtol=0.35)


@pytest.mark.parametrize(
    ("marginal", "mean", "var", "mean_abs"),
    [("box", 0.5, 1 / 12, 0.5), ("laplace", 0.0, 2.0, 1.0)],
)
def test_the_box_and_laplace_marginals_have_their_moments(marginal, mean, var, mean_abs):
    sim = {"structure": "pair", "n_z": 3, "marginal": marginal, "conditional": "laplace"}
    z = _latents({"simulation": sim}, 40_000)["z"]
    if marginal == "box":
        assert z.min() >= 0 and z.max() <= 1
    np.testing.assert_allclose(z.mean(0), mean, atol=0.02)
    np.testing.assert_allclose(z.var(0), var, rtol=0.05)
    np.testing.assert_allclose(np.abs(z).mean(0), mean_abs, rtol=0.03)


def test_the_laplace_conditional_changes_each_component_by_its_scale():
    sim = {"structure": "pair", "n_z": 4, "conditional": "laplace", "change_scales": list(SCALES)}
    lat = _latents({"simulation": sim}, 40_000)
    diff = lat["z_tilde"] - lat["z"]
    # Laplace(0, b): E|x| = b, Var x = 2 b^2.
    np.testing.assert_allclose(np.abs(diff).mean(0), SCALES, rtol=0.03)
    np.testing.assert_allclose(diff.var(0), 2 * np.square(SCALES), rtol=0.05)


@pytest.mark.parametrize(
    ("conditional", "half_mean"), [("normal", np.sqrt(2 / np.pi)), ("laplace", 1.0)]
)
def test_in_the_box_a_conditional_is_truncated_to_it(conditional, half_mean):
    sample = geometry.CONDITIONALS[conditional].sample
    base = jnp.zeros((20_000, 3))
    out = sample(jax.random.key(0), None, base, None, None, jnp.full((1,), 0.1), "box", 2.0)
    out = np.asarray(out)
    assert out.min() >= 0 and out.max() <= 1
    # At the box's lower face, the truncated change is the noise's half: a half-normal (mean
    # sigma sqrt(2 / pi)) or an exponential (mean b); the upper face is 10 scales away.
    np.testing.assert_allclose(out.mean(0), 0.1 * half_mean, rtol=0.03)
    scale = jnp.full((1,), 0.1)
    inside = sample(jax.random.key(0), None, base + 0.5, None, None, scale, "real", 2.0)
    free = sample(jax.random.key(0), None, base + 0.5, None, None, scale, "box", 2.0)
    # Far from the faces the first round is almost always inside: the truncation changes little.
    assert np.mean(np.asarray(inside) == np.asarray(free)) > 0.99


def test_lp_infonce_equals_numpy_and_with_p_2_the_paper_infonce():
    rng = np.random.default_rng(1)
    hs = [rng.normal(size=(12, 3)).astype(np.float32) for _ in range(2)]
    negs = [rng.normal(size=(12, 3)).astype(np.float32) for _ in range(2)]

    def one(a, b, neg, tau):
        pos = np.abs(a - b).sum(-1)
        logits = np.concatenate([-np.abs(a[:, None] - neg[None]).sum(-1), -pos[:, None]], 1)
        lse = np.log(np.exp(logits / tau).sum(1))
        return np.mean(pos / tau + lse - np.log(logits.shape[1]))

    expected = 0.5 * (one(hs[0], hs[1], negs[0], 0.7) + one(hs[1], hs[0], negs[1], 0.7))
    np.testing.assert_allclose(lp_info_nce(hs, negs, 0.7, 1.0), expected, rtol=1e-5)
    static = run_config_from_dict({"train": {"loss": "lp_infonce", "loss_p": 1}}).static
    np.testing.assert_allclose(
        LOSSES["lp_infonce"].apply(hs, negs, jnp.float32(0.7), static, None), expected, rtol=1e-5
    )
    np.testing.assert_allclose(
        lp_info_nce(hs, negs, 0.7, 2.0), symmetric_info_nce(hs, negs, 0.7), rtol=1e-5
    )


@pytest.mark.parametrize("kappa", [1.0, 10.0])
def test_the_vmf_mean_resultant_length_matches_its_concentration(kappa):
    sim = {"structure": "pair", "n_z": 5, "marginal": "sphere", "conditional": "vmf"}
    lat = _latents({"simulation": sim | {"change_scales": [kappa**-0.5]}}, 20_000)
    z, z_tilde = lat["z"], lat["z_tilde"]
    np.testing.assert_allclose(np.linalg.norm(z_tilde, axis=1), 1.0, atol=1e-5)
    # E[mu^T x] = A_d(kappa) = I_{d/2}(kappa) / I_{d/2 - 1}(kappa) on S^(d - 1), within four
    # standard errors of the sample mean.
    cosine = np.sum(z * z_tilde, 1)
    error = 4 * cosine.std() / np.sqrt(len(cosine))
    np.testing.assert_allclose(cosine.mean(), iv(2.5, kappa) / iv(1.5, kappa), atol=error)
    # Rotationally symmetric about the mean: the change has no direction of its own.
    np.testing.assert_allclose((z_tilde - z).mean(0), 0.0, atol=0.02)


def test_a_projected_normal_that_cannot_land_on_the_sphere_gives_nan_not_a_hang():
    base = jnp.eye(3)[:2]
    out = geometry.projected_normal(jax.random.key(0), base, jnp.full((3,), 1e6))
    assert np.isnan(np.asarray(out)).all()
    near = geometry.projected_normal(jax.random.key(0), base, jnp.full((3,), 0.05))
    np.testing.assert_allclose(np.linalg.norm(near, axis=1), 1.0, atol=1e-6)


def test_the_normal_conditional_changes_each_component_by_its_scale():
    sim = {"structure": "pair", "n_z": 4, "conditional": "normal", "change_scales": list(SCALES)}
    lat = _latents({"simulation": sim}, 40_000)
    diff = lat["z_tilde"] - lat["z"]
    np.testing.assert_allclose(diff.mean(0), 0.0, atol=0.01)
    np.testing.assert_allclose(diff.std(0), SCALES, rtol=0.02)
    np.testing.assert_allclose(lat["z"].std(0), 1.0, rtol=0.02)


def test_the_paper_conditional_scales_its_noise_and_equal_scales_change_nothing():
    base = {"simulation": {"n_c": 2, "n_s": 3, "n_m": 1, "p_change": 0.5}}
    plain = _latents(base, 4096)
    ones = _latents({"simulation": base["simulation"] | {"change_scales": [1, 1, 1]}}, 4096)
    for name in plain:
        np.testing.assert_array_equal(ones[name], plain[name])
    scaled = _latents({"simulation": base["simulation"] | {"change_scales": [0, 1, 3]}}, 4096)
    np.testing.assert_array_equal(scaled["s"], plain["s"])
    diff = scaled["s_tilde"] - scaled["s"]
    assert np.all(diff[:, 0] == 0)
    np.testing.assert_allclose(diff[:, 2], 3 * (plain["s_tilde"] - plain["s"])[:, 2], rtol=1e-5)


def _numpy_aninfonce(hs, negs, precision, tau):
    def one(a, b, neg):
        d = lambda x, y: 0.5 * (((x[:, None] - y[None]) ** 2) * precision).sum(-1) / tau  # noqa: E731
        pos = np.diag(d(a, b))
        logits = np.concatenate([-d(a, neg), -pos[:, None]], axis=1)
        top = logits.max(1, keepdims=True)
        lse = np.log(np.exp(logits - top).sum(1)) + top[:, 0]
        return np.mean(pos + lse - np.log(logits.shape[1]))

    return 0.5 * (one(hs[0], hs[1], negs[0]) + one(hs[1], hs[0], negs[1]))


def test_aninfonce_equals_numpy_and_with_equal_precision_the_paper_infonce():
    rng = np.random.default_rng(0)
    hs = [rng.normal(size=(16, 4)).astype(np.float32) for _ in range(2)]
    negs = [rng.normal(size=(16, 4)).astype(np.float32) for _ in range(2)]
    precision = np.asarray([5.0, 9.0, 17.0, 25.0], np.float32)
    got = anisotropic_info_nce(hs, negs, jnp.float32(0.5), precision)
    np.testing.assert_allclose(got, _numpy_aninfonce(hs, negs, precision, 0.5), rtol=1e-5)
    tau = jnp.float32(0.3)
    np.testing.assert_allclose(
        anisotropic_info_nce(hs, negs, tau, jnp.full((4,), 2.0)),
        symmetric_info_nce(hs, negs, tau),
        rtol=1e-6,
    )
    # The registered loss takes its precision as softplus of its parameter.
    raw = {"raw_precision": jnp.log(jnp.expm1(jnp.asarray(precision)))}
    np.testing.assert_allclose(
        LOSSES["aninfonce"].apply(hs, negs, jnp.float32(0.5), None, raw), got, rtol=1e-5
    )


def test_the_loss_parameters_take_their_own_learning_rate():
    config = run_config_from_dict(
        PAIR
        | {
            "train": PAIR["train"] | {"learning_rate": 1e-5, "loss_learning_rate": 0.05},
            "model": PAIR["model"],
        }
    )
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([config.hyper]))
    static = config.static
    state = init_state(jnp.asarray(0), hyper, static)
    simulation = init_simulation(jax.random.key(0), static.simulation, hyper)
    new, _ = jax.jit(train_step, static_argnums=3)(state, simulation, hyper, static)
    # Adam's first step moves every parameter by its rate times g / (|g| + eps): about the rate.
    moved = jax.tree.map(lambda a, b: np.abs(np.asarray(a - b)).max(), new.params, state.params)
    np.testing.assert_allclose(moved["loss"]["raw_precision"], 0.05, rtol=1e-3)
    np.testing.assert_allclose(max(jax.tree.leaves(moved["g1"])), 1e-5, rtol=1e-2)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"simulation": {"change_scales": [1, 2]}},
            "simulation.change_scales: expected [], one number for every",
        ),
        ({"simulation": {"change_scales": [1, -2, 1, 1, 1]}}, "a list of numbers >= 0"),
        (
            {"simulation": {"marginal": "sphere", "statistical": True}},
            "simulation.conditional: expected one that keeps",
        ),
        (
            {"simulation": {"marginal": "sphere", "conditional": "projected_normal"}}
            | {"seed": 0, "simulation.statistical": True},
            "simulation.statistical: expected false with simulation.marginal = 'sphere'",
        ),
        ({"simulation": {"conditional": "projected_normal"}}, "simulation.conditional"),
        (
            {"simulation": {"structure": "pair", "marginal": "box"}},
            "simulation.conditional: expected one that keeps samples of simulation.marginal "
            "'box' in their space: normal, laplace, generalized_normal, got 'mask'",
        ),
        (
            {"simulation": {"marginal": "sphere", "conditional": "projected_normal"}}
            | {"simulation.causal_strength": 1.0},
            "simulation.causal_strength: expected 0 with simulation.marginal = 'sphere'",
        ),
        ({"model": {"normalize": "cube"}}, "model.normalize: expected one of none, sphere, "),
        (
            {"simulation": {"structure": "pair", "conditional": "laplace", "conditional_p": 1}},
            "simulation.conditional_p: expected 2 (the default) unless its distribution is "
            "generalized_normal, got 1",
        ),
        (
            {"simulation": {"marginal": "generalized_normal", "marginal_p": 0}},
            "simulation.marginal_p: expected a number in (0.0, 1000.0], got 0",
        ),
        ({"train": {"loss_p": 1}}, "train.loss_p: expected 2 (the default) unless train.loss"),
        (
            {
                "simulation": {"structure": "pair", "n_z": 2, "marginal": "sphere"}
                | {"conditional": "vmf", "change_scales": [1, 2]}
            },
            "simulation.change_scales: expected one scale with conditional 'vmf'",
        ),
        (
            {"train": {"loss": "aninfonce"}, "model": {"encoding_size": 0}}
            | {"simulation": {"structure": "subsets", "views": [[0, 1], [1, 2, 3]]}},
            "train.loss: expected a loss that takes encodings of different sizes",
        ),
    ],
)
def test_bad_geometries_are_refused_naming_the_key(values, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        run_config_from_dict(values)


def test_run_i_of_an_anisotropic_grid_equals_the_run_alone():
    static = run_config_from_dict(PAIR).static
    hypers = [
        Hyperparams(change_scales=SCALES, loss_learning_rate=0.01),
        Hyperparams(change_scales=SCALES[::-1], temperature=0.5),
    ]
    seeds = [3, 1]
    grid = train_grid(static, jnp.asarray(seeds), stack_hyperparams(hypers))
    assert grid.params["loss"]["raw_precision"].shape == (2, 4)
    for i, (seed, hyper) in enumerate(zip(seeds, hypers, strict=True)):
        alone = train_grid(static, jnp.asarray([seed]), stack_hyperparams([hyper]))
        chex.assert_trees_all_equal(
            jax.tree.map(lambda x, i=i: x[i], grid.params),
            jax.tree.map(lambda x: x[0], alone.params),
        )


@pytest.mark.parametrize("p", [1.0, 3.0])
def test_the_generalized_normal_is_scipys_gennorm_as_marginal_and_conditional(p):
    sim = {"structure": "pair", "n_z": 2, "marginal": "generalized_normal", "marginal_p": p}
    sim |= {"conditional": "generalized_normal", "conditional_p": p, "change_scales": [0.5]}
    lat = _latents({"simulation": sim}, 20_000)
    for values in (lat["z"].ravel(), (lat["z_tilde"] - lat["z"]).ravel() / 0.5):
        assert stats.kstest(values, stats.gennorm(p).cdf).pvalue > 1e-3


def test_on_the_sphere_an_additive_conditional_is_projected_back_onto_it():
    sim = {"structure": "pair", "n_z": 3, "marginal": "sphere", "conditional": "laplace"}
    z = _latents({"simulation": sim | {"change_scales": [0.05]}}, 4096)["z"]
    sample = geometry.CONDITIONALS["laplace"].sample
    scale = jnp.full((1,), 0.05)
    free = np.asarray(sample(jax.random.key(2), None, z, None, None, scale, "real", 2.0))
    on = sample(jax.random.key(2), None, z, None, None, scale, "sphere", 2.0)
    np.testing.assert_allclose(on, free / np.linalg.norm(free, axis=1, keepdims=True), atol=1e-6)


@pytest.mark.parametrize("normalize", ["sphere", "learnable_sphere", "box", "learnable_box"])
def test_the_output_normalizations_put_encodings_in_their_space(normalize):
    """cl-ica's RescaleLayer and SoftclipLayer: the sphere of the trained radius, the box
    ``(0, bound)`` of the trained per-component bounds; a training step moves the scale."""
    values = PAIR | {"model": PAIR["model"] | {"normalize": normalize}}
    values |= {"train": PAIR["train"] | {"loss": "infonce", "learning_rate": 0.01}}
    static = run_config_from_dict(values).static
    hyper = jax.tree.map(lambda x: x[0], stack_hyperparams([run_config_from_dict(values).hyper]))
    state = init_state(jnp.asarray(0), hyper, static)
    simulation = init_simulation(jax.random.key(0), static.simulation, hyper)
    new, _ = jax.jit(train_step, static_argnums=3)(state, simulation, hyper, static)
    x = jax.random.normal(jax.random.key(1), (64, 4))
    h = np.asarray(encode(new.params, (x, x), static)[0])
    scale = new.params["g1"]["params"].get("output_scale")
    assert (scale is None) == (normalize in ("sphere", "box"))
    if scale is not None:
        assert scale.shape == ((4,) if normalize == "learnable_box" else (1,))
        assert np.all(np.asarray(scale) != 1.0)
    scale = np.ones(4) if scale is None else np.broadcast_to(scale, (4,))
    if normalize.endswith("sphere"):
        np.testing.assert_allclose(np.linalg.norm(h, axis=1), scale[0], rtol=1e-5)
    else:
        assert np.all(h > 0) and np.all(h < scale)


def test_run_i_of_a_generalised_normal_grid_with_a_learnable_box_equals_the_run_alone():
    values = {
        "simulation": {"structure": "pair", "n_z": 3, "marginal": "box"}
        | {"conditional": "generalized_normal", "conditional_p": 3, "shared_mixing": True},
        "model": {"widths": [16, 16], "shared_encoder": True, "normalize": "learnable_box"},
        "train": TINY["train"] | {"loss": "lp_infonce", "loss_p": 1},
        "eval": TINY["eval"],
    }
    static = run_config_from_dict(values).static
    hypers = [
        Hyperparams(change_scales=(0.05,)),
        Hyperparams(change_scales=(0.1,), temperature=0.5),
    ]
    seeds = [3, 1]
    grid = train_grid(static, jnp.asarray(seeds), stack_hyperparams(hypers))
    assert grid.params["g1"]["params"]["output_scale"].shape == (2, 3)
    for i, (seed, hyper) in enumerate(zip(seeds, hypers, strict=True)):
        alone = train_grid(static, jnp.asarray([seed]), stack_hyperparams([hyper]))
        chex.assert_trees_all_equal(
            jax.tree.map(lambda x, i=i: x[i], grid.params),
            jax.tree.map(lambda x: x[0], alone.params),
        )
