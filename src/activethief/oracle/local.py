"""Adapters for targets that live in this process: a Python callable or a saved model file.

Both take images float32 [n, C, H, W] in [0, 1] of their declared `input_shape` (checked by the oracle
first), apply the target's own input normalisation (`normalise=(mean, std)` per channel) if it has one,
and turn what the target returns into probabilities exactly once (`returns="logits"`: one softmax;
`returns="probs"`: checked, passed through unchanged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from activethief import models
from activethief.errors import OracleError
from activethief.oracle.base import DEFAULT_INPUT_SHAPE, Oracle, Shape, check_input_shape
from activethief.oracle.ledger import Ledger
from activethief.oracle.modes import OutputMode
from activethief.training import predict_logits, predict_proba

Returns = Literal["logits", "probs"]
Normalise = tuple[Sequence[float], Sequence[float]]

_PROB_TOLERANCE = 1e-3  # how far above 1 a row of probabilities may sum (float32 rounding of a softmax)


def check_returns(returns: str) -> Returns:
    """`returns` if it is "logits" or "probs", else an OracleError."""
    if returns not in ("logits", "probs"):
        raise OracleError(f"returns must be 'logits' or 'probs', got {returns!r}")
    return "logits" if returns == "logits" else "probs"


class Normaliser:
    """The target's own input normalisation, `(x - mean) / std` per channel, applied in float32.

    Args:
        mean: one value per channel (or one for all channels).
        std: one positive value per channel (or one for all channels).
        channels: C of the target's input shape.
    """

    def __init__(self, mean: Sequence[float], std: Sequence[float], channels: int) -> None:
        m = np.asarray(mean, dtype=np.float32).reshape(-1)
        s = np.asarray(std, dtype=np.float32).reshape(-1)
        for name, values in (("mean", m), ("std", s)):
            if values.size not in (1, channels) or not np.isfinite(values).all():
                raise OracleError(
                    f"normalise {name} must be 1 or {channels} finite values (one per channel), "
                    f"got {values.tolist()}"
                )
        if (s <= 0).any():
            raise OracleError(f"normalise std must be positive, got {s.tolist()}")
        self.mean = np.broadcast_to(m, (channels,)).reshape(1, channels, 1, 1).copy()
        self.std = np.broadcast_to(s, (channels,)).reshape(1, channels, 1, 1).copy()

    def __call__(self, images: np.ndarray) -> np.ndarray:
        out: np.ndarray = (images - self.mean) / self.std
        return out.astype(np.float32, copy=False)

    def __repr__(self) -> str:
        return f"Normaliser(mean={self.mean.ravel().tolist()}, std={self.std.ravel().tolist()})"


def make_normaliser(normalise: Normalise | None, shape: Shape) -> Normaliser | None:
    """A `Normaliser` for `normalise=(mean, std)`, or None when the target takes plain [0, 1] images."""
    if normalise is None:
        return None
    try:
        mean, std = normalise
    except (TypeError, ValueError):
        raise OracleError(f"normalise must be a pair (mean, std), got {normalise!r}") from None
    return Normaliser(mean, std, shape[0])


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float32, stable for large logits."""
    z = logits.astype(np.float32, copy=True)
    z -= z.max(axis=1, keepdims=True)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def to_probabilities(raw: np.ndarray, returns: Returns, num_classes: int) -> np.ndarray:
    """What a target returned, as probabilities [n, C]: one softmax over logits; probabilities checked.

    Probabilities must be non-negative with rows summing to at most 1 (a row summing to less is an API
    that returns only its top answers; the oracle's output modes cope with it). Anything else looks like
    logits and is refused with an OracleError saying so, rather than trained on. An answer of the wrong
    shape is passed through for the oracle to report.
    """
    out = np.asarray(raw, dtype=np.float32)
    if out.ndim != 2 or out.shape[1] != num_classes or not np.isfinite(out).all():
        return out  # the oracle reports the shape or the non-finite values
    if returns == "logits":
        return softmax(out)
    sums = out.sum(axis=1, dtype=np.float64)
    if len(out) and (float(out.min()) < 0.0 or float(sums.max()) > 1.0 + _PROB_TOLERANCE):
        raise OracleError(
            "the target was declared to return probabilities (returns='probs') but returned values in "
            f"[{float(out.min()):.3g}, {float(out.max()):.3g}] with rows summing up to "
            f"{float(sums.max()):.3g}; "
            "these look like logits: pass returns='logits' (the oracle then applies softmax once)"
        )
    return out


