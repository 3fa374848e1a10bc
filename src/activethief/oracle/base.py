"""The black box: the only code that ever calls the target. Budget, output mode and ledger live here."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from activethief.errors import BudgetExceededError, OracleError
from activethief.oracle.ledger import Ledger
from activethief.oracle.modes import OutputMode

Shape = tuple[int, int, int]
DEFAULT_INPUT_SHAPE: Shape = (1, 28, 28)  # what a backend that does not declare `input_shape` takes


class ImageRows(Protocol):
    """Images read by index: an array, or a `data.Pool` (`pool[indices]` gives float32 [n, C, H, W])."""

    def __len__(self) -> int: ...

    def __getitem__(self, rows: np.ndarray, /) -> np.ndarray: ...


class Backend(Protocol):
    """Where answers come from: a local model, a Python callable, an HTTP API.

    `remote_mode` is the output mode the far side already applies (an API's policy), or None when the
    backend returns raw probabilities and the oracle applies its own mode. `answer` receives a request
    id that stays the same when a request is replayed after a crash (an idempotency key). A backend
    with an `owned = True` attribute is a model the user owns outright (a model file or module in this
    process): only such a backend is asked for evaluation answers without counting them.

    `input_shape` is the (C, H, W) of one image the target takes; the oracle checks every image against
    it before the backend sees it, so `answer` always receives float32 [n, C, H, W] in [0, 1].
    """

    input_shape: Shape
    num_classes: int
    remote_mode: OutputMode | None

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray: ...


def check_input_shape(shape: object, what: str = "input_shape") -> Shape:
    """`shape` as a (C, H, W) tuple of positive ints with C = 1 or 3, or an OracleError naming it."""
    try:
        dims = tuple(int(d) for d in shape)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        dims = ()
    if len(dims) != 3 or dims[0] not in (1, 3) or min(dims) < 1:
        raise OracleError(f"{what} must be (C, H, W) with C = 1 or 3 and H, W >= 1; got {shape!r}")
    return (dims[0], dims[1], dims[2])


def check_images(images: np.ndarray, shape: Shape) -> np.ndarray:
    """Images as float32 [n, C, H, W] in [0, 1] for a target taking (C, H, W) = `shape`.

    [n, H, W] is accepted when C = 1. Anything else raises an OracleError naming the expected and the
    given shape (or the out-of-range or non-finite values).
    """
    c, h, w = shape
    x = np.asarray(images)
    if x.ndim == 3 and c == 1:
        x = x[:, None]
    if x.ndim != 4 or x.shape[1:] != (c, h, w):
        also = f" (or [n, {h}, {w}])" if c == 1 else ""
        raise OracleError(
            f"expected images of shape [n, {c}, {h}, {w}]{also}, the target's input shape (C, H, W) = "
            f"{shape}; got shape {list(x.shape)}"
        )
    x = x.astype(np.float32, copy=False)
    if not np.isfinite(x).all():
        raise OracleError("images contain NaN or infinite values")
    if len(x) and (x.min() < 0.0 or x.max() > 1.0):
        raise OracleError(f"image values must lie in [0, 1]; got [{x.min():.3g}, {x.max():.3g}]")
    return x


class Oracle:
    """Answers queries through a backend, never beyond the budget, recording every answer first.

    Args:
        backend: the target.
        mode: output mode applied to raw probabilities (ignored when the backend applies its own).
        budget: the most queries ever answered (None = unlimited); re-asked pool points are free.
        ledger: a path (SQLite file), a `Ledger`, or None for an in-memory ledger.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
    ) -> None:
        if budget is not None and budget < 0:
            raise OracleError(f"budget must be >= 0, got {budget}")
        self.backend = backend
        self.mode = backend.remote_mode or OutputMode.parse(mode)
        self.budget = budget
        self.ledger = ledger if isinstance(ledger, Ledger) else Ledger(ledger or ":memory:")
        self._bind(self.ledger)
        # Images a backend sent while opening (a TorchScript or ONNX probe of a model the user does not
        # own) were answers too: counted as unkeyed queries.
        probe = int(getattr(backend, "probe_queries", 0))
        if probe:
            self.ledger.add_unkeyed(probe)

    def _bind(self, ledger: Ledger) -> None:
        ledger.bind("mode", str(self.mode), "output mode")
        ledger.bind("num_classes", str(self.num_classes), "number of classes")

    def use_ledger(self, ledger: Ledger) -> None:
        """Record answers in `ledger` from now on (checked against mode and classes); close the old one.

        Unkeyed queries already paid for (a probe at open time, adversarial images) are carried over, so
        the new ledger reports them and its budget sees them."""
        self._bind(ledger)
        if ledger is not self.ledger and self.ledger.unkeyed():
            ledger.add_unkeyed(self.ledger.unkeyed())
        self.ledger.close()
        self.ledger = ledger

    @property
    def num_classes(self) -> int:
        return self.backend.num_classes

    @property
    def input_shape(self) -> Shape:
        """(C, H, W) of one image the target takes (the backend's; (1, 28, 28) if it declares none)."""
        shape: Shape = getattr(self.backend, "input_shape", DEFAULT_INPUT_SHAPE)
        return shape

    def check(self, images: np.ndarray) -> np.ndarray:
        """`images` checked against the target's input shape (`check_images`)."""
        return check_images(images, self.input_shape)

    @property
    def used(self) -> int:
        """Queries paid for: answered pool points, requests in flight, unkeyed images and evaluation
        answers (`evaluation_used` of them)."""
        return (
            len(self.ledger)
            + self.ledger.pending_count()
            + self.ledger.unkeyed()
            + self.ledger.evaluation_count()
        )

    @property
    def evaluation_used(self) -> int:
        """Queries paid for evaluation sets (`buy_evaluation`), included in `used`."""
        return self.ledger.evaluation_count()

    @property
    def free_evaluation(self) -> bool:
        """True when the target is a model the user owns outright, so `evaluate` costs nothing."""
        return bool(getattr(self.backend, "owned", False))

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else max(0, self.budget - self.used)

    def _charge(self, count: int) -> None:
        if self.budget is not None and self.used + count > self.budget:
            raise BudgetExceededError(self.used, count, self.budget)

    def _ask(self, images: np.ndarray, request_id: str) -> np.ndarray:
        raw = np.asarray(self.backend.answer(images, request_id), dtype=np.float32)
        if raw.shape != (len(images), self.num_classes) or not np.isfinite(raw).all():
            raise OracleError(
                f"target answered shape {list(raw.shape)} (finite: {bool(np.isfinite(raw).all())}); "
                f"expected [{len(images)}, {self.num_classes}] finite values"
            )
        return raw if self.backend.remote_mode is not None else self.mode.apply(raw)

    def _ask_recorded(
        self, images: np.ndarray, request_id: str, abandon: Callable[[str], None]
    ) -> np.ndarray:
        """`_ask` for a request recorded as pending; on failure, `abandon` it unless it may have been billed.

        A request stays pending (to replay under the same id) only when it may have cost money: a
        replayable backend that did not say the refusal cost nothing.
        """
        try:
            return self._ask(images, request_id)
        except Exception as exc:
            if not getattr(self.backend, "replayable", False) or getattr(exc, "nothing_billed", False):
                abandon(request_id)
            raise

    def query(self, images: np.ndarray, *, keys: np.ndarray | None = None, round: int = 0) -> np.ndarray:
        """Answers [n, C] for `images`; with `keys` (pool indices) answers are cached in the ledger.

        Pool points answered before are served from the ledger and not charged again.
        """
        x = self.check(images)
        if keys is None:
            self._charge(len(x))
            answers = (
                self._ask(x, uuid.uuid4().hex) if len(x) else np.zeros((0, self.num_classes), np.float32)
            )
            self.ledger.add_unkeyed(len(x))
            return answers
        keys = np.asarray(keys, dtype=np.int64)
        if keys.shape != (len(x),):
            raise OracleError(f"{len(x)} images but keys of shape {list(keys.shape)}")
        known = self.ledger.lookup(keys)
        _, first = np.unique(keys, return_index=True)
        fresh = np.array(sorted(i for i in first if int(keys[i]) not in known), dtype=np.int64)
        if len(fresh):
            self._charge(len(fresh))
            request_id = uuid.uuid4().hex
            self.ledger.begin(request_id, keys[fresh], round)
            answers = self._ask_recorded(x[fresh], request_id, self.ledger.abandon)
            self.ledger.complete(request_id, keys[fresh], answers, round, str(self.mode))
            known.update(zip((int(k) for k in keys[fresh]), answers, strict=True))
        if not len(keys):
            return np.zeros((0, self.num_classes), np.float32)
        return np.stack([known[int(k)] for k in keys]).astype(np.float32)

    def recover(self, pool: np.ndarray) -> int:
        """Replay requests left pending by a crash, with their original ids; returns points recovered.

        A replayable backend (an HTTP API with idempotency keys) answers a replayed id without billing
        again; a local backend simply answers. `pool` is read only at the pending indices, so any
        `ImageRows` (an array, or a `data.Pool` converting just those rows) will do.
        """
        recovered = 0
        for request_id, indices, round_ in self.ledger.pending():
            answers = self._ask(self.check(pool[indices]), request_id)
            self.ledger.complete(request_id, indices, answers, round_, str(self.mode))
            recovered += len(indices)
        return recovered

    def evaluate(self, images: np.ndarray) -> np.ndarray | None:
        """The target's predicted classes for evaluation only (e.g. agreement on a test set), unbilled.

        Only a model the user owns outright (`free_evaluation`: a model file or module) is asked for
        free. For any other target (a callable that may wrap a paid API, an HTTP API) this returns None:
        every answer there costs a query, so use `buy_evaluation` or labels the user already has.
        """
        if not self.free_evaluation:
            return None
        probs = np.asarray(self.backend.answer(self.check(images), "evaluation"), dtype=np.float32)
        labels: np.ndarray = probs.argmax(1)
        return labels

    def buy_evaluation(self, images: np.ndarray, *, set_id: str) -> np.ndarray:
        """The target's answers [n, C] on an evaluation set, bought like any query.

        Charged against the oracle's budget, recorded in the ledger under `set_id` (name it after the
        set's content, e.g. a fingerprint) and counted in `evaluation_used`, apart from pool queries.
        Answers already recorded are served from the ledger, and a request a crash left pending is
        replayed under its original id first, so an evaluation set is never paid for twice.
        """
        x = self.check(images)
        for request_id, pending_set, items in self.ledger.pending_evaluations():
            if pending_set == set_id:
                answers = self._ask_recorded(x[items], request_id, self.ledger.abandon_evaluation)
                self.ledger.complete_evaluation(request_id, set_id, items, answers)
        known = self.ledger.evaluation_answers(set_id)
        missing = np.array([i for i in range(len(x)) if i not in known], dtype=np.int64)
        if len(missing):
            self._charge(len(missing))
            request_id = uuid.uuid4().hex
            self.ledger.begin_evaluation(request_id, set_id, missing)
            answers = self._ask_recorded(x[missing], request_id, self.ledger.abandon_evaluation)
            self.ledger.complete_evaluation(request_id, set_id, missing, answers)
            known.update(zip((int(i) for i in missing), answers, strict=True))
        if not len(x):
            return np.zeros((0, self.num_classes), np.float32)
        return np.stack([known[i] for i in range(len(x))]).astype(np.float32)

    def answered(self) -> tuple[np.ndarray, np.ndarray]:
        """All recorded (pool indices, answers), in ascending pool-index order."""
        keys, answers, _ = self.ledger.all_answers()
        return keys, answers.reshape(len(keys), self.num_classes)

    def close(self) -> None:
        self.ledger.close()
