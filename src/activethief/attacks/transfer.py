"""Transfer evaluation: craft on the substitute, send the adversarial images to the target through the oracle.

The only side effect is spending oracle queries (unkeyed, so they never mix with the stealing budget's
pool answers); nothing is written or printed, so the function can be called once per stealing budget
in an experiment. Pass `target_clean` to reuse the target's clean answers across calls.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import torch
from torch import nn

from activethief.attacks.base import Attack, check_inputs, num_classes_of, predict_classes
from activethief.errors import BudgetExceededError, ConfigError
from activethief.oracle.base import Oracle


@dataclass(frozen=True)
class TransferExamples:
    """Per-image arrays behind a `TransferResult` (for plots and further analysis; not JSON)."""

    images: np.ndarray  # float32 [n, C, H, W], clean
    adversarial: np.ndarray  # float32 [n, C, H, W], crafted on the substitute
    labels: np.ndarray  # int64 [n], true classes
    goal: np.ndarray  # int64 [n]: true class (untargeted) or the class each image is pushed to
    substitute_clean: np.ndarray  # int64 [n], substitute's predicted classes
    substitute_adversarial: np.ndarray
    target_clean: np.ndarray  # int64 [n], from the oracle's answers
    target_adversarial: np.ndarray


@dataclass(frozen=True)
class TransferResult:
    """How well an attack crafted on the substitute transfers to the target. JSON-able via `to_dict`.

    Success rates are fractions in [0, 1], or None when no image qualifies:
    - untargeted rates count images the model classified correctly before the attack and misclassifies after;
    - targeted rates count images the model classified correctly (and whose goal class differs from the
      true class) that it assigns to the goal class after the attack.
    """

    attack: dict[str, Any]
    n: int
    seed: int
    target_accuracy: float  # clean, from the oracle's answers
    substitute_accuracy: float
    agreement: float  # substitute and target predict the same class on the clean images
    target_correct: int  # images the target classified correctly: the transfer rate's denominator
    transfer_success_rate: float | None
    targeted_transfer_success_rate: float | None
    whitebox_success_rate: float | None  # the same attack on the substitute itself
    targeted_whitebox_success_rate: float | None
    target_whitebox_success_rate: float | None  # crafted on the target (local targets only): an upper bound
    target_targeted_whitebox_success_rate: float | None
    mean_linf: float  # mean over images of ||x_adv - x||_inf
    mean_l2: float  # mean over images of ||x_adv - x||_2
    clean_queries: int  # oracle queries spent on the target's clean predictions (0 if they were given)
    adversarial_queries: int  # oracle queries spent on the adversarial images
    oracle_used: int  # all queries the oracle has answered so far (stealing + attack)
    oracle_budget: int | None
    seconds: float
    examples: TransferExamples | None = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        """All scalar fields (everything but `examples`) as a JSON-able dict."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "examples"}


def success_rates(
    labels: np.ndarray, goal: np.ndarray, clean: np.ndarray, adversarial: np.ndarray, *, targeted: bool
) -> tuple[float | None, float | None]:
    """(untargeted, targeted) success of predictions `adversarial` [n] given `clean` predictions [n].

    The targeted rate is None for an untargeted attack.
    """
    correct = clean == labels
    untargeted = _rate(adversarial != labels, correct)
    if not targeted:
        return untargeted, None
    return untargeted, _rate(adversarial == goal, correct & (goal != labels))


