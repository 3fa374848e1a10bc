"""Output modes: what a prediction API reveals of the target's probabilities."""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from activethief.errors import ConfigError
from activethief.training.targets import spread_remainder

_PATTERN = re.compile(r"^(probs|label|topk:(\d+)|round:(\d+))$")


@dataclass(frozen=True)
class OutputMode:
    """One of `probs`, `topk:K`, `label`, `round:D` (parse with `OutputMode.parse`)."""

    kind: str
    param: int = 0

    @classmethod
    def parse(cls, text: str | OutputMode) -> OutputMode:
        if isinstance(text, OutputMode):
            return text
        match = _PATTERN.match(text.strip())
        if not match:
            raise ConfigError(
                f"invalid output mode {text!r}; use probs, topk:K (K>=1), label or round:D (D>=0)"
            )
        kind = match.group(1).split(":")[0]
        param = int(match.group(2) or match.group(3) or 0)
        if kind == "topk" and param < 1:
            raise ConfigError(f"invalid output mode {text!r}: topk needs K >= 1")
        return cls(kind, param)

    def __str__(self) -> str:
        return f"{self.kind}:{self.param}" if self.kind in ("topk", "round") else self.kind

    @property
    def hard(self) -> bool:
        """True when answers name only the predicted class (`label`, `topk:1`). A `topk:1` answer also
        carries that class's probability, which training keeps (`answers_to_targets`)."""
        return self.kind == "label" or (self.kind == "topk" and self.param == 1)

    def apply(self, probs: np.ndarray) -> np.ndarray:
        """What the API would return for these probability rows [n, C] (float32 [n, C])."""
        p = np.asarray(probs, dtype=np.float32)
        if self.kind == "probs":
            return p.copy()
        if self.kind == "label":
            out = np.zeros_like(p)
            out[np.arange(len(p)), p.argmax(1)] = 1.0
            return out
        if self.kind == "round":
            return np.round(p, self.param).astype(np.float32)
        k = min(self.param, p.shape[1])
        top = np.argsort(-p, axis=1, kind="stable")[:, :k]
        out = np.zeros_like(p)
        rows = np.arange(len(p))[:, None]
        out[rows, top] = p[rows, top]
        return out


def answers_to_targets(answers: np.ndarray) -> np.ndarray:
    """Training targets [n, C] from recorded answers of any output mode (`training.targets`).

    Full rows are renormalised; the mass a top-k or rounded row does not show goes evenly to the classes
    it shows as zero (not renormalised away); a row of zeros becomes uniform. One-hot rows stay one-hot
    (`fit` smooths an all-one-hot training set: `FitConfig.label_smoothing`).
    """
    return spread_remainder(answers)
