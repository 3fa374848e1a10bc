"""Grid parameters: every number that shapes the study's grid, with the study's defaults and a quick grid."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any

from activethief.errors import ConfigError
from activethief.selection import STRATEGIES, make_seeder
from activethief.steal import DEFAULT_FIT
from activethief.training import FitConfig

# The study's nine strategies: the strategies experiment's grid. Strategies added later (`dfal`,
# `kcenter@features`, ...) join a grid when an experiment of their own measures them.
STUDY_STRATEGIES: tuple[str, ...] = (
    "random",
    "uniform",
    "least-confidence",
    "margin",
    "entropy",
    "kcenter",
    "entropy+kcenter",
    "entropy+uniform",
    "entropy+kcenter+uniform",
)
STUDY_SEEDINGS: tuple[str, ...] = ("random", "kmeans:10", "kmeans:20", "kmeans:50", "pca-kmeans:10")

# The grid trains each round like `steal` does by default, except that warm-started rounds (every round
# after the first) train exactly 200 steps: a round costs the same at 20k answers as at 2k, which makes
# the grid about twice as fast for a few tenths of a point at some budgets (benchmarks/round_training.py).
GRID_FIT = replace(DEFAULT_FIT, warm_steps=200)


@dataclass(frozen=True)
class GridParams:
    """What the experiments sweep. Defaults follow the study: 60k pool, 10k test set, batches of 1,000.

    Attributes:
        repeats: independent repeats of every cell (different derived seeds).
        pool_size: the first `pool_size` training images form the pool (None: the whole training set).
        test_size: the first `test_size` test images measure the substitute (None: the whole test set).
        batch_size: queries per round after the seed round.
        seed_size: the random seed of the strategies and stopping experiments.
        seed_sizes: seed sizes of the seeding and seed-size experiments.
        seedings: seeding methods of the seeding experiment.
        strategies: selection strategies of the strategies experiment.
        strategies_budget: queries per strategies run.
        checkpoints: query counts the Markdown tables show for the strategies experiment.
        seed_size_budget: queries per seed-size run.
        alphas: entropy-change thresholds of the stopping experiment (nats).
        patiences: how many such changes in a row the stopping experiment's rules ask for (1: the study's).
        stopping_budget: queries of the stopping trajectory (None: the whole pool).
        substitute: substitute architecture.
        fit: training settings of every round.
        base_seed: every cell's seed derives from it.
        canonical_strategy: the strategy of cells whose strategy never acts (seed-only and full-data
            cells); `entropy`, so seed-only random cells are prefixes of the entropy trajectories.
        transfer_strategies: strategies of the transfer experiment (random seed of `seed_size`,
            batches of `batch_size`: the strategies experiment's trajectories).
        transfer_budgets: query counts at which the transfer experiment attacks with the substitute;
            each must be a round of the trajectory (`seed_size` + k * `batch_size`).
        transfer_methods: attacks of the transfer experiment (names of `activethief.attacks.ATTACKS`).
        transfer_epsilons: L∞ radii of the transfer experiment, in pixels of [0, 1].
        transfer_images: the attacks run on the first `transfer_images` test images.
        transfer_repeats: repeats of the transfer experiment (None: `repeats`).
    """

    repeats: int = 5
    pool_size: int | None = None
    test_size: int | None = None
    batch_size: int = 1000
    seed_size: int = 1000
    seed_sizes: tuple[int, ...] = (1000, 2000, 3000, 4000, 5000)
    seedings: tuple[str, ...] = STUDY_SEEDINGS
    strategies: tuple[str, ...] = STUDY_STRATEGIES
    strategies_budget: int = 20_000
    checkpoints: tuple[int, ...] = (5000, 10_000, 15_000, 20_000)
    seed_size_budget: int = 10_000
    alphas: tuple[float, ...] = (0.005, 0.01, 0.05, 0.1)
    patiences: tuple[int, ...] = (1, 3)
    stopping_budget: int | None = None
    substitute: str = "cnn2"
    fit: FitConfig = GRID_FIT
    base_seed: int = 0
    canonical_strategy: str = "entropy"
    transfer_strategies: tuple[str, ...] = ("random", "entropy", "kcenter", "entropy+kcenter")
    transfer_budgets: tuple[int, ...] = (1000, 2000, 5000, 10_000, 20_000)
    transfer_methods: tuple[str, ...] = ("fgsm", "pgd")
    transfer_epsilons: tuple[float, ...] = (0.1, 0.2, 0.3)
    transfer_images: int = 1000
    transfer_repeats: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (tuples become lists)."""
        values: dict[str, Any] = json_ready({**asdict(self), "fit": self.fit.to_dict()})
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> GridParams:
        """The inverse of `to_dict`; unknown keys are an error (they would silently change nothing)."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown grid parameters {unknown}; known: {sorted(known)}")
        kwargs: dict[str, Any] = {}
        for key, value in values.items():
            if key == "fit":
                kwargs[key] = FitConfig.from_dict(value)
            elif isinstance(value, list):
                kwargs[key] = tuple(value)
            else:
                kwargs[key] = value
        return cls(**kwargs)

    def with_repeats(self, repeats: int | None) -> GridParams:
        """The same grid with another number of repeats (None keeps it)."""
        return self if repeats is None else replace(self, repeats=repeats)

    def validate(self, pool_size: int) -> None:
        """Raise ConfigError when a value cannot work on a pool of `pool_size` images."""
        if self.repeats < 1:
            raise ConfigError(f"repeats must be >= 1, got {self.repeats}")
        if self.batch_size < 1 or self.seed_size < 1 or any(n < 1 for n in self.seed_sizes):
            raise ConfigError("batch and seed sizes must be >= 1")
        unknown = [s for s in self.strategies if s not in STRATEGIES]
        if unknown or self.canonical_strategy not in STRATEGIES:
            raise ConfigError(
                f"unknown strategies {unknown or [self.canonical_strategy]}; known: {STRATEGIES}"
            )
        for seeding in self.seedings:
            make_seeder(seeding)  # raises ConfigError with the accepted forms
        if any(a < 0 for a in self.alphas):
            raise ConfigError(f"alphas must be >= 0 (nats), got {self.alphas}")
        if not self.patiences or any(k < 1 for k in self.patiences):
            raise ConfigError(f"patiences must be whole numbers >= 1, got {self.patiences}")
        largest = max((*self.seed_sizes, self.seed_size, self.strategies_budget, self.seed_size_budget))
        if largest > pool_size:
            raise ConfigError(
                f"the grid needs {largest} queries but the pool holds {pool_size} images; "
                "raise pool_size or lower the budgets"
            )
        if self.stopping_budget is not None and not 1 <= self.stopping_budget <= pool_size:
            raise ConfigError(f"stopping_budget must lie in [1, {pool_size}], got {self.stopping_budget}")
        if any(c > self.strategies_budget for c in self.checkpoints):
            raise ConfigError(
                f"checkpoints {self.checkpoints} exceed strategies_budget {self.strategies_budget}"
            )


# A reduced grid that runs in minutes on 2 cores (both datasets): a 1,000-image pool, batches of 100,
# 2 repeats, lighter training. Its numbers check the machinery, not the science.
QUICK = GridParams(
    repeats=2,
    pool_size=1000,
    test_size=1000,
    batch_size=100,
    seed_size=100,
    seed_sizes=(100, 200, 300),
    strategies_budget=500,
    checkpoints=(200, 300, 400, 500),
    seed_size_budget=400,
    fit=FitConfig(epochs=5, patience=2),
    transfer_budgets=(100, 200, 500),
    transfer_images=200,
)


def json_ready(value: Any) -> Any:
    """Tuples to lists, recursively, so a value survives a JSON round trip unchanged."""
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_ready(v) for v in value]
    return value
