"""The steal settings, declared once: everything that decides a run's trajectory, validated in one place.

A resumed run must use the same values; the run folder stores them (`StealConfig.to_dict`) and refuses
a resume with others.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass, field
from typing import Any

from activethief.errors import ActiveThiefError, ConfigError
from activethief.models import check_arch, resolve_device
from activethief.oracle.defences import parse_defence
from activethief.selection import Seeder, Strategy, make_seeder, make_strategy
from activethief.stopping import StoppingRule, parse_stop
from activethief.training import FitConfig

# Per-round training, chosen by measurement (MNIST, entropy, seed 0): shifts of up to 2 px and at least
# 500 steps took accuracy at 2,000 queries from 97.63% (plain, 30 epochs) to 98.51%; 1,500 steps added
# nothing at 1,000 queries (96.76% vs 96.65%) for three times the time; capping epochs at 15 with patience
# 3 gave identical accuracy to 3,000 queries (small sets are step-bound) and halves the late rounds.
DEFAULT_FIT = FitConfig(epochs=15, patience=3, augment=2, min_steps=500)

# Training for budgets of a few hundred to a few thousand answers (benchmarks/low_budget.py): no answers
# held out for validation (at 1,000 answers the 10% split and early stopping cost FashionMNIST 7 points of
# agreement), 1,500 steps in the first round and 300 warm-started steps in each round after it, so a round's
# cost is bounded whatever the set's size (a 1,000-query MNIST steal in rounds of 100: 128 s on 2 cores).
# 1-pixel shifts beat none on both datasets. 1,500 fresh steps every round in rounds of 200 cost as much
# and did worse on MNIST (98.5% vs 98.9% at 1,000), better on FashionMNIST at 2,000 (92.1% vs 90.7%).
LOW_BUDGET_FIT = FitConfig(
    epochs=1, val_fraction=0.0, min_steps=1500, max_steps=1500, warm_steps=300, augment=1
)

# Named starting points for `StealConfig.preset` and `activethief steal --preset`; fields given
# explicitly override them.
PRESETS: dict[str, dict[str, Any]] = {
    "default": {},
    "low-budget": {"batch_size": 100, "strategy": "entropy+kcenter", "fit": LOW_BUDGET_FIT},
}


def _positive(name: str, value: object, *, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigError(f"StealConfig.{name} must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class StealConfig:
    """Everything that decides a run's trajectory (Pal et al., AAAI 2020: seed, then rounds of selection).

    Args:
        budget: the most queries the run buys for stealing (the oracle's own budget also applies).
        batch_size: queries per round after the seed round.
        strategy: selection strategy name (`activethief.selection.STRATEGIES`).
        seeding: `random`, `kmeans:N` or `pca-kmeans:N`.
        seed_size: the seed round's size (default: `batch_size`).
        stop: `budget`, `entropy:ALPHA` or `entropy:ALPHA:PATIENCE` (`activethief.stopping`).
        substitute: the substitute's architecture: a name in `activethief.models.ARCHITECTURES`, `auto`
            (chosen by the target's input shape: `activethief.models.resolve_arch`), or a user factory
            `package.module:function` taking `(input_shape, num_classes)` and returning an `nn.Module`.
        seed: the run seed; every random choice derives from it and the round.
        warm_start: start each round's training from the previous round's weights.
        narrow_factor: for `entropy+X` strategies, entropy keeps `narrow_factor * batch` candidates.
        fit: training settings per round.
        device: where the substitute trains and predicts: `auto` (a CUDA GPU when present), `cpu`,
            `cuda` or `cuda:N`.
        defence: the answer policy the target's owner applies, for an in-process target
            (`activethief.oracle.parse_defence`: `none`, `noise:S`, `reverse-sigmoid:BETA[,GAMMA]`,
            `misinformation:TAU[,NU]`, chained with `+`), stored in its canonical spelling. The run
            records it (a resume with another is refused); the oracle applies it: open it with
            `open_oracle(..., defence=config.defence)` (what `activethief steal --defence` does).

    Raises:
        ConfigError: naming the field, for any invalid value.
    """

    budget: int
    batch_size: int = 1000
    strategy: str = "entropy"
    seeding: str = "random"
    seed_size: int | None = None
    stop: str = "budget"
    substitute: str = "cnn2"
    seed: int = 0
    warm_start: bool = True
    narrow_factor: float | None = None
    fit: FitConfig = field(default=DEFAULT_FIT)
    device: str = "auto"
    defence: str = "none"

    def __post_init__(self) -> None:
        _positive("budget", self.budget)
        _positive("batch_size", self.batch_size)
        _positive("seed_size", self.seed_size, optional=True)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or self.seed < 0:
            raise ConfigError(f"StealConfig.seed must be a non-negative integer, got {self.seed!r}")
        try:
            check_arch(self.substitute)
        except ActiveThiefError as exc:
            raise ConfigError(f"StealConfig.substitute: {exc}") from None
        try:
            resolve_device(self.device)
        except ActiveThiefError as exc:
            raise ConfigError(f"StealConfig.device: {exc}") from None
        try:
            canonical = str(parse_defence(self.defence))
        except ActiveThiefError as exc:
            raise ConfigError(f"StealConfig.defence: {exc}") from None
        object.__setattr__(self, "defence", canonical)
        if not isinstance(self.fit, FitConfig):
            raise ConfigError(f"StealConfig.fit must be a FitConfig, got {type(self.fit).__name__}")
        for name, build in (("strategy", self.selector), ("seeding", self.seeder), ("stop", self.stop_rule)):
            try:
                build()
            except ActiveThiefError as exc:
                raise ConfigError(f"StealConfig.{name}: {exc}") from None

    @classmethod
    def build(cls, config: StealConfig | None, settings: dict[str, Any]) -> StealConfig:
        """`config` with `settings` (field names) replaced, or a new config from `settings` alone."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(settings) - known)
        if unknown:
            raise ConfigError(
                f"unknown steal setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        if config is None:
            if "budget" not in settings:
                raise ConfigError("steal needs a budget: pass config=StealConfig(budget=...) or budget=...")
            return cls(**settings)
        return dataclasses.replace(config, **settings) if settings else config

    @classmethod
    def preset(cls, name: str, **settings: Any) -> StealConfig:
        """The preset `name` (`PRESETS`) with `settings` (field names, a budget among them) replacing it."""
        if name not in PRESETS:
            raise ConfigError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}")
        return cls.build(None, {**PRESETS[name], **settings})

    @property
    def first_batch(self) -> int:
        """The seed round's size."""
        return self.seed_size or self.batch_size

    def selector(self) -> Strategy:
        """The selection strategy these settings name."""
        if self.narrow_factor is None:
            return make_strategy(self.strategy)
        return make_strategy(self.strategy, narrow_factor=self.narrow_factor)

    def seeder(self) -> Seeder:
        return make_seeder(self.seeding)

    def stop_rule(self) -> StoppingRule:
        return parse_stop(self.stop)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: what the run folder stores and compares on resume.

        `defence` appears only when there is one, and the training settings added later only when set
        (`FitConfig.to_dict`), so runs recorded before those existed still resume and keep their keys."""
        stored = asdict(self)
        stored["fit"] = self.fit.to_dict()
        if stored["defence"] == "none":
            del stored["defence"]
        return stored