def evaluate_transfer(
    substitute: nn.Module,
    oracle: Oracle,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    *,
    white_box_target: nn.Module | None = None,
    target_clean: np.ndarray | None = None,
    seed: int = 0,
    query_batch_size: int = 256,
) -> TransferResult:
    """Craft `attack` on `substitute` and measure how often it fools the target behind `oracle`.

    Queries: the target's clean predictions (n, unless `target_clean` is given) and the n adversarial
    images, all unkeyed; the budget is checked before anything is spent, so a too-small budget raises
    BudgetExceededError without using a query.

    Args:
        substitute: the stolen model (logits out) the attack is crafted on.
        oracle: the target's black box (local, callable or HTTP).
        images: float32 [n, C, H, W] in [0, 1] of the target's input shape (`oracle.input_shape`),
            e.g. test images.
        labels: true classes, int [n].
        attack: the attack to run (its `target_class` decides targeted or not).
        white_box_target: the target as a torch module, when it is local: the same attack crafted on it
            gives an upper bound on transfer (no oracle queries).
        target_clean: the target's answers [n, C] or classes [n] on these clean images from an earlier
            call, to save n queries per call.
        seed: seeds the attack's random start (same seed for substitute and white-box target).
        query_batch_size: images per oracle request.
    """
    started = time.perf_counter()
    x_t, y = check_inputs(images, labels)
    x = x_t.numpy()
    n = len(x)
    if n == 0:
        raise ConfigError("no images to attack; pass at least one image")
    expected = tuple(oracle.input_shape)
    if tuple(x.shape[1:]) != expected:
        raise ConfigError(
            f"images have shape {list(x.shape)}, but the target takes [n, {', '.join(map(str, expected))}] "
            f"(its input shape (C, H, W) = {expected}); attack images of the target's shape"
        )
    sub_shape = getattr(substitute, "input_shape", None)
    if sub_shape is not None and tuple(sub_shape) != expected:
        raise ConfigError(
            f"the substitute was built for images of shape {tuple(sub_shape)}, the target takes {expected}; "
            "steal a substitute for this target"
        )
    num_classes = num_classes_of(substitute, x_t)
    if num_classes != oracle.num_classes:
        raise ConfigError(
            f"the substitute has {num_classes} classes but the target has {oracle.num_classes}; "
            "steal a substitute for this target (same dataset)"
        )
    if query_batch_size < 1:
        raise ConfigError(f"query_batch_size must be >= 1; got {query_batch_size}")
    if target_clean is not None:
        target_clean = np.asarray(target_clean)
        if target_clean.shape not in ((n,), (n, num_classes)):
            raise ConfigError(
                f"target_clean must be the target's classes [{n}] or answers [{n}, {num_classes}] for these "
                f"images; got shape {list(target_clean.shape)}"
            )
    needed = n if target_clean is not None else 2 * n
    if oracle.remaining is not None and needed > oracle.remaining:
        assert oracle.budget is not None
        raise BudgetExceededError(oracle.used, needed, oracle.budget)

    goal = attack.goal_classes(substitute, x, y)
    adversarial = attack(substitute, x, y, seed=seed)
    sub_clean = predict_classes(substitute, x_t, attack.batch_size)
    sub_adv = predict_classes(substitute, torch.from_numpy(adversarial), attack.batch_size)

    clean_queries = 0
    if target_clean is None:
        tgt_clean = _query_classes(oracle, x, query_batch_size)
        clean_queries = n
    else:
        tgt_clean = target_clean.argmax(1) if target_clean.ndim == 2 else target_clean.astype(np.int64)
    tgt_adv = _query_classes(oracle, adversarial, query_batch_size)

    transfer, targeted_transfer = success_rates(y, goal, tgt_clean, tgt_adv, targeted=attack.targeted)
    whitebox, targeted_whitebox = success_rates(y, goal, sub_clean, sub_adv, targeted=attack.targeted)
    target_whitebox = target_targeted_whitebox = None
    if white_box_target is not None:
        wb_goal = attack.goal_classes(white_box_target, x, y)
        wb_adv = attack(white_box_target, x, y, seed=seed)
        target_whitebox, target_targeted_whitebox = success_rates(
            y,
            wb_goal,
            predict_classes(white_box_target, x_t, attack.batch_size),
            predict_classes(white_box_target, torch.from_numpy(wb_adv), attack.batch_size),
            targeted=attack.targeted,
        )

    delta = (adversarial - x).reshape(n, -1).astype(np.float64)
    return TransferResult(
        attack=attack.config(),
        n=n,
        seed=seed,
        target_accuracy=_mean(tgt_clean == y),
        substitute_accuracy=_mean(sub_clean == y),
        agreement=_mean(sub_clean == tgt_clean),
        target_correct=int((tgt_clean == y).sum()),
        transfer_success_rate=transfer,
        targeted_transfer_success_rate=targeted_transfer,
        whitebox_success_rate=whitebox,
        targeted_whitebox_success_rate=targeted_whitebox,
        target_whitebox_success_rate=target_whitebox,
        target_targeted_whitebox_success_rate=target_targeted_whitebox,
        mean_linf=_mean(np.abs(delta).max(1)),
        mean_l2=_mean(np.linalg.norm(delta, axis=1)),
        clean_queries=clean_queries,
        adversarial_queries=n,
        oracle_used=oracle.used,
        oracle_budget=oracle.budget,
        seconds=round(time.perf_counter() - started, 3),
        examples=TransferExamples(
            images=x,
            adversarial=adversarial,
            labels=y,
            goal=goal,
            substitute_clean=sub_clean,
            substitute_adversarial=sub_adv,
            target_clean=tgt_clean,
            target_adversarial=tgt_adv,
        ),
    )


def _query_classes(oracle: Oracle, images: np.ndarray, batch_size: int) -> np.ndarray:
    """The target's predicted class per image, int64 [n], from unkeyed oracle queries."""
    chunks = [np.zeros(0, np.int64)]
    for start in range(0, len(images), batch_size):
        answers = oracle.query(images[start : start + batch_size])
        chunks.append(np.asarray(answers).argmax(1).astype(np.int64))
    return np.concatenate(chunks)


def _rate(hit: np.ndarray, eligible: np.ndarray) -> float | None:
    count = int(eligible.sum())
    return None if count == 0 else float((hit & eligible).sum()) / count


def _mean(values: np.ndarray) -> float:
    return float(np.mean(values))
