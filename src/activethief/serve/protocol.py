"""The Open Inference Protocol (KServe V2, Triton, MLServer REST) for an image classifier: parsing and
validating infer requests, and encoding responses, including Triton's binary tensor extension and its
`classification` output parameter. Pure functions over bytes; no web framework here.

Input: one tensor named `images`, datatype FP32 (values in [0, 1]) or UINT8 (0..255), shape [n, C, H, W]
for a model of input shape (C, H, W) (C = 1 or 3, H and W at least 8; for grayscale models [n, H, W] and
[n, H*W] too: [n, 1, 28, 28], [n, 28, 28] or [n, 784] for MNIST's), `data` flat in row-major order (nested
lists are accepted too) or, with the binary extension, raw little-endian bytes after the JSON header. A
large numeric `data` array is parsed straight into a float64 array (never a list of Python floats), so a
JSON request costs a few times its size in memory, not ten.
Outputs: `probabilities` FP32 [n, C] (the key's output mode applied) and `label` INT64 [n].
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import secrets
from dataclasses import dataclass, field
from typing import Any

import numpy as np

INPUT_NAME = "images"
PROBABILITIES = "probabilities"
LABEL = "label"
OUTPUT_NAMES = (PROBABILITIES, LABEL)
DEFAULT_INPUT_SHAPE = (1, 28, 28)
IMAGE_SIZE = 28 * 28  # pixels of the default input shape
MIN_SIDE = 8
CHANNELS = (1, 3)
MAX_ID_LENGTH = 256
_DTYPES: dict[str, np.dtype[Any]] = {"FP32": np.dtype("<f4"), "UINT8": np.dtype("u1")}
REQUEST_FIELDS = ("id", "inputs", "outputs", "parameters")
INPUT_FIELDS = ("name", "shape", "datatype", "parameters", "data")
OUTPUT_FIELDS = ("name", "parameters")
_LIFT_MIN_BYTES = 64 * 1024  # smaller bodies: the plain JSON parser is cheap enough
_LIFT_MAX_ARRAYS = 4
# A `data` value made only of numbers, commas, brackets and spaces: parsed by numpy, not by json.
_NUMERIC_DATA = re.compile(rb'"data"\s*:\s*(\[[0-9eE+\-.,\s\[\]]*\])')
_BAD_NUMERIC_SYNTAX = re.compile(rb"\[\s*[,\]]|,\s*[,\]]|\]\s*[^,\]\s]")
_BRACKETS = re.compile(rb"[\[\]]")
_BRACKETS_TO_SPACES = bytes.maketrans(b"[]", b"  ")


@dataclass(frozen=True)
class _LiftedArray:
    """A numeric `data` array taken out of the JSON text: its values, and whether all were integers."""

    values: np.ndarray
    integral: bool


class ProtocolError(Exception):
    """A request the server refuses: HTTP `status` and a message that says what to fix."""

    def __init__(self, status: int, message: str) -> None:
        self.status, self.message = status, message
        super().__init__(message)


def input_shape_of(value: Any) -> tuple[int, int, int] | None:
    """(C, H, W) from a list or tuple of three integers with C = 1 or 3 and H, W >= 8, else None."""
    if not isinstance(value, list | tuple) or len(value) != 3:
        return None
    if not all(type(d) is int for d in value):
        return None
    channels, height, width = value
    if channels not in CHANNELS or height < MIN_SIDE or width < MIN_SIDE:
        return None
    return channels, height, width


def accepted_shapes(input_shape: tuple[int, int, int]) -> list[tuple[int, ...]]:
    """The per-image shapes a request may use: (C, H, W), and for C = 1 also (H, W) and (H*W,)."""
    channels, height, width = input_shape
    if channels == 1:
        return [input_shape, (height, width), (height * width,)]
    return [input_shape]


def describe_shapes(input_shape: tuple[int, int, int]) -> str:
    """`[n, 3, 32, 32]`, or `[n, 1, 28, 28], [n, 28, 28] or [n, 784]`: what a request's shape may be."""
    names = [f"[n, {', '.join(str(d) for d in shape)}]" for shape in accepted_shapes(input_shape)]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


