"""The black box: an Oracle over a backend (local model, Python callable, HTTP API), with output modes,
a query budget and a persistent ledger of every answer."""

from activethief.oracle.base import Backend, Oracle, check_images
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import CallableBackend, CallableOracle, ModelBackend, ModelOracle
from activethief.oracle.modes import OutputMode, answers_to_targets
from activethief.oracle.open import open_oracle

__all__ = [
    "Backend",
    "CallableBackend",
    "CallableOracle",
    "Ledger",
    "ModelBackend",
    "ModelOracle",
    "Oracle",
    "OutputMode",
    "answers_to_targets",
    "check_images",
    "open_oracle",
]
