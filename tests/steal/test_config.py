"""StealConfig: one declaration of the settings, validated in one place, errors naming the field."""

from __future__ import annotations

from dataclasses import replace

import pytest

from activethief.errors import ConfigError
from activethief.steal import DEFAULT_FIT, StealConfig
from activethief.training import FitConfig


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"budget": 0}, "budget"),
        ({"batch_size": -1}, "batch_size"),
        ({"seed_size": 0}, "seed_size"),
        ({"seed": -3}, "seed"),
        ({"strategy": "best"}, "strategy"),
        ({"seeding": "kmeans:0"}, "seeding"),
        ({"stop": "entropy:x"}, "stop"),
        ({"substitute": "vgg"}, "substitute"),
        ({"narrow_factor": 0.5, "strategy": "entropy+kcenter"}, "strategy"),
        ({"fit": {"epochs": 3}}, "fit"),
    ],
)
def test_bad_values_name_the_field(settings: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError, match=rf"StealConfig\.{field}"):
        StealConfig(**{"budget": 100, **settings})  # type: ignore[arg-type]


def test_keywords_are_a_shorthand_for_the_config() -> None:
    base = StealConfig(budget=500, strategy="entropy+kcenter")
    assert StealConfig.build(None, {"budget": 500, "strategy": "entropy+kcenter"}) == base
    assert StealConfig.build(base, {"seed": 4}) == StealConfig(budget=500, strategy="entropy+kcenter", seed=4)
    assert StealConfig.build(base, {}) is base
    with pytest.raises(ConfigError, match=r"unknown steal setting.*fit_config"):
        StealConfig.build(None, {"budget": 5, "fit_config": FitConfig()})
    with pytest.raises(ConfigError, match="needs a budget"):
        StealConfig.build(None, {"strategy": "entropy"})


def test_defaults_and_the_stored_form() -> None:
    config = StealConfig(budget=300, batch_size=100)
    assert config.fit == DEFAULT_FIT and config.first_batch == 100
    assert StealConfig(budget=300, batch_size=100, seed_size=50).first_batch == 50
    stored = config.to_dict()
    assert stored["fit"]["min_steps"] == DEFAULT_FIT.min_steps and stored["strategy"] == "entropy"
    assert config.selector().name == "entropy" and config.stop_rule().name == "budget"


def test_presets_start_the_settings_and_given_fields_override_them() -> None:
    from activethief.steal.config import LOW_BUDGET_FIT, PRESETS

    low = StealConfig.preset("low-budget", budget=500)
    assert low.fit == LOW_BUDGET_FIT and low.batch_size == PRESETS["low-budget"]["batch_size"]
    assert StealConfig.preset("low-budget", budget=500, strategy="random").strategy == "random"
    assert StealConfig.preset("default", budget=500) == StealConfig(budget=500)
    with pytest.raises(ConfigError, match=r"unknown preset 'fast'; known: default, low-budget"):
        StealConfig.preset("fast", budget=500)


def test_the_command_builds_the_preset_then_the_options_given() -> None:
    from activethief.steal.command import build_config
    from activethief.steal.config import LOW_BUDGET_FIT
    from activethief.training import SemiConfig

    config = build_config(
        "low-budget",
        budget=300,
        seed=2,
        warm_start=False,
        semi="pseudo:0.9",
        batch_size=None,
        strategy="margin",
    )
    expected = StealConfig.preset("low-budget", budget=300, seed=2, strategy="margin", warm_start=False)
    assert config.fit.semi == SemiConfig(method="pseudo", threshold=0.9)
    assert config == StealConfig.build(expected, {"fit": config.fit})
    assert build_config("default", budget=300, semi="off", warm_start=True).fit.semi is None
    with pytest.raises(ConfigError, match="unknown semi-supervised setting 'mixmatch'"):
        build_config("default", budget=300, semi="mixmatch", warm_start=True)
    averaged = build_config("low-budget", budget=300, semi=None, warm_start=True, ema=0.99)
    assert averaged.fit == replace(LOW_BUDGET_FIT, ema=0.99)
    with pytest.raises(ConfigError, match=r"FitConfig.ema must lie in \[0, 1\)"):
        build_config("default", budget=300, semi=None, warm_start=True, ema=1.0)
    distilled = build_config("default", budget=300, semi=None, warm_start=True, ema=0.99, temperature=2.0)
    assert distilled.fit == replace(StealConfig(budget=300).fit, ema=0.99, temperature=2.0)
    with pytest.raises(ConfigError, match=r"FitConfig\.temperature must be > 0"):
        build_config("default", budget=300, semi=None, warm_start=True, temperature=0.0)


def test_fit_with_semi_supervised_settings_round_trips_through_the_run_folder_form() -> None:
    from activethief.training import SemiConfig

    config = StealConfig(budget=100, fit=FitConfig(semi=SemiConfig(ratio=2)))
    stored = config.to_dict()
    assert stored["fit"]["semi"] == {"method": "fixmatch", "threshold": 0.95, "ratio": 2, "weight": 1.0}
    assert FitConfig.from_dict(stored["fit"]) == config.fit
