"""The black box: an Oracle over a backend (local model, Python callable, HTTP API), with output modes,
the owner's answer policies (defences), a query budget and a persistent ledger of every answer. Every
target declares its input shape (C, H, W); images are checked against it once, here."""

from activethief.oracle.base import (
    DEFAULT_INPUT_SHAPE,
    Backend,
    ImageRows,
    Oracle,
    Shape,
    check_images,
    check_input_shape,
)
from activethief.oracle.defences import (
    Defence,
    DefenceCost,
    DefendedBackend,
    defence_cost,
    defended_accuracy,
    parse_defence,
)
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import (
    CallableBackend,
    CallableOracle,
    ModelBackend,
    ModelOracle,
    Normaliser,
    Returns,
    to_probabilities,
)
from activethief.oracle.modes import OutputMode, answers_to_targets
from activethief.oracle.onnx import OnnxBackend, OnnxOracle
from activethief.oracle.open import defend, open_oracle, parse_input_shape, parse_normalise
from activethief.oracle.torchscript import TorchScriptBackend, TorchScriptOracle

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "Backend",
    "CallableBackend",
    "CallableOracle",
    "Defence",
    "DefenceCost",
    "DefendedBackend",
    "ImageRows",
    "Ledger",
    "ModelBackend",
    "ModelOracle",
    "Normaliser",
    "OnnxBackend",
    "OnnxOracle",
    "Oracle",
    "OutputMode",
    "Returns",
    "Shape",
    "TorchScriptBackend",
    "TorchScriptOracle",
    "answers_to_targets",
    "check_images",
    "check_input_shape",
    "defence_cost",
    "defend",
    "defended_accuracy",
    "open_oracle",
    "parse_defence",
    "parse_input_shape",
    "parse_normalise",
    "to_probabilities",
]
