"""The black box: an Oracle over a backend (local model, Python callable, HTTP API), with output modes,
a query budget and a persistent ledger of every answer. Every target declares its input shape (C, H, W);
images are checked against it once, here."""

from activethief.oracle.base import (
    DEFAULT_INPUT_SHAPE,
    Backend,
    ImageRows,
    Oracle,
    Shape,
    check_images,
    check_input_shape,
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
from activethief.oracle.open import open_oracle, parse_input_shape, parse_normalise
from activethief.oracle.torchscript import TorchScriptBackend, TorchScriptOracle

__all__ = [
    "DEFAULT_INPUT_SHAPE",
    "Backend",
    "CallableBackend",
    "CallableOracle",
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
    "open_oracle",
    "parse_input_shape",
    "parse_normalise",
    "to_probabilities",
]
