"""Attacks by name: the names the CLI and experiment grids use (`fgsm`, `pgd`, `mi-fgsm`, `di-mi-fgsm`,
`ti-di-mi-fgsm`)."""

from __future__ import annotations

from typing import Any

from activethief.attacks.base import LEAST_LIKELY, Attack
from activethief.attacks.diversity import DIMIFGSM, TIDIMIFGSM
from activethief.attacks.fgsm import FGSM
from activethief.attacks.mifgsm import MIFGSM
from activethief.attacks.pgd import PGD
from activethief.errors import ConfigError

ATTACKS: dict[str, type[Attack]] = {
    "fgsm": FGSM,
    "pgd": PGD,
    "mi-fgsm": MIFGSM,
    "di-mi-fgsm": DIMIFGSM,
    "ti-di-mi-fgsm": TIDIMIFGSM,
}


def parse_target_class(text: str | int | None) -> int | str | None:
    """`None`, `"least-likely"` or a class index from a command-line value such as "3"."""
    if text is None or isinstance(text, int):
        return text
    value = text.strip().lower()
    if value in (LEAST_LIKELY, "least_likely", "ll"):
        return LEAST_LIKELY
    if value.isdigit():
        return int(value)
    raise ConfigError(f"targeted must be {LEAST_LIKELY!r} or a class index such as 3; got {text!r}")


def make_attack(method: str, **hyperparameters: Any) -> Attack:
    """An attack by name; hyperparameters left as None take the attack's defaults.

    Raises ConfigError for an unknown name or a hyperparameter the attack does not take (e.g.
    `steps` for FGSM), so a typo never silently runs a different attack.
    """
    try:
        cls = ATTACKS[method.strip().lower()]
    except KeyError:
        raise ConfigError(f"unknown attack method {method!r}; use one of: {', '.join(ATTACKS)}") from None
    given = {k: v for k, v in hyperparameters.items() if v is not None}
    known = set(cls.__dataclass_fields__)
    unknown = sorted(set(given) - known)
    if unknown:
        raise ConfigError(
            f"{cls.name} does not take {', '.join(unknown)}; it takes {', '.join(sorted(known))}"
        )
    if "target_class" in given:
        given["target_class"] = parse_target_class(given["target_class"])
    return cls(**given)
