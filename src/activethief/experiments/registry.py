"""The experiment registry: each experiment is data (the cells it needs, a view over their rows, figures).

Adding an experiment is one `register_experiment(Experiment(...))`: the tasks it needs for a dataset,
`points` (its tidy rows, one per repeat and table cell, read from finished cells), the columns that name a
table row, optionally the study's numbers for a row, and figures. Experiments never own results: they are
views over cells, so two experiments that need the same run share it. Built-in experiments live in
`activethief.experiments.definitions`; modules listed in `EXTRA_MODULES` are imported too when present.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from activethief.errors import ConfigError
from activethief.experiments.cells import Task
from activethief.experiments.grid import GridParams
from activethief.experiments.store import Results

# Feature modules that register more experiments (e.g. transfer attacks); missing ones are skipped.
EXTRA_MODULES: tuple[str, ...] = (
    "activethief.experiments.transfer",
    "activethief.experiments.low_budget",
    "activethief.experiments.threat_models",
    "activethief.experiments.attack_budget",
)


@dataclass(frozen=True)
class Scope:
    """One dataset of a grid: its name, the grid parameters and the pool's actual size."""

    dataset: str
    params: GridParams
    pool_size: int


@dataclass(frozen=True)
class FigureSpec:
    """A figure of the report: `kind` bars (x groups, one bar per series), lines (y over x per series,
    with a std band) or stopping (a scatter of queries at stop vs accuracy per alpha).

    Panels: one per dataset, times one per value of `columns` (side by side) and of `rows` (stacked)
    when those name a column of the summary.
    """

    file: str
    title: str
    kind: Literal["bars", "lines", "stopping"]
    x: str
    series: str
    only: tuple[str, ...] = ()  # series values to draw, in this order (all when empty)
    y: str = "accuracy_pct"
    xlabel: str = ""
    ylabel: str = "test accuracy (%)"
    columns: str = ""  # a column whose values split each dataset's panel, side by side
    rows: str = ""  # a column whose values give rows of panels
    where: tuple[tuple[str, Any], ...] = ()  # only summary rows with these values
    reference: str = ""  # a metric drawn as a horizontal line per panel (e.g. an upper bound)
    reference_label: str = ""
    legend: str = ""  # the key under the title (default: the kind's)
    ylim: tuple[float, float] | None = None  # the y range of every panel (default: matplotlib's)


@dataclass(frozen=True)
class Experiment:
    """One experiment of the study, as data.

    Attributes:
        name: CLI name, e.g. "strategies".
        title: one line for reports.
        tasks: the cells a dataset needs (the planner merges cells that share a run).
        points: tidy rows read from finished cells: `keys` + `repeat` + metrics (percent, queries).
        keys: the columns that name one table row (besides `dataset`).
        study: the study's numbers for a summary row (columns starting with `study_`), or None.
        figures: figures of the report.
        in_table: which summary rows the Markdown report shows (all when None; the CSV has all).
        notes: Markdown under the section's title, from the whole summary and the grid (or None).
        in_all: whether `all` includes it; extensions beyond the study's grid opt out and run by name.
    """

    name: str
    title: str
    tasks: Callable[[Scope], Sequence[Task]]
    points: Callable[[Results, Scope], list[dict[str, Any]]]
    keys: tuple[str, ...]
    study: Callable[[Scope, dict[str, Any]], dict[str, float]] | None = None
    figures: tuple[FigureSpec, ...] = ()
    in_table: Callable[[dict[str, Any], GridParams], bool] | None = None
    notes: Callable[[Sequence[dict[str, Any]], GridParams], str] | None = None
    in_all: bool = True


EXPERIMENTS: dict[str, Experiment] = {}


def register_experiment(experiment: Experiment, *, replace: bool = False) -> Experiment:
    """Add an experiment to the registry (an existing name needs `replace=True`)."""
    if experiment.name in EXPERIMENTS and not replace:
        raise ConfigError(f"experiment {experiment.name!r} is already registered")
    if experiment.name == "all" or "," in experiment.name:
        raise ConfigError(f"{experiment.name!r} cannot name an experiment")
    EXPERIMENTS[experiment.name] = experiment
    return experiment


def load_builtin_experiments() -> dict[str, Experiment]:
    """Import the built-in definitions (and extra modules that exist); returns the registry."""
    importlib.import_module("activethief.experiments.definitions")
    for module in EXTRA_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
    return EXPERIMENTS


def resolve_experiments(names: str | Sequence[str]) -> list[Experiment]:
    """Experiments by name: `all` (the study's: every experiment with `in_all`), one name, a
    comma-separated list or a sequence of names (`all,transfer` adds an extension to the study's)."""
    registry = load_builtin_experiments()
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if not wanted:
        raise ConfigError(f"name an experiment: all, {', '.join(registry)}")
    unknown = [n for n in wanted if n != "all" and n not in registry]
    if unknown:
        raise ConfigError(
            f"unknown experiment {', '.join(map(repr, unknown))}; known: all, {', '.join(registry)}"
        )
    chosen = [
        name
        for name, experiment in registry.items()
        if name in wanted or ("all" in wanted and experiment.in_all)
    ]
    return [registry[n] for n in (chosen if "all" in wanted else dict.fromkeys(wanted))]


def plan_tasks(experiments: Sequence[Experiment], scopes: Sequence[Scope]) -> list[Task]:
    """Every task the experiments need, each shared run once at the largest size any of them asks for."""
    largest: dict[tuple[str, str], Task] = {}
    for scope in scopes:
        for experiment in experiments:
            for task in experiment.tasks(scope):
                key = (task.dataset, task.share_key)
                if key not in largest or task.size > largest[key].size:
                    largest[key] = task
    return list(largest.values())
