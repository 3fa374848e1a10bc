"""Training targets from a prediction API's answers: each answer taken for what it reveals, no more.

- Full probability rows train as they are (renormalised, which only absorbs float error).
- Top-k and rounded rows show part of the vector. The mass a row does not show (1 minus its sum) is
  spread evenly over the classes it shows as zero instead of being renormalised away: a top-k answer
  says each unseen class has at most the k-th probability, and the even spread is the least committed
  vector consistent with that (Tramer et al., USENIX Security 2016, and Orekondy et al., CVPR 2019,
  steal from such truncated and rounded answers). A rounded row that sums above one is renormalised;
  a row of zeros (`round:0` when no class reaches 0.5) reveals nothing and becomes uniform.
- One-hot rows (a label-only API, or `round:0`) reveal only the class. `fit` smooths them (label
  smoothing, Szegedy et al., CVPR 2016) when every row of a training set is one-hot; see
  `FitConfig.label_smoothing` and `AUTO_SMOOTHING`.
"""

from __future__ import annotations

import numpy as np
import torch

from activethief.errors import ConfigError

# Label smoothing applied automatically to all-one-hot answers (label-only APIs), chosen by measurement
# (benchmarks/output_modes.py: MNIST label-only, entropy+kcenter in rounds of 1,000, cnn2 stealing a lenet
# target, seed 0): agreement at 1k/2k/3k/5k 96.01/98.14/98.54/98.97% unsmoothed, 96.32/98.23/98.80/98.97%
# with 0.1. Pseudo-labels over the pool on top (FitConfig.semi) gave 96.78/98.24/98.78/98.99% for 3.7
# times the time, so they stay opt-in.
AUTO_SMOOTHING = 0.1


def spread_remainder(answers: np.ndarray) -> np.ndarray:
    """Probability rows [n, C] (float32, each summing to one) from answers [n, C] that may be partial.

    Negative entries are clipped to zero. A row summing to less than one gives the rest, evenly, to
    its zero entries (or is renormalised when it has none); a row summing to more is renormalised.
    """
    a = np.clip(np.asarray(answers, dtype=np.float32), 0.0, None)
    if a.ndim != 2 or a.shape[1] < 1:
        raise ConfigError(f"answers must be [n, classes] rows, got shape {a.shape}")
    mass = a.sum(1, keepdims=True)
    zeros = a == 0
    unseen = zeros.sum(1, keepdims=True)
    missing = np.clip(1.0 - mass, 0.0, None)
    spread = np.where(zeros & (unseen > 0), missing / np.maximum(unseen, 1), 0.0)
    filled = a + spread.astype(np.float32)
    result: np.ndarray = (filled / filled.sum(1, keepdims=True)).astype(np.float32)
    return result


def all_one_hot(targets: torch.Tensor) -> bool:
    """True when every row of `targets` [n, C] is exactly one 1 and zeros elsewhere (hard labels)."""
    if targets.ndim != 2 or len(targets) == 0:
        return False
    ones = targets == 1
    return bool(((ones | (targets == 0)).all() & (ones.sum(1) == 1).all()).item())


def smooth(soft: torch.Tensor, amount: float) -> torch.Tensor:
    """Label smoothing: (1 - amount) * targets + amount / C, rows [n, C] still summing to one."""
    if not 0 <= amount < 1:
        raise ConfigError(f"label smoothing must lie in [0, 1), got {amount}")
    if amount == 0:
        return soft
    return soft * (1.0 - amount) + amount / soft.shape[1]


def soften(soft: torch.Tensor, temperature: float) -> torch.Tensor:
    """Rows p^(1/T) renormalised: softmax(log p / T), the answers at distillation temperature T
    (Hinton et al., 2015). Zeros stay zero (a hard label stays one-hot); T = 1 returns `soft` itself."""
    if temperature == 1:
        return soft
    powered = soft.clamp_min(0) ** (1.0 / temperature)
    return powered / powered.sum(1, keepdim=True)


def distillation_temperature(given_ndim: int, soft: torch.Tensor, setting: float) -> float:
    """The temperature a training set is distilled at: `setting` for probability rows, 1 for hard labels
    (class indices [n], or rows that are all one-hot), whose softened form is the same one-hot row, so a
    temperature would only rescale the substitute's logits: no distillation, and never measured."""
    return setting if given_ndim == 2 and not all_one_hot(soft) else 1.0


def smoothing_amount(given_ndim: int, soft: torch.Tensor, setting: float | None) -> float:
    """How much to smooth a training set: `setting` when given; automatically (`None`) `AUTO_SMOOTHING`
    when the targets were given as rows [n, C] that are all one-hot (a label-only API's answers), and
    nothing otherwise. Class indices [n] are ground-truth labels (training a target) and are not
    smoothed automatically."""
    if setting is not None:
        return setting
    return AUTO_SMOOTHING if given_ndim == 2 and all_one_hot(soft) else 0.0
