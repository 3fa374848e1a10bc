"""Answer policies a target's owner applies to its probabilities before anyone sees them ("defences").

Each policy is one small `Defence`: `apply(probs, rng)` maps probability rows [n, C] to probability
rows [n, C] (non-negative, summing to one), drawing any randomness from the generator it is given, so
the same object serves the in-process oracle (`DefendedBackend`) and `activethief serve` (per key).
A defence runs before the output mode (`round:D`, `topk:K`, `label`), which then reduces its answer.

Specs (`parse_defence`), chained left to right with `+`:

- `none`: answer truthfully.
- `noise:S`: Gaussian noise of standard deviation S on every probability, clipped at 0, renormalised.
- `reverse-sigmoid:BETA[,GAMMA]`: Reverse Sigmoid (Lee et al., 2018, "Defending against NN model
  stealing attacks using deceptive perturbations"), as ART 1.20's `ReverseSigmoid` (GAMMA 0.1).
- `misinformation:TAU[,NU]`: Adaptive Misinformation (Kariyappa and Qureshi, CVPR 2020), NU 1000.
"""

from __future__ import annotations

import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence

import numpy as np

from activethief.errors import ConfigError, OracleError

_SPLIT = re.compile(r"\+(?=\s*[A-Za-z])")  # `+` before a policy name, not the exponent sign of 1e+3
_CLIP = 1e-9  # ART's clip of probabilities before the logit in Reverse Sigmoid


def _renormalise(values: np.ndarray, fallback: np.ndarray) -> np.ndarray:
    """Rows of non-negative `values` scaled to sum to one; a row with no mass left becomes a one-hot of
    `fallback`'s largest entry (the most a destroyed answer can still say)."""
    mass = values.sum(1, keepdims=True)
    empty = mass[:, 0] <= 0
    if empty.any():
        values = values.copy()
        values[empty] = 0.0
        values[np.flatnonzero(empty), fallback[empty].argmax(1)] = 1.0
        mass = values.sum(1, keepdims=True)
    out: np.ndarray = (values / mass).astype(np.float32)
    return out


class Defence(ABC):
    """One answer policy. Subclasses write `_answer`; `apply` checks the rows once, before and after.

    `str(defence)` (also `defence.name`) is its spec, which `parse_defence` reads back.
    """

    @abstractmethod
    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The policy on float32 rows [n, C] that sum to one."""

    @abstractmethod
    def __str__(self) -> str: ...

    @property
    def name(self) -> str:
        return str(self)

    @property
    def random(self) -> bool:
        """Whether answers draw from the generator (the same rows may be answered differently)."""
        return False

    def apply(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """What the owner's API answers for these probability rows: float32 [n, C] probability rows."""
        p = np.asarray(probs, dtype=np.float32)
        if p.ndim != 2 or p.shape[1] < 2 or not np.isfinite(p).all():
            raise OracleError(
                f"a defence needs finite probability rows [n, C >= 2]; got shape {list(p.shape)}"
            )
        out = np.asarray(self._answer(p, rng), dtype=np.float32)
        assert out.shape == p.shape, (out.shape, p.shape)
        return out

    def __repr__(self) -> str:
        return f"parse_defence({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Defence) and str(other) == str(self)

    def __hash__(self) -> int:
        return hash(str(self))


class NoDefence(Defence):
    """`none`: the truthful answer."""

    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return probs.copy()

    def __str__(self) -> str:
        return "none"


class GaussianNoise(Defence):
    """`noise:S`: p + N(0, S^2) per entry, clipped at 0 and renormalised (a fresh draw per answer).

    The simplest perturbation an owner can deploy; it blurs the soft information a thief distils from,
    and flips the top label only where the target is unsure (the top two within a few S)."""

    def __init__(self, std: float) -> None:
        self.std = std

    @property
    def random(self) -> bool:
        return True

    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        noisy = probs + rng.normal(0.0, self.std, probs.shape).astype(np.float32)
        return _renormalise(np.clip(noisy, 0.0, None), noisy)

    def __str__(self) -> str:
        return f"noise:{self.std:g}"


class ReverseSigmoid(Defence):
    """`reverse-sigmoid:BETA[,GAMMA]` (Lee et al., 2018): y = normalise(clip(p - r(p), 0, 1)) with
    r(p) = BETA (sigmoid(GAMMA logit(p)) - 1/2), logit taken on p clipped to [1e-9, 1 - 1e-9].

    Confident entries shrink and small ones grow, so the answer's soft information (what a thief distils)
    is inverted where it matters, while the top label mostly stays (honest users keep their argmax).
    The same formula as ART 1.20's `art.defences.postprocessor.ReverseSigmoid` for C >= 2; its
    GAMMA default (0.1) is ours too. tests/oracle/test_defences.py checks the two agree.
    """

    def __init__(self, beta: float, gamma: float = 0.1) -> None:
        self.beta, self.gamma = beta, gamma

    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = probs.astype(np.float64)
        # Clipped in float32, as ART clips float32 answers: 1 - 1e-9 rounds to 1, so an entry of 1 has
        # an infinite logit and r = BETA / 2 (in float64 it would be BETA (sigmoid(20.7 GAMMA) - 1/2)).
        clipped = np.clip(probs, np.float32(_CLIP), np.float32(1.0 - _CLIP)).astype(np.float64)
        with np.errstate(divide="ignore"):
            logit = np.log(clipped / (1.0 - clipped))
        perturbation = self.beta * (1.0 / (1.0 + np.exp(-self.gamma * logit)) - 0.5)
        perturbed = np.clip(p - perturbation, 0.0, 1.0)
        return _renormalise(perturbed, p)

    def __str__(self) -> str:
        return f"reverse-sigmoid:{self.beta:g},{self.gamma:g}"