class CallableBackend:
    """Any function mapping float32 [n, C, H, W] in [0, 1] to probabilities (or logits) [n, classes].

    A callable is how a paid prediction API is wrapped, so every answer counts unless the caller says
    it is a model they own (`owned=True`), which may then be asked for evaluation answers for free.

    Args:
        fn: the target; receives images of `input_shape` (normalised first when `normalise` is set) and
            returns a numpy array or a torch tensor.
        num_classes: how many classes it answers.
        input_shape: (C, H, W) of one image it takes; (1, 28, 28) when not given, what callers written
            before RGB targets assumed.
        returns: "probs" (default: checked, passed through unchanged) or "logits" (softmax applied once).
        normalise: the target's own input normalisation `(mean, std)` per channel, applied here before
            `fn` sees the images (pools stay in [0, 1]).
        owned: the user owns the model outright, so evaluation answers are free.
    """

    remote_mode: OutputMode | None = None

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        num_classes: int,
        *,
        input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
        returns: Returns = "probs",
        normalise: Normalise | None = None,
        owned: bool = False,
    ) -> None:
        if num_classes < 2:
            raise OracleError(f"num_classes must be >= 2, got {num_classes}")
        self.fn = fn
        self.num_classes = num_classes
        self.input_shape = check_input_shape(input_shape)
        self.returns = check_returns(returns)
        self.normaliser = make_normaliser(normalise, self.input_shape)
        self.owned = owned

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        x = images if self.normaliser is None else self.normaliser(images)
        out = self.fn(x)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return to_probabilities(np.asarray(out, dtype=np.float32), self.returns, self.num_classes)


class ModelBackend:
    """A torch model evaluated in-process: the user owns it, so evaluation is free.

    Args:
        model: the target; its outputs are logits (softmax applied here once) or, with
            `returns="probs"`, probabilities.
        num_classes: how many classes it answers.
        input_shape: (C, H, W) of one image it takes.
        returns: "logits" (default: what every activethief model returns) or "probs".
        normalise: the model's own input normalisation `(mean, std)` per channel, applied here.
    """

    remote_mode: OutputMode | None = None
    owned = True

    def __init__(
        self,
        model: nn.Module,
        num_classes: int,
        *,
        input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
        returns: Returns = "logits",
        normalise: Normalise | None = None,
    ) -> None:
        self.model = model.eval()
        self.num_classes = num_classes
        self.input_shape = check_input_shape(input_shape)
        self.returns = check_returns(returns)
        self.normaliser = make_normaliser(normalise, self.input_shape)

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        x = images if self.normaliser is None else self.normaliser(images)
        if self.returns == "logits":  # one softmax, the substitutes' own code path
            return predict_proba(self.model, x)
        return to_probabilities(predict_logits(self.model, x).numpy(), "probs", self.num_classes)


class CallableOracle(Oracle):
    """An oracle over a Python callable `fn(images) -> probabilities`, with mode, budget and ledger.

    Every answer `fn` gives is counted, evaluation answers included, unless `free_evaluation=True`
    says `fn` is a model the user owns outright (then agreement on a test set is measured for free).
    `input_shape` (C, H, W) defaults to (1, 28, 28), so MNIST-era callers keep working; give it for
    any other target (an RGB 32x32 model: `input_shape=(3, 32, 32)`). `returns="logits"` when `fn`
    returns logits; `normalise=(mean, std)` when `fn` expects normalised inputs (see `CallableBackend`).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        num_classes: int,
        *,
        input_shape: Sequence[int] = DEFAULT_INPUT_SHAPE,
        returns: Returns = "probs",
        normalise: Normalise | None = None,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
        free_evaluation: bool = False,
    ) -> None:
        backend = CallableBackend(
            fn,
            num_classes,
            input_shape=input_shape,
            returns=returns,
            normalise=normalise,
            owned=free_evaluation,
        )
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)


class ModelOracle(Oracle):
    """An oracle over a local target: a model file written by `activethief.models.save`, or a module.

    Args:
        target: the model file or the module.
        num_classes: for a module, its classes (default: its last linear layer's outputs).
        input_shape: (C, H, W) it takes. A model file declares its own (metadata `input_shape`; a
            different value given here is refused); a module takes (1, 28, 28) unless told.
        returns: "logits" or "probs"; default the file's metadata `returns`, else "logits".
        normalise: the model's input normalisation `(mean, std)` per channel; default the file's
            metadata `normalise`, else none.
        mode, budget, ledger: as for `Oracle`.
    """

    def __init__(
        self,
        target: nn.Module | Path | str,
        *,
        num_classes: int | None = None,
        input_shape: Sequence[int] | None = None,
        returns: Returns | None = None,
        normalise: Normalise | None = None,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
    ) -> None:
        self.metadata: dict[str, Any] = {}
        if isinstance(target, nn.Module):
            model = target
            last = [m for m in model.modules() if isinstance(m, nn.Linear)]
            classes = num_classes or (int(last[-1].out_features) if last else 0)
            shape = check_input_shape(input_shape if input_shape is not None else DEFAULT_INPUT_SHAPE)
        else:
            model, self.metadata = models.load(target)
            classes = int(self.metadata["num_classes"])
            declared = self.metadata.get("input_shape")
            stored = check_input_shape(declared if declared is not None else DEFAULT_INPUT_SHAPE)
            shape = stored if input_shape is None else check_input_shape(input_shape)
            if shape != stored:
                raise OracleError(
                    f"{target} declares input shape (C, H, W) = {stored}, but input_shape={shape} was given"
                )
            if returns is None and self.metadata.get("returns") is not None:
                returns = check_returns(str(self.metadata["returns"]))
            stored_norm = self.metadata.get("normalise")
            if normalise is None and stored_norm is not None:
                normalise = (stored_norm[0], stored_norm[1])
        backend = ModelBackend(
            model, classes, input_shape=shape, returns=returns or "logits", normalise=normalise
        )
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)
        self.model = model  # the user's own model: white-box attacks on it are free and not queries
