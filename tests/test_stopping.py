"""Stopping rules: parsing, names, and when the entropy rule fires."""

from __future__ import annotations

import pytest

from activethief.errors import ConfigError
from activethief.stopping import BudgetOnly, EntropyChange, parse_stop


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("budget", BudgetOnly()),
        ("entropy:0.01", EntropyChange(0.01)),
        (" entropy:0 ", EntropyChange(0.0)),
        ("entropy:0.05:3", EntropyChange(0.05, 3)),
        ("entropy:0.05:1", EntropyChange(0.05)),
    ],
)
def test_parse_stop(text: str, rule: object) -> None:
    assert parse_stop(text) == rule


@pytest.mark.parametrize(
    "text",
    [
        "",
        "entropy",
        "entropy:",
        "entropy:x",
        "entropy:-1",
        "entropy:nan",
        "entropy:0.1:0",
        "entropy:0.1:1.5",
        "entropy:0.1:x",
        "entropy:0.1:2:3",
        "margin:0.1",
        "budget:5",
    ],
)
def test_parse_stop_names_the_bad_rule(text: str) -> None:
    with pytest.raises(ConfigError, match="invalid stopping rule"):
        parse_stop(text)


def test_names_round_trip() -> None:
    for rule in (BudgetOnly(), EntropyChange(0.01), EntropyChange(0.005, 3)):
        assert parse_stop(rule.name) == rule
    assert EntropyChange(0.01).name == "entropy:0.01" and EntropyChange(0.01, 3).name == "entropy:0.01:3"


def test_entropy_change_needs_patience_small_changes_in_a_row() -> None:
    study, patient = EntropyChange(0.05), EntropyChange(0.05, 2)
    assert not study.should_stop([]) and not study.should_stop([1.0])
    assert not study.should_stop([1.0, 0.5]) and study.should_stop([1.0, 0.96])
    # one small change after a large one is enough for the study's rule, not for patience 2
    assert study.should_stop([1.0, 0.5, 0.48]) and not patient.should_stop([1.0, 0.5, 0.48])
    assert patient.should_stop([1.0, 0.5, 0.48, 0.47])
    # a large change resets the count: only the last `patience` changes count
    assert not patient.should_stop([1.0, 0.99, 0.98, 0.5])
    assert EntropyChange(0.0).should_stop([0.3, 0.3]) and not BudgetOnly().should_stop([0.3, 0.3, 0.3])


def test_entropy_change_rejects_bad_values() -> None:
    for alpha, patience in ((-0.1, 1), (float("nan"), 1), (0.1, 0)):
        with pytest.raises(ConfigError, match="alpha >= 0 and patience >= 1"):
            EntropyChange(alpha, patience)
