"""Query-only baselines: ART 1.20's SquareAttack, SimBA and HopSkipJump run directly on the target (no
substitute), every query through our Oracle, counted per image, each image stopped at its first success.

ART's attacks see the oracle as a `BlackBoxClassifierNeuralNetwork` whose `predict_fn` is a
`CountingTarget`: it sends each batch ART asks for to the oracle (unkeyed queries), counts them, and
notes the first query whose image fools the target within the ε-ball (L∞ or L2, a float tolerance
allowed).
That query is the image's success, whatever ART does afterwards (HopSkipJump keeps shrinking the
perturbation; SimBA and Square stop there anyway): the counter then stops ART by raising, so no query is
spent beyond the first success or the per-image budget. Images are attacked one at a time, so every
query belongs to one image. A candidate ART computes as NaN or infinite (ART 1.20's L2 Square divides by
a zero norm on some images) is never sent: that image stops there, a failure with the queries it spent,
and the result counts such images (`invalid_candidate_images`).

ART draws its random numbers from numpy's global generator; `run_art_baseline` seeds it per image and
restores the caller's state afterwards.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

import numpy as np

from activethief.attacks.norms import Ball, ball, recorded
from activethief.attacks.query import QueryAttackResult, QueryBudget, TargetQueries, Timer, fooled
from activethief.errors import ConfigError
from activethief.oracle.base import Oracle

try:
    from art.attacks.evasion import HopSkipJump, SimBA, SquareAttack
    from art.estimators.classification import BlackBoxClassifierNeuralNetwork
except ImportError as exc:  # ART is optional: only this module needs it
    raise ConfigError(
        "the ART baselines need the Adversarial Robustness Toolbox: "
        f"pip install adversarial-robustness-toolbox ({exc})"
    ) from None

BASELINES = ("square", "simba", "hopskipjump")
_TOLERANCE = 1e-5  # float32 slack on the ε-ball when judging ART's candidates
SIMBA_L2_STEP = 0.2  # SimBA's per-pixel step under L2 (Guo et al., 2019): the ball bounds how many land


class _Stop(Exception):  # control flow, not an error: ART is done for this image
    pass


class CountingTarget:
    """ART's `predict_fn` for one image at a time: oracle answers, counted, watching for the first success."""

    def __init__(self, target: TargetQueries, *, targeted: bool, eps: float, norm: Ball) -> None:
        self.target = target
        self.targeted = targeted
        self.eps = eps
        self.norm = norm
        self.index = 0
        self.clean = np.zeros(0, np.float32)
        self.goal = 0
        self.success = False
        self.invalid = 0  # images whose attack produced a non-finite candidate

    def start(self, index: int, clean: np.ndarray, goal: int) -> None:
        self.index, self.clean, self.goal, self.success = index, clean, goal, False

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        batch = np.asarray(batch, np.float32)
        if not np.isfinite(batch).all():  # ART's arithmetic broke down: not a query worth paying for
            self.invalid += 1
            raise _Stop
        answers = np.zeros((len(batch), self.target.oracle.num_classes), np.float32)
        for row, image in enumerate(batch):  # one query at a time: stop exactly at the first success
            if not len(self.target.allowed(np.array([self.index]))):
                raise _Stop
            answers[row] = self.target.ask(np.array([self.index]), image[None])[0]
            inside = float(self.norm.distance((image - self.clean)[None])[0]) <= self.eps + _TOLERANCE
            if inside and fooled(answers[row : row + 1], np.array([self.goal]), targeted=self.targeted)[0]:
                self.success = True
                raise _Stop
        return answers


def _one_hot(goal: int, classes: int) -> np.ndarray:
    out = np.zeros((1, classes), np.float32)
    out[0, goal] = 1.0
    return out


