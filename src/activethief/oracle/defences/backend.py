"""A defended target: any backend answering raw probabilities, behind one of its owner's answer policies.

`DefendedBackend` simulates the owner's own defended API in this process: every answer, evaluation
answers included (what honest users receive), goes through the defence before the oracle's output mode.
`defence_cost` measures what the defence costs those honest users on a labelled test set.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from activethief.errors import OracleError
from activethief.oracle.base import DEFAULT_INPUT_SHAPE, Backend, Shape
from activethief.oracle.defences.policies import Defence, parse_defence
from activethief.oracle.modes import OutputMode


class DefendedBackend:
    """`backend`'s answers through `defence`, with randomness drawn from `seed`.

    A random defence (noise) draws each answer's noise from a generator seeded by `seed` and the
    request's images (SHA-256 of their bytes): answers are fresh per request, yet a run replayed or
    resumed from its ledger gets the same answers for the same requests, in any order.

    Args:
        backend: a backend that returns raw probabilities (`remote_mode` None); an API that applies
            its own policy (HTTP) is defended on its server, not here.
        defence: a `Defence` or a spec for `parse_defence` (`noise:0.05+reverse-sigmoid:0.7`).
        seed: the owner's seed for random defences.

    `owned` is the wrapped backend's: a model the user owns may still be asked for free evaluation
    answers, which are then the defended answers too.
    """

    remote_mode: OutputMode | None = None

    def __init__(self, backend: Backend, defence: Defence | str, seed: int = 0) -> None:
        if backend.remote_mode is not None:
            raise OracleError(
                f"this target applies its own output policy ({backend.remote_mode}); a defence wraps only "
                "a target that returns raw probabilities (a model file or a callable in this process)"
            )
        if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
            raise OracleError(f"a defence's seed must be a non-negative integer, got {seed!r}")
        seed = int(seed)
        self.backend = backend
        self.defence = parse_defence(defence)
        self.seed = seed
        self.num_classes = backend.num_classes
        self.input_shape: Shape = getattr(backend, "input_shape", DEFAULT_INPUT_SHAPE)
        self.owned = bool(getattr(backend, "owned", False))
        self.probe_queries = int(getattr(backend, "probe_queries", 0))

    def generator(self, images: np.ndarray) -> np.random.Generator:
        """The generator one request's answers draw from: the seed and the images' bytes."""
        digest = hashlib.sha256(np.ascontiguousarray(images).data).digest()
        words = np.frombuffer(digest[:16], dtype=np.uint32).tolist()
        return np.random.default_rng([self.seed, *words])

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        raw = np.asarray(self.backend.answer(images, request_id), dtype=np.float32)
        if raw.shape != (len(images), self.num_classes) or not np.isfinite(raw).all():
            return raw  # the oracle reports the shape or the non-finite values
        rng = self.generator(images) if self.defence.random else np.random.default_rng(self.seed)
        return self.defence.apply(raw, rng)

    def __getattr__(self, name: str) -> Any:
        # What an adapter exposes beyond the protocol (a file backend's path, a model's metadata).
        if name == "backend":
            raise AttributeError(name)
        return getattr(self.backend, name)


class SeededDefence:
    """A defence with its own generator, fresh per call, safe to share between threads: what a server
    holds per key (`activethief serve`), seeded once per server."""

    def __init__(self, defence: Defence | str, rng: np.random.Generator) -> None:
        self.defence = parse_defence(defence)
        self._rng = rng
        self._lock = threading.Lock()

    def __call__(self, probs: np.ndarray) -> np.ndarray:
        if not self.defence.random:
            return self.defence.apply(probs, self._rng)
        with self._lock:
            return self.defence.apply(probs, self._rng)


@dataclass(frozen=True)
class DefenceCost:
    """What a defence costs honest users on a labelled set: accuracy with and without it, how often
    the top label changed, and the mean L1 distance between the defended and the truthful answers."""

    defence: str
    images: int
    accuracy: float
    undefended_accuracy: float
    label_changed: float
    mean_l1: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def defence_cost(
    backend: Backend,
    defence: Defence | str,
    images: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int = 0,
    batch_size: int = 1000,
) -> DefenceCost:
    """The defended API's own accuracy on (`images`, `labels`) and how far its answers moved.

    Only the owner measures this, on a model they own (`owned = True`): the answers are not queries.

    Raises:
        OracleError: for a backend the user does not own, or images and labels of different lengths.
    """
    if not getattr(backend, "owned", False):
        raise OracleError("defence_cost asks the target for free: only for a model you own (owned = True)")
    labels = np.asarray(labels)
    if len(images) != len(labels) or not len(labels):
        raise OracleError(f"{len(images)} images but {len(labels)} labels (need the same number, >= 1)")
    defended = DefendedBackend(backend, defence, seed)
    right = right_before = changed = 0
    l1 = 0.0
    for start in range(0, len(labels), batch_size):
        x = np.asarray(images[start : start + batch_size], dtype=np.float32)
        y = labels[start : start + batch_size]
        truthful = np.asarray(backend.answer(x, "evaluation"), dtype=np.float32)
        answers = defended.defence.apply(truthful, defended.generator(x))
        right += int((answers.argmax(1) == y).sum())
        right_before += int((truthful.argmax(1) == y).sum())
        changed += int((answers.argmax(1) != truthful.argmax(1)).sum())
        l1 += float(np.abs(answers - truthful).sum(dtype=np.float64))
    n = len(labels)
    return DefenceCost(str(defended.defence), n, right / n, right_before / n, changed / n, l1 / n)


def defended_accuracy(
    backend: Backend, defence: Defence | str, images: np.ndarray, labels: np.ndarray, seed: int = 0
) -> float:
    """The defended API's test accuracy on (`images`, `labels`): the honest users' side of a defence."""
    return defence_cost(backend, defence, images, labels, seed=seed).accuracy
