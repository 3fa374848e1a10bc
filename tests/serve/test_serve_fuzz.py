"""Property-based fuzzing of the live server: malformed requests never crash it and never get a 5xx."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from serve_helpers import LiveServer, auth, infer_body

REQUEST_KEYS = ("id", "inputs", "outputs", "parameters")
FUZZ = settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# Text with lone surrogates too: valid JSON ("\ud800"), but not storable as UTF-8.
odd_text = st.text(
    st.characters(min_codepoint=0xD800, max_codepoint=0xDFFF) | st.characters(max_codepoint=0x10FFFF),
    max_size=8,
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.floats() | st.text(max_size=8) | odd_text,
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
HEADER_CHARS = st.characters(min_codepoint=33, max_codepoint=126)
FIELDS = [
    ("id",), ("inputs",), ("outputs",), ("parameters",),
    ("inputs", 0), ("inputs", 0, "name"), ("inputs", 0, "datatype"), ("inputs", 0, "shape"),
    ("inputs", 0, "shape", 0), ("inputs", 0, "shape", 1), ("inputs", 0, "data"), ("inputs", 0, "data", 5),
    ("inputs", 0, "parameters"), ("inputs", 0, "parameters", "binary_data_size"),
    ("outputs", 0, "name"), ("outputs", 0, "parameters", "classification"),
    ("outputs", 0, "parameters", "binary_data"), ("parameters", "binary_data_output"),
]  # fmt: skip


@pytest.fixture(scope="module")
def client(server: LiveServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.model_url, headers=auth("alice"), timeout=30) as http:
        yield http


@pytest.fixture(scope="module")
def valid() -> dict[str, Any]:
    x = np.random.default_rng(1).random((2, 1, 28, 28), dtype=np.float32)
    body = infer_body(x, "fuzz")
    body["outputs"] = [{"name": "probabilities", "parameters": {"classification": 2, "binary_data": False}}]
    return body


def _set(doc: Any, path: tuple[Any, ...], value: Any) -> Any:
    target = doc
    for step in path[:-1]:
        if (isinstance(target, dict) and step in target) or (isinstance(target, list) and step < len(target)):
            target = target[step]
        else:
            return doc
    if isinstance(target, dict) or (isinstance(target, list) and path[-1] < len(target)):
        target[path[-1]] = value
    return doc


def _check(response: httpx.Response) -> None:
    assert response.status_code < 500, response.text
    if response.status_code >= 400:
        assert isinstance(response.json()["error"], str)


@FUZZ
@given(path=st.sampled_from(FIELDS), value=json_values, drop=st.booleans())
def test_mutated_requests_get_4xx_or_answers(
    client: httpx.Client, valid: dict[str, Any], path: tuple[Any, ...], value: Any, drop: bool
) -> None:
    doc = copy.deepcopy(valid)
    doc["id"] = f"fuzz-{hash((path, repr(value), drop))}"  # each example a fresh id
    if drop and isinstance(path[-1], str) and len(path) <= 2:
        parent = doc if len(path) == 1 else doc.get(path[0])
        if isinstance(parent, dict):
            parent.pop(path[-1], None)
        elif isinstance(parent, list) and parent and isinstance(parent[0], dict):
            parent[0].pop(path[-1], None)
    else:
        _set(doc, path, value)
    _check(
        client.post("/infer", content=json.dumps(doc).encode(), headers={"Content-Type": "application/json"})
    )


@FUZZ
@given(
    body=st.binary(max_size=2000),
    length=st.none() | st.integers(-5, 3000).map(str) | st.text(HEADER_CHARS, max_size=4),
)
def test_random_bytes_and_binary_headers_get_4xx(
    client: httpx.Client, body: bytes, length: str | None
) -> None:
    headers = (
        {}
        if length is None
        else {"Inference-Header-Content-Length": length.encode("ascii", "replace").decode()}
    )
    _check(client.post("/infer", content=body, headers=headers))


@FUZZ
@given(doc=json_values)
def test_random_json_documents_get_4xx(client: httpx.Client, doc: Any) -> None:
    _check(client.post("/infer", content=json.dumps(doc).encode()))


@FUZZ
@given(
    size=st.integers(0, 4000),
    declared=st.integers(0, 4000),
    count=st.integers(-1, 3),
)
def test_binary_tensors_with_wrong_sizes_get_4xx(
    client: httpx.Client, size: int, declared: int, count: int
) -> None:
    tensor = {
        "name": "images",
        "datatype": "FP32",
        "shape": [count, 784],
        "parameters": {"binary_data_size": declared},
    }
    header = json.dumps({"id": f"bin-{size}-{declared}-{count}", "inputs": [tensor]}).encode()
    body = header + np.random.default_rng(size).random(size // 4, dtype=np.float32).tobytes()
    _check(client.post("/infer", content=body, headers={"Inference-Header-Content-Length": str(len(header))}))


@FUZZ
@given(request_id=odd_text.filter(bool), unknown=st.none() | odd_text.filter(lambda t: t not in REQUEST_KEYS))
def test_odd_ids_and_unknown_fields_get_4xx_or_answers_and_refusals_bill_nothing(
    server: LiveServer, client: httpx.Client, valid: dict[str, Any], request_id: str, unknown: str | None
) -> None:
    doc = {**copy.deepcopy(valid), "id": f"odd-{request_id}"}
    if unknown is not None:
        doc[unknown] = 1
    before = server.used("alice")
    response = client.post("/infer", content=json.dumps(doc).encode())
    _check(response)
    if response.status_code != 200:
        assert server.used("alice") == before
    if unknown is not None:
        assert response.status_code == 400 and "unknown field" in response.json()["error"]
