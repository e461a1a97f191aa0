"""Config validation of the ablation keys: discrete factors and the intervention test."""

from __future__ import annotations

import pytest

from jaxmmcl.config import ConfigError, RunConfig, run_config_from_dict
from jaxmmcl.sweeps import load_sweep


def test_new_keys_default_to_the_paper_setting_and_round_trip():
    cfg = run_config_from_dict({})
    assert cfg.static.simulation.discrete == "none" and cfg.static.simulation.n_classes == 5
    assert cfg.static.eval.intervention is False
    values = {"simulation.discrete": "m", "simulation.n_classes": 3, "eval.intervention": True}
    cfg = run_config_from_dict(values)
    assert run_config_from_dict(cfg.to_dict()) == cfg
    assert {k: cfg.flat()[k] for k in values} == values


@pytest.mark.parametrize(
    ("values", "message"),
    [
        (
            {"simulation.discrete": "x"},
            "simulation.discrete: expected one of none, c, s, m, got 'x'",
        ),
        ({"simulation.n_classes": 1}, "simulation.n_classes: expected an integer >= 2, got 1"),
        ({"eval.intervention": "yes"}, "eval.intervention: expected true or false, got 'yes'"),
        ({"eval.mlp_epochs": 0}, "eval.mlp_epochs: expected an integer >= 1, got 0"),
        (
            {"simulation.discrete": "m", "simulation.n_m": 0},
            "simulation.discrete: expected a block of size >= 1 (n_m is 0), got 'm'",
        ),
        (
            {"simulation.discrete": "c", "simulation.statistical": True},
            "simulation.statistical: expected false with simulation.discrete = 'c', got True",
        ),
        (
            {"simulation.discrete": "s", "simulation.causal_strength": 0.5},
            "simulation.causal_strength: expected 0 with simulation.discrete = 's', got 0.5",
        ),
    ],
)
def test_invalid_values_and_combinations_name_the_key(values, message):
    with pytest.raises(ConfigError) as err:
        run_config_from_dict(values)
    assert str(err.value) == message


@pytest.mark.parametrize("discrete", ["c", "m"])
def test_causal_dependence_is_allowed_when_style_is_continuous(discrete):
    cfg = run_config_from_dict({"simulation.discrete": discrete, "simulation.causal_strength": 1})
    assert isinstance(cfg, RunConfig)


def test_a_sweep_axis_that_makes_a_bad_combination_fails_before_running():
    spec = {
        "name": "bad",
        "base": {"simulation": {"discrete": "s"}},
        "axes": {"simulation.causal_strength": [0.0, 1.0]},
    }
    with pytest.raises(ConfigError, match=r"^simulation.causal_strength: expected 0 with"):
        load_sweep(spec)


@pytest.mark.parametrize("name", ["loss", "factor", "r2_linear", "status"])
def test_a_named_axis_called_like_a_result_column_fails_before_running(name):
    spec = {"name": "bad", "axes": {name: {"a": {"train.temperature": 0.5}}}}
    with pytest.raises(ConfigError, match=rf"^axes.{name}: the name of a result column"):
        load_sweep(spec)
