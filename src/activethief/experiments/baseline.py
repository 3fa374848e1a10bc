"""The earlier study's numbers (read off its figures), shipped as package data in `study/`."""

from __future__ import annotations

import csv
import functools
import io
from importlib import resources

from activethief.errors import ConfigError


def _read(name: str) -> list[dict[str, str]]:
    try:
        text = resources.files("activethief.experiments").joinpath("study", name).read_text()
    except FileNotFoundError:
        raise ConfigError(
            f"the study's numbers (activethief/experiments/study/{name}) are missing from this installation; "
            "reinstall activethief"
        ) from None
    return list(csv.DictReader(io.StringIO(text)))


@functools.cache
def study_accuracy() -> dict[tuple[str, str, str, int], float]:
    """(figure, dataset, series, x) -> the study's test accuracy in percent (`study_results.csv`)."""
    return {
        (row["figure"], row["dataset"], row["series"], int(row["x"])): float(row["accuracy_pct"])
        for row in _read("study_results.csv")
    }


@functools.cache
def study_stopping() -> dict[tuple[str, float], dict[str, float]]:
    """(dataset, alpha) -> ranges over five runs: queries_at_stop_min/max, accuracy_pct_min/max."""
    return {
        (row["dataset"], float(row["alpha"])): {
            k: float(v) for k, v in row.items() if k not in ("dataset", "alpha")
        }
        for row in _read("stopping.csv")
    }
