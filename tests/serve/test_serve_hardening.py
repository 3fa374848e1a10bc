"""What a hostile client found, each fixed and pinned here: unstorable ids, disconnects, keys in the
URL, who may read metrics and metadata, slow and idle connections, memory per request, unknown fields."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import KEYS, LiveServer, auth, free_port, infer_body

from activethief.serve.app import InflightBytes, start_metrics_server
from activethief.serve.connections import (
    ACCEPT_FLOOD,
    ConnectionLimits,
    RateLimitedLog,
    ensure_descriptors,
)
from activethief.serve.protocol import ProtocolError, parse_infer_request


def _post(server: LiveServer, doc: Any, key: str = "small") -> httpx.Response:
    """POST a JSON document encoded as Python's json does (lone surrogates become \\ud800 escapes)."""
    return httpx.post(f"{server.model_url}/infer", content=json.dumps(doc).encode(), headers=auth(key))


def _server_log(caplog: pytest.LogCaptureFixture) -> str:
    """What the server logged (not the test's own HTTP client)."""
    records = [r for r in caplog.records if r.name.startswith(("activethief", "uvicorn", "asyncio"))]
    return "\n".join(r.getMessage() for r in records)


def _wait_until(condition: Callable[[], bool], seconds: float = 10.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _raw(server: LiveServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    return sock


def _closed(sock: socket.socket, seconds: float = 10.0) -> bytes | None:
    """What the server sent before closing the socket (None: still open after `seconds`)."""
    sock.settimeout(seconds)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


# --- 1: ids that cannot be stored --------------------------------------------------------------
@pytest.mark.parametrize("request_id", ["\ud800", "\udfff", "a\ud800b", "ok-\udc80"])
def test_an_id_with_a_lone_surrogate_is_a_400_naming_the_id_and_bills_nothing(
    start_server: Callable[..., LiveServer], images: np.ndarray, request_id: str
) -> None:
    server = start_server()
    response = _post(server, infer_body(images[:3], request_id))
    assert response.status_code == 400 and "`id`" in response.json()["error"]
    assert server.used("small") == 0
    assert _post(server, infer_body(images[:3], "fine-id")).status_code == 200
    assert server.used("small") == 3


# --- 7: unknown fields ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("where", "field"), [("request", "extra"), ("request", "Inputs"), ("input", "dtype"), ("output", "x")]
)
def test_unknown_fields_are_a_400_naming_the_field(
    server: LiveServer, images: np.ndarray, where: str, field: str
) -> None:
    doc = infer_body(images[:1], outputs=[{"name": "label"}], parameters={"binary_data_output": False})
    target = {"request": doc, "input": doc["inputs"][0], "output": doc["outputs"][0]}[where]
    target[field] = 1
    response = _post(server, doc, "alice")
    assert response.status_code == 400 and f"unknown field '{field}'" in response.json()["error"]
    del target[field]
    assert _post(server, doc, "alice").status_code == 200  # `parameters` is the protocol's own field


# --- 2: disconnects ------------------------------------------------------------------------------
def test_a_client_that_leaves_mid_body_is_a_499_not_an_internal_error(
    start_server: Callable[..., LiveServer], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    server = start_server()
    sock = _raw(server)
    head = (
        f"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS['alice']}\r\n"
        "Content-Type: application/json\r\nContent-Length: 5000\r\n\r\n"
    )
    sock.sendall(head.encode() + b'{"inputs": [')
    time.sleep(0.2)
    sock.close()
    metrics = server.service.metrics
    labels = {"key": "alice", "endpoint": "infer"}
    assert _wait_until(lambda: metrics.value("activethief_requests_total", **labels, code="499") == 1)
    assert metrics.value("activethief_requests_total", **labels, code="500") == 0
    logged = _server_log(caplog)
    assert "internal error" not in logged and "ClientDisconnect" not in logged
    assert not any(r.exc_info for r in caplog.records)


# --- 3: keys in the URL --------------------------------------------------------------------------
@pytest.mark.parametrize("parameter", ["api_key", "token", "access_token"])
def test_a_key_in_the_query_string_is_refused_and_never_logged(
    server: LiveServer, images: np.ndarray, caplog: pytest.LogCaptureFixture, parameter: str
) -> None:
    caplog.set_level(logging.DEBUG)
    secret = KEYS["alice"]
    url = f"{server.model_url}/infer?{parameter}={secret}&other=visible-value"
    response = httpx.post(url, json=infer_body(images[:1]))
    assert response.status_code == 401 and "Authorization header" in response.json()["error"]
    meta = httpx.get(f"{server.model_url}?{parameter}={secret}")
    assert meta.status_code == 401 and "never in the URL" in meta.json()["error"]
    logged = _server_log(caplog)
    assert "POST /v2/models/mnist/infer " in logged  # the access log ran, without the query string
    assert secret not in logged and "visible-value" not in logged and parameter not in logged


def test_the_access_log_does_not_echo_unknown_paths(
    server: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    assert httpx.get(f"{server.url}/v2/models/{KEYS['alice']}/x/y").status_code == 404
    logged = _server_log(caplog)
    assert KEYS["alice"] not in logged and "(unknown path)" in logged


# --- 4: what anyone may read ---------------------------------------------------------------------
def test_metrics_need_an_admin_key_or_the_separate_metrics_address(server: LiveServer) -> None:
    url = f"{server.url}/metrics"
    assert httpx.get(url).status_code == 401
    refused = httpx.get(url, headers=auth("alice"))
    assert refused.status_code == 403 and "admin" in refused.json()["error"]
    assert "activethief_budget_used_images" in httpx.get(url, headers=auth("ops")).text
    port = free_port()
    metrics_server = start_metrics_server(server.service, "127.0.0.1", port)
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "activethief_requests_total" in text and "activethief_budget_used_images" in text
    finally:
        metrics_server.shutdown()
        metrics_server.server_close()


def test_model_metadata_shows_the_protocol_and_the_keys_own_policy_only(
    start_server: Callable[..., LiveServer],
) -> None:
    default = start_server()
    meta = httpx.get(default.model_url, headers=auth("label")).json()
    params = meta["parameters"]
    assert meta["platform"] == "" and "dataset" not in params and "arch" not in params
    assert params["output_mode"] == "label" and params["num_classes"] == 10
    assert params["class_names"] == "0,1,2,3,4,5,6,7,8,9" and params["budget_used"] == 0
    assert not any(name in json.dumps(meta) for name in KEYS if name != "label")  # no other key
    detailed = start_server(model_details=True)
    params = httpx.get(detailed.model_url, headers=auth("label")).json()["parameters"]
    assert (params["dataset"], params["arch"]) == ("mnist", "cnn2")


# --- 5: slow and idle connections ----------------------------------------------------------------
def test_an_honest_client_is_served_while_another_holds_many_idle_sockets(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    server = start_server(limits=ConnectionLimits(max_connections=8, header_timeout=30))
    idle = [_raw(server) for _ in range(24)]  # three times the cap, none sends a byte
    try:
        for attempt in range(3):
            response = httpx.post(
                f"{server.model_url}/infer", json=infer_body(images[:2]), headers=auth("alice"), timeout=10
            )
            assert response.status_code == 200, attempt
        guard = server.app.state.guard
        assert guard.evicted >= 16 and len(guard.open) <= 8
    finally:
        for sock in idle:
            sock.close()


def test_slow_heads_idle_sockets_and_slow_bodies_are_cut_off(start_server: Callable[..., LiveServer]) -> None:
    server = start_server(limits=ConnectionLimits(header_timeout=0.5, body_timeout=0.5))
    silent, slowloris, slow_body = _raw(server), _raw(server), _raw(server)
    slowloris.sendall(b"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\n")  # the head never ends
    head = f"POST /v2/models/mnist/infer HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEYS['alice']}\r\n"
    slow_body.sendall(head.encode() + b"Content-Length: 1000\r\n\r\n{")  # the body never ends
    assert _closed(silent) == b""
    assert _closed(slowloris) == b""
    answer = _closed(slow_body)
    assert answer is not None and answer.startswith(b"HTTP/1.1 408") and b"did not arrive" in answer
    assert server.app.state.guard.timed_out >= 2
    assert httpx.get(f"{server.url}/v2/health/ready").status_code == 200


def test_the_accept_flood_log_line_is_rate_limited() -> None:
    now = [0.0]
    flood = RateLimitedLog(ACCEPT_FLOOD, every=10.0, clock=lambda: now[0])

    def record(message: str) -> logging.LogRecord:
        return logging.LogRecord(
            "asyncio", logging.ERROR, __file__, 1, message, None, (OSError, OSError(), None)
        )

    first = record(f"{ACCEPT_FLOOD}\nsocket: <socket>")
    assert flood.filter(first) and first.exc_info is None
    assert [flood.filter(record(ACCEPT_FLOOD)) for _ in range(1000)].count(True) == 0
    assert flood.filter(record("something else"))  # other messages pass untouched
    now[0] = 10.5
    again = record(ACCEPT_FLOOD)
    assert flood.filter(again) and "1000 more like this held back" in again.getMessage()


def test_the_connection_cap_fits_the_open_files_limit() -> None:
    assert 1 <= ensure_descriptors(64) <= 64
    with pytest.raises(ValueError, match="max_connections"):
        ConnectionLimits(max_connections=0)


# --- 6: memory per request -----------------------------------------------------------------------
def _nested_json(images: np.ndarray, datatype: str = "FP32") -> bytes:
    tensor = {"name": "images", "datatype": datatype, "shape": list(images.shape), "data": images.tolist()}
    return json.dumps({"id": "big", "inputs": [tensor]}).encode()


def test_a_large_json_body_is_parsed_in_a_few_times_its_size() -> None:
    images = np.random.default_rng(3).random((200, 1, 28, 28))  # float64 digits: ~3 MB of JSON
    body = _nested_json(images)
    tracemalloc.start()
    try:
        request = parse_infer_request(body, max_images=1000, num_classes=10)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 2.5 * len(body), peak / len(body)  # was ~8x with a list of Python floats
    np.testing.assert_array_equal(request.images, images.astype(np.float32))


@pytest.mark.parametrize(
    ("data", "status", "message"),
    [
        ("[0.5, 0.5,, 0.5]", 400, "not valid JSON"),
        ("[0.5], [0.5]", 400, "not valid JSON"),
        ("[0.5, 0.5, ]", 400, "not valid JSON"),
        ("[0.5 0.5]", 400, "not valid JSON"),
        ("[0.5, 2.0]", 400, "[0, 1]"),
        ("[0.5, NaN]", 400, "NaN"),
        ("[0.5, -0.0]", 200, ""),
    ],
)
def test_large_numeric_data_that_is_not_clean_json_gets_the_json_parsers_answer(
    data: str, status: int, message: str
) -> None:
    count = 100
    values = ", ".join(["0.25"] * (count * 784 - 2))
    text = data.replace("[", f"[{values}, ", 1)
    body = b'{"inputs": [{"name": "images", "datatype": "FP32", "shape": [%d, 784], "data": %s}]}' % (
        count,
        text.encode(),
    )
    assert len(body) > 64 * 1024  # large enough for the numpy path
    if status == 200:
        assert parse_infer_request(body, max_images=1000, num_classes=10).images.shape == (count, 1, 28, 28)
        return
    with pytest.raises(ProtocolError, match=message.replace("[", r"\[").replace("]", r"\]")) as caught:
        parse_infer_request(body, max_images=1000, num_classes=10)
    assert caught.value.status == status


def test_large_uint8_json_needs_integers() -> None:
    pixels = np.random.default_rng(4).integers(0, 256, (100, 784))
    ok = parse_infer_request(_nested_json(pixels, "UINT8"), max_images=1000, num_classes=10)
    np.testing.assert_array_equal(ok.images.reshape(100, 784), pixels.astype(np.float32) / np.float32(255))
    with pytest.raises(ProtocolError, match="only integers"):
        parse_infer_request(_nested_json(pixels + 0.5, "UINT8"), max_images=1000, num_classes=10)


def test_inflight_bytes_make_large_requests_wait_or_get_a_503() -> None:
    async def scenario() -> tuple[int, list[str]]:
        limit = InflightBytes(100)
        events: list[str] = []

        async def hold(name: str, size: int, wait: float) -> None:
            try:
                async with limit.reserve(size, wait):
                    events.append(f"{name} in")
                    await asyncio.sleep(0.05)
                events.append(f"{name} out")
            except TimeoutError:
                events.append(f"{name} refused")

        await asyncio.gather(hold("a", 60, 5), hold("b", 60, 5), hold("c", 60, 0.01))
        return limit.peak, events

    peak, events = asyncio.run(scenario())
    assert peak <= 100
    assert events.index("a out") < events.index("b in") and "c refused" in events


def test_many_large_requests_at_once_stay_under_the_inflight_bound(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    body = json.dumps(infer_body(np.concatenate([images] * 4))).encode()  # 100 images, ~1.7 MB
    server = start_server(max_bytes=len(body) + 1024, max_inflight_bytes=2 * (len(body) + 1024))
    codes: list[int] = []

    def send() -> None:
        with httpx.Client(timeout=60) as client:
            response = client.post(f"{server.model_url}/infer", content=body, headers=auth("alice"))
            codes.append(response.status_code)

    threads = [threading.Thread(target=send) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert set(codes) <= {200, 503} and 200 in codes
    assert server.app.state.inflight.peak <= 2 * (len(body) + 1024)
    assert server.app.state.inflight.used == 0


class _FakeTransport(asyncio.Transport):
    """Just enough of a transport for the protocol's timers."""

    def __init__(self) -> None:
        super().__init__()
        self.aborted = False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default

    def is_closing(self) -> bool:
        return self.aborted

    def abort(self) -> None:
        self.aborted = True

    def close(self) -> None:
        self.aborted = True

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def write(self, data: bytes | bytearray | memoryview) -> None:
        pass


def test_a_client_that_never_reads_its_answer_is_dropped_after_the_write_timeout() -> None:
    import uvicorn
    from uvicorn.server import ServerState

    from activethief.serve.connections import ConnectionGuard, guarded_protocol

    guard = ConnectionGuard(ConnectionLimits(write_timeout=0.05, header_timeout=60))
    loop = asyncio.new_event_loop()
    try:
        config = uvicorn.Config(app=lambda scope, receive, send: None, log_config=None)
        protocol_class = guarded_protocol(guard)
        reader, stuck = (
            protocol_class(config=config, server_state=ServerState(), app_state={}, _loop=loop)
            for _ in range(2)
        )
        reader_transport, stuck_transport = _FakeTransport(), _FakeTransport()
        reader.connection_made(reader_transport)
        stuck.connection_made(stuck_transport)
        reader.pause_writing()
        stuck.pause_writing()
        reader.resume_writing()  # this one reads again in time
        loop.run_until_complete(asyncio.sleep(0.2))
    finally:
        loop.close()
    assert stuck_transport.aborted and not reader_transport.aborted
    assert guard.timed_out == 1 and list(guard.open) == [reader]
