"""The service's parts without HTTP: keys file, protocol, state, token bucket and metrics."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from activethief.errors import ConfigError
from activethief.serve import UsageStore, hash_key, load_keys
from activethief.serve.keys import parse_keys
from activethief.serve.metrics import Metrics
from activethief.serve.protocol import (
    ProtocolError,
    RequestedOutput,
    classification_strings,
    encode_infer_response,
    parse_infer_request,
)
from activethief.serve.ratelimit import TokenBucket
from activethief.serve.state import BudgetRefused


def _request(**tensor: Any) -> bytes:
    base = {"name": "images", "datatype": "FP32", "shape": [1, 784], "data": [0.0] * 784}
    base.update(tensor)
    return json.dumps({"inputs": [base]}).encode()


def _parse(body: bytes, header_length: str | None = None) -> Any:
    return parse_infer_request(body, header_length=header_length, max_images=8, num_classes=10)


# --- keys file ----------------------------------------------------------------------------------
def test_keys_file_policies_and_lookup(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    path.write_text(
        '[defaults]\nmode = "label"\n'
        '[keys.a]\nkey = "a-very-secret-1"\nbudget = 10\nrate = 5\n'
        f'[keys.b]\nkey_sha256 = "{hash_key("b-very-secret-2")}"\nmode = "topk:2"\n'
    )
    ring = load_keys(path)
    a = ring.identify("a-very-secret-1")
    b = ring.identify("b-very-secret-2")
    assert a is not None and a.name == "a" and str(a.mode) == "label" and a.budget == 10 and a.rate == 5.0
    assert a.bucket_size(max_batch=100) == 100.0
    assert b is not None and b.name == "b" and str(b.mode) == "topk:2" and b.budget is None
    assert ring.identify("a-very-secret-") is None
    assert "a-very-secret-1" not in repr(a) and a.key_sha256 not in repr(a)


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "no keys"),
        ({"keys": {"a": {"mode": "probs"}}}, "exactly one of `key`"),
        ({"keys": {"a": {"key": "short"}}}, "at least 12"),
        ({"keys": {"a": {"key": "long-enough-key", "mode": "soft"}}}, "invalid output mode"),
        ({"keys": {"a": {"key": "long-enough-key", "budget": -1}}}, "`budget` must be an integer"),
        ({"keys": {"a": {"key": "long-enough-key", "budget": 1.5}}}, "`budget` must be an integer"),
        ({"keys": {"a": {"key": "long-enough-key", "rate": 0}}}, "`rate` must be > 0"),
        ({"keys": {"a": {"key": "long-enough-key", "limit": 3}}}, "unknown fields ['limit']"),
        ({"keys": {"a b": {"key": "long-enough-key"}}}, "key name"),
        ({"keys": {"a": {"key": "long-enough-key"}, "b": {"key": "long-enough-key"}}}, "same secret"),
        ({"keys": {"a": {"key_sha256": "xyz"}}}, "64 hexadecimal"),
        ({"server": {}, "keys": {"a": {"key": "long-enough-key"}}}, "unknown top-level"),
    ],
)
def test_keys_file_errors_say_what_to_fix(doc: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=None) as info:
        parse_keys(doc)
    assert message in str(info.value)
    assert "long-enough-key" not in str(info.value)  # never echo a secret


def test_keys_file_missing_or_not_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_keys(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text('[keys.a]\nkey = "secret-that-must-not-leak\n')
    with pytest.raises(ConfigError, match="not valid TOML") as info:
        load_keys(bad)
    assert "secret-that-must-not-leak" not in str(info.value)


# --- protocol -----------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [[2, 1, 28, 28], [2, 28, 28], [2, 784]])
def test_parse_accepts_the_three_shapes_and_nested_data(shape: list[int]) -> None:
    x = np.linspace(0, 1, 2 * 784, dtype=np.float32)
    flat = parse_infer_request(_request(shape=shape, data=x.tolist()), max_images=8, num_classes=10)
    nested = parse_infer_request(
        _request(shape=shape, data=x.reshape(shape).tolist()), max_images=8, num_classes=10
    )
    assert flat.images.shape == (2, 1, 28, 28) and flat.images.dtype == np.float32
    np.testing.assert_array_equal(flat.images.reshape(-1), x)
    np.testing.assert_array_equal(nested.images, flat.images)


def test_parse_uint8_json_and_binary() -> None:
    pixels = np.arange(784, dtype=np.int64) % 256
    req = _parse(_request(datatype="UINT8", data=pixels.tolist()))
    np.testing.assert_allclose(req.images.reshape(-1), pixels / 255.0, rtol=1e-6)
    raw = pixels.astype(np.uint8).tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "images",
                    "datatype": "UINT8",
                    "shape": [1, 784],
                    "parameters": {"binary_data_size": len(raw)},
                }
            ]
        }
    ).encode()
    binary = _parse(header + raw, header_length=str(len(header)))
    np.testing.assert_array_equal(binary.images, req.images)


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"", 400, "empty request body"),
        (b"not json", 400, "not valid JSON"),
        (b"[1, 2]", 400, "JSON object"),
        (b"{}", 400, "`inputs`"),
        (_request(name="x"), 400, "unknown input"),
        (_request(datatype="FP64"), 400, "datatype"),
        (_request(shape=[1, 28]), 400, "shape"),
        (_request(shape=[1, 784.0]), 400, "non-negative integers"),
        (_request(shape=[0, 784], data=[]), 400, "empty batch"),
        (_request(shape=[9, 784]), 413, "at most 8"),
        (_request(data=[0.0] * 783), 400, "783 values"),
        (_request(data=["0"] * 784), 400, "only numbers"),
        (_request(data=[None] * 784), 400, "only numbers"),
        (_request(data=[0.5] * 783 + [1.5]), 400, "[0, 1]"),
        (_request(data=[0.5] * 783 + [-0.1]), 400, "[0, 1]"),
        (_request(data=[0.5] * 783 + [float("nan")]), 400, "NaN"),
        (_request(data=[0.5] * 783 + [1e300]), 400, "infinite"),
        (_request(data=[1] * 783 + [2**70]), 400, "only numbers"),
        (_request(datatype="UINT8", data=[0] * 783 + [256]), 400, "[0, 255]"),
        (_request(datatype="UINT8", data=[0.5] * 784), 400, "only integers"),
        (_request(data=[[0.0] * 784, [0.0]]), 400, "ragged"),
        (_request(parameters={"binary_data_size": 3136}), 400, "binary section"),
        (_request(parameters={"binary_data_size": 12}), 400, "binary_data_size must be 3136"),
        (b'{"inputs": [' + b"[" * 100_000 + b"]" * 100_000 + b"]}", 400, "not valid JSON"),
    ],
)
def test_parse_refuses_bad_requests_clearly(body: bytes, status: int, message: str) -> None:
    with pytest.raises(ProtocolError) as info:
        _parse(body)
    assert info.value.status == status
    assert message in info.value.message


def test_parse_outputs_and_ids() -> None:
    doc = json.loads(_request())
    doc.update(
        id="r1", outputs=[{"name": "probabilities", "parameters": {"classification": 3}}, {"name": "label"}]
    )
    req = _parse(json.dumps(doc).encode())
    assert req.request_id == "r1"
    assert req.outputs == [RequestedOutput("probabilities", classification=3), RequestedOutput("label")]
    for bad, message in [
        ([{"name": "logits"}], "unknown output"),
        ([{"name": "label"}, {"name": "label"}], "twice"),
        ([{"name": "probabilities", "parameters": {"classification": 11}}], "from 1 to 10"),
        ([{"name": "label", "parameters": {"classification": 2}}], "applies to"),
        ([{"name": "label", "parameters": {"binary_data": "yes"}}], "true or false"),
    ]:
        doc["outputs"] = bad
        with pytest.raises(ProtocolError, match=None) as info:
            _parse(json.dumps(doc).encode())
        assert message in info.value.message
    doc["outputs"], doc["id"] = None, 7
    with pytest.raises(ProtocolError, match="`id`"):
        _parse(json.dumps(doc).encode())


def test_encode_json_binary_and_classification() -> None:
    answers = np.array([[0.1, 0.7, 0.2], [0.5, 0.25, 0.25]], dtype=np.float32)
    outputs = [RequestedOutput("probabilities"), RequestedOutput("label", binary=True)]
    encoded = encode_infer_response(answers, outputs, model_name="m", model_version="1", request_id="x")
    assert encoded.header_length is not None and encoded.media_type == "application/octet-stream"
    doc = json.loads(encoded.body[: encoded.header_length])
    assert doc["id"] == "x" and doc["outputs"][0]["data"] == answers.reshape(-1).tolist()
    labels = np.frombuffer(encoded.body[encoded.header_length :], dtype="<i8")
    assert labels.tolist() == [1, 0] and doc["outputs"][1]["parameters"] == {"binary_data_size": 16}
    top = classification_strings(answers, 2)
    assert top.tolist() == [["0.700000:1", "0.200000:2"], ["0.500000:0", "0.250000:1"]]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.binary(max_size=300)
    | st.recursive(
        st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=5),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(
                st.sampled_from(
                    [
                        "inputs",
                        "outputs",
                        "id",
                        "name",
                        "shape",
                        "datatype",
                        "data",
                        "parameters",
                        "binary_data_size",
                    ]
                ),
                inner,
                max_size=5,
            )
        ),
        max_leaves=20,
    ).map(lambda doc: json.dumps(doc).encode())
)
def test_parse_raises_only_protocol_errors(body: bytes) -> None:
    try:
        _parse(body)
    except ProtocolError as exc:
        assert exc.status in (400, 413)


# --- state --------------------------------------------------------------------------------------
def test_store_charges_atomically_and_persists(tmp_path: Path) -> None:
    path = tmp_path / "state.sqlite"
    answers = np.eye(3, dtype=np.float32)
    with UsageStore(path) as store:
        assert store.charge("k", 3, budget=5, answers=answers, request_id="r", fingerprint="f") is None
        again = store.charge("k", 3, budget=5, answers=answers, request_id="r", fingerprint="f")
        assert again is not None and again.fingerprint == "f"  # a duplicate id is not billed
        with pytest.raises(BudgetRefused):
            store.charge("k", 3, budget=5, answers=answers)
        assert store.used("k") == 3
    with UsageStore(path) as store:
        assert store.usage() == {"k": 3}
        stored = store.lookup("k", "r")
        assert stored is not None
        np.testing.assert_array_equal(stored.answers, answers)
        assert store.lookup("other", "r") is None  # ids are per key


def test_store_never_overspends_under_threads() -> None:
    store = UsageStore()
    served: list[int] = []

    def client(size: int) -> None:
        while True:
            try:
                store.charge("k", size, budget=997, answers=np.zeros((size, 2), np.float32))
            except BudgetRefused:
                return
            served.append(size)

    threads = [threading.Thread(target=client, args=(1 + i % 5,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(served) == store.used("k") == 997


def test_store_group_commit_bills_a_racing_duplicate_id_once(tmp_path: Path) -> None:
    store = UsageStore(tmp_path / "state.sqlite")
    outcomes: list[object] = []
    barrier = threading.Barrier(12)

    def client(i: int) -> None:
        barrier.wait()
        answers = np.full((4, 2), 0.5, np.float32)
        outcomes.append(
            store.charge("k", 4, budget=30, answers=answers, request_id=f"id-{i % 3}", fingerprint="f")
        )

    threads = [threading.Thread(target=client, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.used("k") == 12  # three distinct ids, four images each
    assert sum(o is None for o in outcomes) == 3 and len(outcomes) == 12
    store.close()


def test_store_rejects_a_non_database(tmp_path: Path) -> None:
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(ConfigError, match="not a usable server state file"):
        UsageStore(junk)


# --- token bucket and metrics -------------------------------------------------------------------
def test_token_bucket_refills_at_its_rate() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=10, capacity=20, clock=lambda: now[0])
    assert bucket.take(20) == 0.0
    assert bucket.take(5) == pytest.approx(0.5)
    now[0] += 0.5
    assert bucket.take(5) == 0.0
    assert TokenBucket.retry_after(0.01) == 1 and TokenBucket.retry_after(2.2) == 3


def test_metrics_render_prometheus_text() -> None:
    metrics = Metrics(gauges=lambda: {"activethief_budget_used_images": {"a": 3.0}})
    metrics.count("activethief_requests_total", key="a", endpoint="infer", code="200")
    metrics.count("activethief_images_served_total", 5, key="a")
    metrics.observe_latency(0.003, endpoint="infer")
    text = metrics.render().decode()
    assert 'activethief_requests_total{code="200",endpoint="infer",key="a"} 1.0' in text
    assert 'activethief_images_served_total{key="a"} 5.0' in text
    assert 'activethief_request_duration_seconds_bucket{endpoint="infer",le="0.0025"} 0.0' in text
    assert 'activethief_request_duration_seconds_bucket{endpoint="infer",le="0.005"} 1.0' in text
    assert 'activethief_request_duration_seconds_count{endpoint="infer"} 1.0' in text
    assert 'activethief_budget_used_images{key="a"} 3.0' in text
    assert metrics.value("activethief_images_served_total", key="a") == 5.0
    assert metrics.value("activethief_images_served_total", key="nobody") == 0.0
    assert "# TYPE activethief_request_duration_seconds histogram" in text