@dataclass(frozen=True)
class RequestedOutput:
    """One entry of a request's `outputs`: which tensor, as top-k strings or not, as binary or JSON."""

    name: str
    classification: int = 0
    binary: bool = False


@dataclass
class InferRequest:
    """A validated infer request: images float32 [n, C, H, W] in [0, 1] and what to answer with."""

    images: np.ndarray
    request_id: str | None
    outputs: list[RequestedOutput] = field(default_factory=list)

    def fingerprint(self) -> str:
        """SHA-256 of the images as float32: a replayed id must come with the same images."""
        digest = hashlib.sha256(np.ascontiguousarray(self.images, dtype=np.float32).tobytes())
        return digest.hexdigest()


def parse_infer_request(
    body: bytes | bytearray,
    *,
    header_length: str | None = None,
    max_images: int,
    num_classes: int,
    input_shape: tuple[int, int, int] = DEFAULT_INPUT_SHAPE,
) -> InferRequest:
    """Validate an infer request body; a ProtocolError (400 or 413) says exactly what is wrong.

    Args:
        body: the raw request body.
        header_length: the `Inference-Header-Content-Length` header (binary extension), if sent.
        max_images: most images in one request (more: 413).
        num_classes: the model's classes, the upper bound for `classification`.
        input_shape: the model's (C, H, W); the request's images come back as float32 [n, C, H, W].
    """
    doc, binary, lifted = _split_body(body, header_length)
    if not isinstance(doc, dict):
        raise ProtocolError(400, "request body must be a JSON object with an `inputs` list")
    _check_fields(doc, REQUEST_FIELDS, "the request")
    request_id = doc.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or not 0 < len(request_id) <= MAX_ID_LENGTH
    ):
        raise ProtocolError(400, f"`id` must be a non-empty string of at most {MAX_ID_LENGTH} characters")
    if request_id is not None and not _storable(request_id):
        raise ProtocolError(
            400,
            "`id` must be valid Unicode text: it holds a lone surrogate (such as \\ud800), which "
            "cannot be stored; use letters, digits and punctuation",
        )
    params = _parameters(doc, "request")
    binary_default = params.get("binary_data_output", False)
    if not isinstance(binary_default, bool):
        raise ProtocolError(400, "request parameter `binary_data_output` must be true or false")
    inputs = doc.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise ProtocolError(400, f"`inputs` must be a list with one tensor named {INPUT_NAME!r}")
    if len(inputs) != 1:
        raise ProtocolError(400, f"expected exactly one input tensor ({INPUT_NAME!r}), got {len(inputs)}")
    images, used = _parse_input(inputs[0], binary, max_images, lifted, input_shape)
    if used != len(binary):
        raise ProtocolError(
            400, f"binary section has {len(binary)} bytes but the inputs' binary_data_size add up to {used}"
        )
    outputs = _parse_outputs(doc.get("outputs"), binary_default, num_classes)
    return InferRequest(images=images, request_id=request_id, outputs=outputs)


def _check_fields(obj: dict[str, Any], allowed: tuple[str, ...], where: str) -> None:
    unknown = [name for name in obj if name not in allowed]
    if unknown:
        raise ProtocolError(
            400, f"unknown field {unknown[0]!a} in {where}; allowed fields: {', '.join(allowed)}"
        )


