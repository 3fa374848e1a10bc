"""Answer policies ("defences") a target's owner deploys, one `Defence` per policy, parsed from a spec
(`parse_defence("noise:0.05+reverse-sigmoid:0.7")`), applied in-process by `DefendedBackend` and per key
by `activethief serve`; `defence_cost` measures what one costs honest users."""

from activethief.oracle.defences.backend import (
    DefenceCost,
    DefendedBackend,
    SeededDefence,
    defence_cost,
    defended_accuracy,
)
from activethief.oracle.defences.policies import (
    USAGE,
    AdaptiveMisinformation,
    Chain,
    Defence,
    GaussianNoise,
    NoDefence,
    ReverseSigmoid,
    parse_defence,
)

__all__ = [
    "USAGE",
    "AdaptiveMisinformation",
    "Chain",
    "Defence",
    "DefenceCost",
    "DefendedBackend",
    "GaussianNoise",
    "NoDefence",
    "ReverseSigmoid",
    "SeededDefence",
    "defence_cost",
    "defended_accuracy",
    "parse_defence",
]