class AdaptiveMisinformation(Defence):
    """`misinformation:TAU[,NU]` (Kariyappa and Qureshi, CVPR 2020): y = (1 - a) p + a p',
    a = sigmoid(NU (TAU - max p)).

    Queries the target is sure about (max p above TAU: in-distribution) are answered truthfully; unsure
    ones (an out-of-distribution signal, which is what a thief's pool mostly is) get the misinformation
    function p'. The paper trains a misinformation model to minimise the true class's probability; ours
    is its analytic stand-in, the rank reversal of p: the class the target finds least likely gets the
    largest probability, the top class the smallest, the values themselves unchanged. It is confident,
    wrong, and a deterministic function of the answer, so a thief learns a consistently wrong function
    (averaging repeated queries recovers nothing). NU = 1000 (the paper's) makes a a near step at TAU.
    """

    def __init__(self, tau: float, nu: float = 1000.0) -> None:
        self.tau, self.nu = tau, nu

    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        p = probs.astype(np.float64)
        order = np.argsort(p, axis=1, kind="stable")  # ascending: least likely class first
        ascending = np.take_along_axis(p, order, axis=1)
        misinformation = np.empty_like(p)
        np.put_along_axis(misinformation, order, ascending[:, ::-1], axis=1)
        z = np.clip(self.nu * (self.tau - p.max(1, keepdims=True)), -60.0, 60.0)
        a = 1.0 / (1.0 + np.exp(-z))
        return _renormalise((1.0 - a) * p + a * misinformation, p)

    def __str__(self) -> str:
        return f"misinformation:{self.tau:g},{self.nu:g}"


class Chain(Defence):
    """`A+B+...`: each policy applied to the answer of the one before (left to right)."""

    def __init__(self, parts: Sequence[Defence]) -> None:
        self.parts = tuple(parts)

    @property
    def random(self) -> bool:
        return any(part.random for part in self.parts)

    def _answer(self, probs: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        for part in self.parts:
            probs = part.apply(probs, rng)
        return probs

    def __str__(self) -> str:
        return "+".join(str(part) for part in self.parts)


def _check(value: float, ok: bool, what: str, spec: str) -> float:
    if not ok or not math.isfinite(value):
        raise ConfigError(f"invalid defence {spec!r}: {what}")
    return value


def _noise(args: list[float], spec: str) -> Defence:
    (std,) = args
    return GaussianNoise(_check(std, std > 0, "noise:S needs a standard deviation S > 0", spec))


def _reverse_sigmoid(args: list[float], spec: str) -> Defence:
    beta = _check(args[0], args[0] > 0, "reverse-sigmoid:BETA[,GAMMA] needs BETA > 0", spec)
    gamma = args[1] if len(args) > 1 else 0.1
    return ReverseSigmoid(beta, _check(gamma, gamma > 0, "reverse-sigmoid needs GAMMA > 0", spec))


def _misinformation(args: list[float], spec: str) -> Defence:
    tau = _check(args[0], 0 < args[0] <= 1, "misinformation:TAU[,NU] needs 0 < TAU <= 1", spec)
    nu = args[1] if len(args) > 1 else 1000.0
    return AdaptiveMisinformation(tau, _check(nu, nu > 0, "misinformation needs NU > 0", spec))


# name -> (fewest and most numbers after the colon, builder, usage)
_UNITS: dict[str, tuple[int, int, Callable[[list[float], str], Defence], str]] = {
    "noise": (1, 1, _noise, "noise:S"),
    "reverse-sigmoid": (1, 2, _reverse_sigmoid, "reverse-sigmoid:BETA[,GAMMA]"),
    "misinformation": (1, 2, _misinformation, "misinformation:TAU[,NU]"),
}
USAGE = (
    "none, "
    + ", ".join(unit[3] for unit in _UNITS.values())
    + ", chained with + (e.g. noise:0.05+reverse-sigmoid:0.7)"
)


def _unit(text: str, spec: str) -> Defence:
    name, colon, rest = text.strip().partition(":")
    name = name.strip().lower()
    if name == "none" and not colon:
        return NoDefence()
    if name not in _UNITS:
        raise ConfigError(f"invalid defence {spec!r}: unknown policy {name!r}; use {USAGE}")
    fewest, most, build, usage = _UNITS[name]
    try:
        args = [float(v) for v in rest.split(",")] if colon else []
    except ValueError:
        raise ConfigError(f"invalid defence {spec!r}: {usage} takes numbers, got {rest!r}") from None
    if not fewest <= len(args) <= most:
        raise ConfigError(f"invalid defence {spec!r}: use {usage}")
    return build(args, spec)


def parse_defence(text: str | Defence | None) -> Defence:
    """The defence a spec names (module docstring); None or `none` is the truthful answer.

    Raises:
        ConfigError: naming the spec and what is wrong with it, with the accepted syntax.
    """
    if isinstance(text, Defence):
        return text
    if text is None:
        return NoDefence()
    if not isinstance(text, str) or not text.strip():
        raise ConfigError(f"invalid defence {text!r}: use {USAGE}")
    parts = [_unit(piece, text) for piece in _SPLIT.split(text)]
    parts = [part for part in parts if not isinstance(part, NoDefence)]
    if not parts:
        return NoDefence()
    return parts[0] if len(parts) == 1 else Chain(parts)