def _make_attack(
    name: str, classifier: Any, *, eps: float, norm: Ball, targeted: bool, max_queries: int
) -> Any:
    """ART's attack `name` with settings that fit the threat (ε in `norm`) and never stop before the
    budget."""
    art_norm = np.inf if norm.name == "inf" else 2
    if name == "square":
        kwargs: dict[str, Any] = {}
        if targeted:  # ART's Square is untargeted by default: reach y instead of leaving it
            kwargs["adv_criterion"] = lambda pred, y: np.argmax(pred, 1) == np.argmax(y, 1)
            kwargs["loss"] = _targeted_square_loss(classifier)
        return SquareAttack(
            classifier,
            norm=art_norm,
            eps=eps,
            max_iter=max_queries,
            p_init=0.8,
            nb_restarts=1,
            batch_size=1,
            verbose=False,
            **kwargs,
        )
    if name == "simba":  # pixel basis; L∞: step eps, each pixel moves at most once, so L∞ <= eps
        step = eps if norm.name == "inf" else min(eps, SIMBA_L2_STEP)
        return SimBA(
            classifier, attack="px", max_iter=max_queries, epsilon=step, targeted=targeted, verbose=False
        )
    if name == "hopskipjump":
        return HopSkipJump(
            classifier,
            targeted=targeted,
            norm=art_norm,
            max_iter=max_queries,
            max_eval=1000,
            init_eval=100,
            init_size=100,
            batch_size=64,
            verbose=False,
        )
    raise ConfigError(f"unknown ART baseline {name!r}; use one of {', '.join(BASELINES)}")


def _targeted_square_loss(classifier: Any) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    def loss(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        pred = classifier.predict(x, batch_size=1)
        goal = np.argmax(y, 1)
        at_goal = np.take_along_axis(pred, goal[:, None], 1)[:, 0]
        others = pred.copy()
        np.put_along_axis(others, goal[:, None], -np.inf, 1)
        out: np.ndarray = others.max(1) - at_goal
        return out

    return loss


def run_art_baseline(
    name: str,
    oracle: Oracle,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    eps: float,
    max_queries_per_image: int,
    goal: np.ndarray | None = None,
    total_queries: int | None = None,
    seed: int = 0,
    norm: str = "inf",
) -> QueryAttackResult:
    """ART's `name` ("square", "simba" or "hopskipjump") against the oracle's target, image by image.

    Args:
        name: the ART attack.
        oracle: the target; every answer ART gets is a counted, unkeyed query.
        images: float32 [n, C, H, W] in [0, 1]; labels: int [n] true classes.
        eps: the ball's radius: Square's, and HopSkipJump's success threshold; SimBA's step under L∞
            (under L2 its step is `SIMBA_L2_STEP` and the ball decides success).
        max_queries_per_image: the per-image budget; ART is stopped there.
        goal: targeted goal classes [n] (None: untargeted, leave `labels`).
        total_queries: the most queries over all images.
        seed: seeds numpy's global generator per image (ART's randomness), restored afterwards.
        norm: "inf" (L∞) or "2" (L2).
    """
    timer = Timer()
    x = np.asarray(images, np.float32)
    targeted = goal is not None
    goals = np.asarray(goal if goal is not None else labels, np.int64)
    budget = QueryBudget(max_queries_per_image, total_queries)
    target = TargetQueries(oracle, len(x), budget, batch_size=1)
    threat = ball(norm)
    counter = CountingTarget(target, targeted=targeted, eps=eps, norm=threat)
    classifier = BlackBoxClassifierNeuralNetwork(
        counter, tuple(oracle.input_shape), oracle.num_classes, channels_first=True, clip_values=(0.0, 1.0)
    )
    attack = _make_attack(
        name, classifier, eps=eps, norm=threat, targeted=targeted, max_queries=max_queries_per_image
    )
    success = np.zeros(len(x), bool)
    saved = np.random.get_state()
    try:
        for i in range(len(x)):
            if not len(target.allowed(np.array([i]))):
                break
            counter.start(i, x[i], int(goals[i]))
            np.random.seed(np.random.SeedSequence([seed, i]).generate_state(1)[0])
            with contextlib.suppress(_Stop):
                attack.generate(x[i : i + 1], _one_hot(int(goals[i]), oracle.num_classes))
            success[i] = counter.success
    finally:
        np.random.set_state(saved)
    return QueryAttackResult(
        attack=recorded(
            {
                "method": f"art-{name}",
                "eps": eps,
                "norm": threat.name,
                "targeted": targeted,
                "max_queries_per_image": max_queries_per_image,
            }
        ),
        goal=goals,
        targeted=targeted,
        success=success,
        queries=target.queries,
        max_queries_per_image=max_queries_per_image,
        seconds=timer.seconds(),
        extra={"invalid_candidate_images": counter.invalid},
    )
