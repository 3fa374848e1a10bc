"""Strategies by public name: each name is a small composition of scorers and selectors."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from activethief.errors import ConfigError
from activethief.selection.badge import Badge
from activethief.selection.base import Need, Strategy
from activethief.selection.compose import DEFAULT_NARROW_FACTOR, Composed, Narrow, check_narrowing
from activethief.selection.dfal import DFAL
from activethief.selection.kcenter import KCenter
from activethief.selection.scorers import Entropy, LeastConfidence, Margin
from activethief.selection.selectors import ClassBalanced, RandomChoice, TopScore

DEFAULT_KCENTER_FACTOR = 2.0
DFAL_KCENTER_FACTOR = 2.0  # DeepFool on 2k candidates keeps `dfal+kcenter`'s cost per round bounded


@dataclass(frozen=True)
class _Options:
    narrow_factor: float
    narrow: int | None
    kcenter_factor: float


def _entropy_narrow(options: _Options) -> Narrow:
    return Narrow(TopScore(Entropy()), factor=options.narrow_factor, count=options.narrow)


_BUILDERS: dict[str, Callable[[_Options], Strategy]] = {
    "random": lambda options: RandomChoice(),
    "uniform": lambda options: ClassBalanced(),
    "least-confidence": lambda options: TopScore(LeastConfidence()),
    "margin": lambda options: TopScore(Margin()),
    "entropy": lambda options: TopScore(Entropy()),
    "kcenter": lambda options: KCenter(),
    "kcenter@features": lambda options: KCenter(space=Need.FEATURES),
    # Core-set (Sener & Savarese, ICLR 2018) is k-center greedy on penultimate features: the same unit.
    "coreset": lambda options: KCenter(space=Need.FEATURES, name="coreset"),
    "entropy+kcenter": lambda options: Composed([_entropy_narrow(options)], KCenter()),
    "entropy+kcenter@features": lambda options: Composed(
        [_entropy_narrow(options)], KCenter(space=Need.FEATURES)
    ),
    "dfal": lambda options: DFAL(),
    # ActiveThief's best on images: DFAL keeps the 2k closest to the boundary, k-center diversifies.
    "dfal+kcenter": lambda options: Composed([Narrow(DFAL(), factor=DFAL_KCENTER_FACTOR)], KCenter()),
    "badge": lambda options: Badge(),
    "entropy+uniform": lambda options: Composed([_entropy_narrow(options)], ClassBalanced()),
    "entropy+kcenter+uniform": lambda options: Composed(
        [_entropy_narrow(options), Narrow(KCenter(), factor=options.kcenter_factor)], ClassBalanced()
    ),
}

STRATEGIES: tuple[str, ...] = tuple(_BUILDERS)


def make_strategy(
    name: str,
    *,
    narrow_factor: float = DEFAULT_NARROW_FACTOR,
    narrow: int | None = None,
    kcenter_factor: float = DEFAULT_KCENTER_FACTOR,
) -> Strategy:
    """Build the strategy called `name` (one of `STRATEGIES`). Options a name does not use are ignored.

    Args:
        name: Public strategy name, e.g. "entropy+kcenter".
        narrow_factor: In `entropy+...` names, entropy keeps the `ceil(narrow_factor * k)` most uncertain
            candidates (default 10) before the next stage diversifies among them.
        narrow: A fixed number of candidates entropy keeps instead (overrides `narrow_factor`).
        kcenter_factor: In `entropy+kcenter+uniform`, k-center keeps `ceil(kcenter_factor * k)`
            candidates (default 2) from which `uniform` picks `k` class-balanced ones.

    Raises:
        ConfigError: For an unknown name or an invalid option.
    """
    builder = _BUILDERS.get(name.strip().lower()) if isinstance(name, str) else None
    if builder is None:
        raise ConfigError(f"unknown selection strategy {name!r}; choose one of: {', '.join(STRATEGIES)}")
    check_narrowing(narrow_factor, narrow, "entropy")
    check_narrowing(kcenter_factor, None, "kcenter")
    return builder(_Options(narrow_factor=narrow_factor, narrow=narrow, kcenter_factor=kcenter_factor))
