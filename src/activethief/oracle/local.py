"""Adapters for targets that live in this process: a Python callable or a saved model file."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activethief import models
from activethief.errors import OracleError
from activethief.oracle.base import Oracle
from activethief.oracle.ledger import Ledger
from activethief.oracle.modes import OutputMode
from activethief.training import predict_proba


class CallableBackend:
    """Any function mapping float32 [n, 1, 28, 28] in [0, 1] to probabilities [n, C].

    A callable is how a paid prediction API is wrapped, so every answer counts unless the caller says
    it is a model they own (`owned=True`), which may then be asked for evaluation answers for free.
    """

    remote_mode: OutputMode | None = None

    def __init__(self, fn: Callable[[np.ndarray], Any], num_classes: int, *, owned: bool = False) -> None:
        if num_classes < 2:
            raise OracleError(f"num_classes must be >= 2, got {num_classes}")
        self.fn = fn
        self.num_classes = num_classes
        self.owned = owned

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        out = self.fn(images)
        if isinstance(out, torch.Tensor):
            out = out.detach().cpu().numpy()
        return np.asarray(out, dtype=np.float32)


class ModelBackend:
    """A torch model (logits out) evaluated in-process: the user owns it, so evaluation is free."""

    remote_mode: OutputMode | None = None
    owned = True

    def __init__(self, model: nn.Module, num_classes: int) -> None:
        self.model = model.eval()
        self.num_classes = num_classes

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        return predict_proba(self.model, images)


class CallableOracle(Oracle):
    """An oracle over a Python callable `fn(images) -> probabilities`, with mode, budget and ledger.

    Every answer `fn` gives is counted, evaluation answers included, unless `free_evaluation=True`
    says `fn` is a model the user owns outright (then agreement on a test set is measured for free).
    """

    def __init__(
        self,
        fn: Callable[[np.ndarray], Any],
        num_classes: int,
        *,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
        free_evaluation: bool = False,
    ) -> None:
        backend = CallableBackend(fn, num_classes, owned=free_evaluation)
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)


class ModelOracle(Oracle):
    """An oracle over a local target: a model file written by `activethief.models.save`, or a module."""

    def __init__(
        self,
        target: nn.Module | Path | str,
        *,
        num_classes: int | None = None,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
    ) -> None:
        self.metadata: dict[str, Any] = {}
        if isinstance(target, nn.Module):
            model = target
            last = [m for m in model.modules() if isinstance(m, nn.Linear)]
            classes = num_classes or (int(last[-1].out_features) if last else 0)
        else:
            model, self.metadata = models.load(target)
            classes = int(self.metadata["num_classes"])
        super().__init__(ModelBackend(model, classes), mode=mode, budget=budget, ledger=ledger)
        self.model = model  # the user's own model: white-box attacks on it are free and not queries