def _storable(text: str) -> bool:
    """True when the text can be encoded as UTF-8 (JSON allows lone surrogates; storage does not)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _split_body(
    body: bytes | bytearray, header_length: str | None
) -> tuple[Any, bytes | bytearray | memoryview, dict[str, _LiftedArray]]:
    if not body:
        raise ProtocolError(400, "empty request body; send a JSON infer request")
    if header_length is None:
        header: bytes | bytearray = body
        binary: bytes | bytearray | memoryview = b""
    else:
        try:
            length = int(header_length)
        except ValueError:
            raise ProtocolError(400, "Inference-Header-Content-Length must be an integer") from None
        if not 0 < length <= len(body):
            raise ProtocolError(
                400, f"Inference-Header-Content-Length {length} is outside the body's {len(body)} bytes"
            )
        view = memoryview(body)  # no copy of the binary section
        header, binary = bytes(view[:length]), view[length:]
    lifted: dict[str, _LiftedArray] = {}
    if len(header) >= _LIFT_MIN_BYTES:
        header, lifted = _lift_numeric_arrays(header)
    try:
        text = header.decode("utf-8")  # JSON over HTTP is UTF-8 (RFC 8259); json.loads would guess UTF-16
    except UnicodeDecodeError:
        raise ProtocolError(400, "request body must be JSON encoded as UTF-8") from None
    try:
        return json.loads(text), binary, lifted
    except (ValueError, RecursionError):  # JSONDecodeError is a ValueError
        raise ProtocolError(
            400,
            "request body is not valid JSON (binary data needs the Inference-Header-Content-Length header)",
        ) from None


def _lift_numeric_arrays(header: bytes | bytearray) -> tuple[bytes | bytearray, dict[str, _LiftedArray]]:
    """Replace large numeric `data` arrays by unguessable placeholder strings, parsed by numpy.

    Anything unusual (NaN, strings, bad commas or brackets) is left in place for the JSON parser, whose
    errors then say what is wrong; so this changes what a request costs, never what it means.
    """
    token = secrets.token_hex(8)
    pieces: list[bytes | bytearray] = []
    lifted: dict[str, _LiftedArray] = {}
    position = 0
    for match in _NUMERIC_DATA.finditer(header):
        if len(lifted) == _LIFT_MAX_ARRAYS:
            break
        start, end = match.span(1)
        array = _numeric_array(header, start, end)
        if array is None:
            continue
        placeholder = f"@activethief-data:{token}:{len(lifted)}"
        lifted[placeholder] = array
        pieces += [header[position:start], json.dumps(placeholder).encode()]
        position = end
    if not lifted:
        return header, lifted
    pieces.append(header[position:])
    return b"".join(pieces), lifted


def _numeric_array(header: bytes | bytearray, start: int, end: int) -> _LiftedArray | None:
    """The numbers of the JSON array header[start:end] flattened, or None if it is not a clean one."""
    span = header[start:end]
    if _BAD_NUMERIC_SYNTAX.search(span):
        return None
    depth = 0
    brackets = _BRACKETS.finditer(span)
    for bracket in brackets:
        depth += 1 if bracket.group() == b"[" else -1
        if depth == 0 and bracket.end() != len(span):  # `[1],[2]`: not one array
            return None
        if depth < 0:
            return None
    if depth != 0:
        return None
    try:
        values = np.fromstring(bytes(span.translate(_BRACKETS_TO_SPACES)), dtype=np.float64, sep=",")
    except ValueError:
        return None
    if values.size != span.count(b",") + 1:
        return None
    integral = re.search(rb"[.eE]", span) is None
    return _LiftedArray(values, integral)


def _parameters(obj: dict[str, Any], where: str) -> dict[str, Any]:
    params = obj.get("parameters", {})
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise ProtocolError(400, f"{where} `parameters` must be a JSON object")
    return params


def _parse_input(
    tensor: Any,
    binary: bytes | bytearray | memoryview,
    max_images: int,
    lifted: dict[str, _LiftedArray],
    input_shape: tuple[int, int, int],
) -> tuple[np.ndarray, int]:
    """Images float32 [n, C, H, W] and the number of binary bytes consumed."""
    if not isinstance(tensor, dict):
        raise ProtocolError(400, "each input must be a JSON object with name, shape, datatype and data")
    _check_fields(tensor, INPUT_FIELDS, "the input tensor")
    name = tensor.get("name")
    if name != INPUT_NAME:
        raise ProtocolError(400, f"unknown input {name!a}; this model takes one input named {INPUT_NAME!r}")
    datatype = tensor.get("datatype")
    if not isinstance(datatype, str) or datatype not in _DTYPES:
        raise ProtocolError(
            400, f"input datatype {datatype!r} is not supported; use FP32 (0..1) or UINT8 (0..255)"
        )
    shape = tensor.get("shape")
    if not isinstance(shape, list) or not all(type(d) is int and d >= 0 for d in shape):
        raise ProtocolError(400, "input `shape` must be a list of non-negative integers")
    if len(shape) not in (2, 3, 4) or tuple(shape[1:]) not in accepted_shapes(input_shape):
        channels, height, width = input_shape
        raise ProtocolError(
            400,
            f"input shape {shape} is not supported: this model takes {channels}x{height}x{width} images; "
            f"use {describe_shapes(input_shape)}",
        )
    count = shape[0]
    if count == 0:
        raise ProtocolError(400, "empty batch: the input holds no images")
    if count > max_images:
        raise ProtocolError(413, f"{count} images in one request; this server takes at most {max_images}")
    size = count * int(np.prod(input_shape))
    params = _parameters(tensor, "input")
    binary_size = params.get("binary_data_size")
    if binary_size is not None:
        values, used = _binary_values(binary, binary_size, datatype, size)
    else:
        if "data" not in tensor:
            raise ProtocolError(400, "input has no `data` (nor a binary_data_size parameter)")
        data = tensor["data"]
        if isinstance(data, str) and data in lifted:
            values, used = _lifted_values(lifted[data], datatype, size), 0
        else:
            values, used = _json_values(data, datatype, size), 0
    return _to_images(values, datatype, count, input_shape), used


def _lifted_values(array: _LiftedArray, datatype: str, size: int) -> np.ndarray:
    if array.values.size != size:
        raise ProtocolError(400, f"input `data` has {array.values.size} values; its shape needs {size}")
    if datatype == "UINT8" and not array.integral:
        raise ProtocolError(400, "input `data` must hold only integers for datatype UINT8")
    return array.values


def _binary_values(
    binary: bytes | bytearray | memoryview, binary_size: Any, datatype: str, size: int
) -> tuple[np.ndarray, int]:
    dtype = _DTYPES[datatype]
    expected = size * dtype.itemsize
    if type(binary_size) is not int or binary_size != expected:
        raise ProtocolError(
            400, f"binary_data_size must be {expected} for {size} {datatype} values, not {binary_size!r}"
        )
    if len(binary) < binary_size:
        raise ProtocolError(
            400, f"binary section has {len(binary)} bytes, fewer than binary_data_size {binary_size}"
        )
    return np.frombuffer(binary, dtype=dtype, count=size), binary_size


def _json_values(data: Any, datatype: str, size: int) -> np.ndarray:
    if not isinstance(data, list):
        raise ProtocolError(400, "input `data` must be a list of numbers in row-major order")
    if len(data) != size and not (data and isinstance(data[0], list)):
        raise ProtocolError(400, f"input `data` has {len(data)} values; its shape needs {size}")
    try:
        values = np.array(data)
    except (ValueError, TypeError, OverflowError, RecursionError):
        raise ProtocolError(400, "input `data` is ragged or not all numbers") from None
    if values.size != size:
        raise ProtocolError(400, f"input `data` has {values.size} values; its shape needs {size}")
    allowed = "iu" if datatype == "UINT8" else "iuf"
    if values.dtype.kind not in allowed:
        expected = "integers" if datatype == "UINT8" else "numbers"
        raise ProtocolError(400, f"input `data` must hold only {expected} for datatype {datatype}")
    return values.reshape(-1)


def _to_images(
    values: np.ndarray, datatype: str, count: int, input_shape: tuple[int, int, int]
) -> np.ndarray:
    if datatype == "UINT8":
        if values.dtype != np.uint8 and (values.min() < 0 or values.max() > 255):
            raise ProtocolError(
                400, f"UINT8 values must lie in [0, 255]; got [{values.min()}, {values.max()}]"
            )
        images = values.astype(np.float32) / np.float32(255.0)
    else:
        with np.errstate(over="ignore", invalid="ignore"):  # out-of-range float64 becomes inf: refused below
            images = values.astype(np.float32)
        if not np.isfinite(images).all():
            raise ProtocolError(400, "input contains NaN or infinite values")
        low, high = float(images.min()), float(images.max())
        if low < 0.0 or high > 1.0:
            raise ProtocolError(
                400, f"FP32 values must lie in [0, 1]; got [{low:.4g}, {high:.4g}] (send UINT8 for 0..255)"
            )
    return images.reshape(count, *input_shape)


def _parse_outputs(outputs: Any, binary_default: bool, num_classes: int) -> list[RequestedOutput]:
    if outputs is None:
        return [RequestedOutput(name, binary=binary_default) for name in OUTPUT_NAMES]
    if not isinstance(outputs, list) or not outputs:
        raise ProtocolError(
            400, f"`outputs` must be a non-empty list (or omitted for all of {list(OUTPUT_NAMES)})"
        )
    parsed: list[RequestedOutput] = []
    for item in outputs:
        if not isinstance(item, dict) or item.get("name") not in OUTPUT_NAMES:
            name = item.get("name") if isinstance(item, dict) else item
            raise ProtocolError(400, f"unknown output {name!a}; this model has outputs {list(OUTPUT_NAMES)}")
        _check_fields(item, OUTPUT_FIELDS, "an output")
        if any(out.name == item["name"] for out in parsed):
            raise ProtocolError(400, f"output {item['name']!r} requested twice")
        params = _parameters(item, "output")
        binary = params.get("binary_data", binary_default)
        if not isinstance(binary, bool):
            raise ProtocolError(400, "output parameter `binary_data` must be true or false")
        classification = params.get("classification", 0)
        if type(classification) is not int or not 0 <= classification <= num_classes:
            raise ProtocolError(400, f"`classification` must be an integer from 1 to {num_classes} (0 = off)")
        if classification and item["name"] != PROBABILITIES:
            raise ProtocolError(400, f"`classification` applies to the {PROBABILITIES!r} output only")
        parsed.append(RequestedOutput(item["name"], classification=classification, binary=binary))
    return parsed


@dataclass(frozen=True)
class EncodedResponse:
    """A response body, and the `Inference-Header-Content-Length` when it carries binary tensors."""

    body: bytes
    header_length: int | None

    @property
    def media_type(self) -> str:
        return "application/json" if self.header_length is None else "application/octet-stream"


def encode_infer_response(
    answers: np.ndarray,
    outputs: list[RequestedOutput],
    *,
    model_name: str,
    model_version: str,
    request_id: str | None,
) -> EncodedResponse:
    """An infer response for answers [n, C] (the key's output mode already applied)."""
    n, classes = answers.shape
    tensors: list[dict[str, Any]] = []
    blobs: list[bytes] = []
    for out in outputs:
        if out.name == LABEL:
            tensor, raw = _tensor(LABEL, "INT64", [n], answers.argmax(1).astype("<i8"))
        elif out.classification:
            tensor, raw = _tensor(
                PROBABILITIES,
                "BYTES",
                [n, out.classification],
                classification_strings(answers, out.classification),
            )
        else:
            tensor, raw = _tensor(PROBABILITIES, "FP32", [n, classes], answers.astype("<f4"))
        if out.binary:
            blob = _to_bytes(raw)
            tensor["parameters"] = {"binary_data_size": len(blob)}
            blobs.append(blob)
        else:
            tensor["data"] = raw.reshape(-1).tolist()
        tensors.append(tensor)
    doc: dict[str, Any] = {"model_name": model_name, "model_version": model_version, "outputs": tensors}
    if request_id is not None:
        doc["id"] = request_id
    header = json.dumps(doc, separators=(",", ":"), allow_nan=False).encode()
    if not blobs:
        return EncodedResponse(header, None)
    return EncodedResponse(header + b"".join(blobs), len(header))


def _tensor(name: str, datatype: str, shape: list[int], raw: np.ndarray) -> tuple[dict[str, Any], np.ndarray]:
    return {"name": name, "datatype": datatype, "shape": shape}, raw


def _to_bytes(raw: np.ndarray) -> bytes:
    if raw.dtype.kind in "OU":  # BYTES: each element as a 4-byte little-endian length, then its bytes
        parts = []
        for item in raw.reshape(-1):
            text = str(item).encode()
            parts.append(len(text).to_bytes(4, "little") + text)
        return b"".join(parts)
    return np.ascontiguousarray(raw).tobytes()


def classification_strings(answers: np.ndarray, k: int) -> np.ndarray:
    """Triton's classification output: per row the top-k entries as "value:index", highest first."""
    top = np.argsort(-answers, axis=1, kind="stable")[:, :k]
    values = np.take_along_axis(answers, top, axis=1)
    strings = [f"{_format_value(v)}:{i}" for v, i in zip(values.reshape(-1), top.reshape(-1), strict=True)]
    return np.array(strings, dtype=object).reshape(top.shape)


def _format_value(value: float) -> str:
    return f"{value:.6f}" if math.isfinite(value) else "0.000000"
