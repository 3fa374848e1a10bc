"""HttpOracle against the live server and against scripted transports: discovery, batching, retries,
budget refusals, and crash recovery that never pays twice."""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import KEYS, LiveServer

from activethief import models
from activethief.errors import BudgetExceededError, OracleError
from activethief.oracle.http import API_KEY_ENV, HttpOracle, RemoteBudgetExceededError, RemoteRefusalError
from activethief.oracle.modes import OutputMode
from activethief.training import predict_proba


class Recording(httpx.HTTPTransport):
    """A real transport that remembers infer request ids, and can fail after the server answered."""

    def __init__(self, fail_after_answer: type[BaseException] | None = None) -> None:
        super().__init__()
        self.ids: list[str] = []
        self.fail_after_answer = fail_after_answer

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/infer"):
            body = request.read()
            length = int(request.headers.get("inference-header-content-length", len(body)))
            self.ids.append(json.loads(body[:length])["id"])
        response = super().handle_request(request)
        if self.fail_after_answer is not None and request.url.path.endswith("/infer"):
            response.read()
            error, self.fail_after_answer = self.fail_after_answer, None
            raise error("the answer was lost on the way back")
        return response


@pytest.fixture
def oracles() -> Iterator[Callable[..., HttpOracle]]:
    made: list[HttpOracle] = []

    def make(url: str, key: str | None = "alice", **options: Any) -> HttpOracle:
        oracle = HttpOracle(url, api_key=None if key is None else KEYS[key], **options)
        made.append(oracle)
        return oracle

    yield make
    for oracle in made:
        oracle.backend.close()


def test_discovers_mode_classes_and_limits_and_answers_like_the_model(
    server: LiveServer, oracles: Callable[..., HttpOracle], images: np.ndarray, target_file: Path
) -> None:
    model, _ = models.load(target_file)
    for key, mode in [("alice", "probs"), ("topk", "topk:3"), ("label", "label")]:
        oracle = oracles(server.model_url, key)
        assert str(oracle.mode) == mode and oracle.mode.hard == (mode == "label")
        assert oracle.num_classes == 10 and oracle.backend.request_size == 64
        answers = oracle.query(images, keys=np.arange(25))
        np.testing.assert_allclose(
            answers, OutputMode.parse(mode).apply(predict_proba(model, images)), atol=1e-6
        )
        keys, stored = oracle.answered()
        assert keys.tolist() == list(range(25))
        np.testing.assert_array_equal(stored, answers)
    assert oracles(server.url).backend.model == "mnist"  # the server's only model, from its index
    assert oracles(f"{server.url}/v2/models/mnist/versions/1").backend.version == "1"


def test_json_and_binary_transfer_give_identical_answers(
    server: LiveServer, oracles: Callable[..., HttpOracle], images: np.ndarray
) -> None:
    binary = oracles(server.model_url).query(images)
    as_json = oracles(server.model_url, binary=False).query(images)
    np.testing.assert_array_equal(binary, as_json)


def test_large_queries_go_out_in_parts_with_stable_ids(
    server: LiveServer, oracles: Callable[..., HttpOracle], images: np.ndarray
) -> None:
    transport = Recording()
    oracle = oracles(server.model_url, batch_size=7, transport=transport)
    oracle.query(images[:20], keys=np.arange(20))
    (request_id,) = {i.split(".")[0] for i in transport.ids}
    assert transport.ids == [f"{request_id}.0", f"{request_id}.1", f"{request_id}.2"]
    with pytest.raises(OracleError, match="exceeds the server's limit of 64"):
        oracles(server.model_url, batch_size=65)


def test_url_and_key_errors_are_clear(
    server: LiveServer, oracles: Callable[..., HttpOracle], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(API_KEY_ENV, raising=False)
    with pytest.raises(RemoteRefusalError, match="refused the API key") as refused:
        oracles(server.model_url, key=None)
    assert refused.value.status == 401 and refused.value.nothing_billed
    monkeypatch.setenv(API_KEY_ENV, KEYS["label"])
    assert str(oracles(server.model_url, key=None).mode) == "label"
    with pytest.raises(OracleError, match="check the model name"):
        oracles(f"{server.url}/v2/models/cifar")
    with pytest.raises(OracleError, match="must start with http"):
        oracles("ftp://example/v2/models/x")
    with pytest.raises(OracleError, match="gets answers in mode probs, not label"):
        oracles(server.model_url, mode="label")
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there now
    with pytest.raises(OracleError, match=r"failed after 2 tries over 0 s .*; last error: ConnectError"):
        oracles(f"http://127.0.0.1:{port}/v2/models/x", max_retries=1, sleep=lambda s: None)


def test_server_budget_refusal_is_a_budget_error(
    start_server: Callable[..., LiveServer], oracles: Callable[..., HttpOracle], images: np.ndarray
) -> None:
    server = start_server()
    oracle = oracles(server.model_url, "small")
    pool = np.concatenate([images] * 5)
    oracle.query(pool[:60], keys=np.arange(60))
    with pytest.raises(RemoteBudgetExceededError, match="budget exhausted for this API key") as info:
        oracle.query(pool[60:120], keys=np.arange(60, 120))
    assert isinstance(info.value, BudgetExceededError) and info.value.nothing_billed
    assert (info.value.used, info.value.asked, info.value.budget) == (60, 60, 100)
    assert server.used("small") == 60
    parts = oracles(server.model_url, "small", batch_size=30)
    with pytest.raises(RemoteBudgetExceededError) as info:
        parts.query(pool[60:120], keys=np.arange(60, 120))  # the first part (30) fits, the second not
    assert not info.value.nothing_billed and server.used("small") == 90


def test_rate_limited_queries_wait_for_retry_after(
    start_server: Callable[..., LiveServer], oracles: Callable[..., HttpOracle], images: np.ndarray
) -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += seconds

    server = start_server(clock=lambda: now[0])
    oracle = oracles(server.model_url, "slow", batch_size=20, sleep=sleep)
    pool = np.concatenate([images] * 2)
    oracle.query(pool[:50], keys=np.arange(50))
    assert slept == [1.0, 1.0] and server.used("slow") == 50
    assert len(oracle.ledger) == 50


def test_a_lost_answer_is_resent_with_the_same_id_and_billed_once(
    start_server: Callable[..., LiveServer], oracles: Callable[..., HttpOracle], images: np.ndarray
) -> None:
    server = start_server()
    transport = Recording(fail_after_answer=httpx.ReadError)
    oracle = oracles(server.model_url, "small", transport=transport, sleep=lambda s: None)
    oracle.query(images[:10], keys=np.arange(10))
    assert len(transport.ids) == 2 and transport.ids[0] == transport.ids[1]
    assert server.used("small") == 10


def test_crash_after_the_server_answered_is_recovered_without_paying_twice(
    start_server: Callable[..., LiveServer],
    oracles: Callable[..., HttpOracle],
    images: np.ndarray,
    tmp_path: Path,
) -> None:
    server = start_server()
    ledger = tmp_path / "ledger.sqlite"
    crashing = oracles(
        server.model_url, "small", ledger=ledger, transport=Recording(fail_after_answer=RuntimeError)
    )
    with pytest.raises(RuntimeError, match="lost"):
        crashing.query(images[:10], keys=np.arange(10))
    assert server.used("small") == 10 and crashing.used == 10  # billed, and pending in the ledger
    crashing.close()
    resumed = oracles(server.model_url, "small", ledger=ledger)
    assert resumed.recover(images) == 10
    assert server.used("small") == 10 and len(resumed.ledger) == 10 and resumed.ledger.pending() == []
    resumed.query(images[:15], keys=np.arange(15))  # the first 10 come from the ledger, free
    assert server.used("small") == 15 == resumed.used


def test_resuming_with_another_request_size_is_refused_while_parts_are_pending(
    start_server: Callable[..., LiveServer],
    oracles: Callable[..., HttpOracle],
    images: np.ndarray,
    tmp_path: Path,
) -> None:
    server = start_server()
    ledger = tmp_path / "ledger.sqlite"
    crashing = oracles(
        server.model_url,
        "small",
        ledger=ledger,
        batch_size=5,
        transport=Recording(fail_after_answer=RuntimeError),
    )
    with pytest.raises(RuntimeError):
        crashing.query(images[:12], keys=np.arange(12))
    crashing.close()
    with pytest.raises(OracleError, match="resume with batch_size=5"):
        oracles(server.model_url, "small", ledger=ledger, batch_size=10)
    resumed = oracles(server.model_url, "small", ledger=ledger, batch_size=5)
    resumed.recover(images)
    assert server.used("small") == 12


def _scripted(responses: list[httpx.Response | Exception]) -> httpx.MockTransport:
    metadata = {"name": "m", "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/infer"):
            return httpx.Response(200, json=metadata)
        item = responses.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    return httpx.MockTransport(handle)


def test_retries_back_off_on_5xx_and_connection_errors_and_respect_retry_after() -> None:
    answer = {
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.2, 0.3, 0.5]}]
    }
    transport = _scripted([
        httpx.Response(503, json={"error": "warming up"}),
        httpx.ConnectError("refused"),
        httpx.Response(429, headers={"Retry-After": "7"}, json={"error": "slow down"}),
        httpx.Response(200, json=answer),
    ])  # fmt: skip
    slept: list[float] = []
    oracle = HttpOracle(
        "http://far.example/v2/models/m", api_key="k" * 16, transport=transport, sleep=slept.append
    )
    assert str(oracle.mode) == "probs" and oracle.num_classes == 3  # a server that does not publish a mode
    np.testing.assert_allclose(oracle.query(np.zeros((1, 1, 28, 28), np.float32)), [[0.2, 0.3, 0.5]])
    assert len(slept) == 3 and 0.25 <= slept[0] <= 0.5 and 0.5 <= slept[1] <= 1.0 and slept[2] == 7.0

    failing = _scripted([httpx.Response(500, json={"error": "boom"})] * 3)
    broken = HttpOracle(
        "http://far.example/v2/models/m", transport=failing, max_retries=2, sleep=lambda s: None
    )
    with pytest.raises(OracleError, match=r"failed after 3 tries over 0 s .*; last error: HTTP 500: boom"):
        broken.query(np.zeros((1, 1, 28, 28), np.float32))
    garbled = _scripted([httpx.Response(200, content=b"<html>")])
    with pytest.raises(OracleError, match="cannot read"):
        HttpOracle("http://far.example/v2/models/m", transport=garbled).query(
            np.zeros((1, 1, 28, 28), np.float32)
        )


class FakeClock:
    """Monotonic time that only moves when the oracle sleeps."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def _down_for(seconds: float, clock: FakeClock) -> httpx.MockTransport:
    """A server that refuses connections for `seconds` (by the fake clock), then answers."""
    metadata = {"name": "m", "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}]}
    answer = {
        "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [1, 3], "data": [0.2, 0.3, 0.5]}]
    }

    def handle(request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/infer"):
            return httpx.Response(200, json=metadata)
        if clock.now < seconds:
            raise httpx.ConnectError("connection refused")
        return httpx.Response(200, json=answer)

    return httpx.MockTransport(handle)


@pytest.mark.parametrize("downtime", [8.0, 15.0, 90.0])
def test_the_default_retry_window_rides_out_a_server_restart(downtime: float) -> None:
    clock = FakeClock()
    oracle = HttpOracle(
        "http://far.example/v2/models/m", transport=_down_for(downtime, clock), sleep=clock.sleep, clock=clock
    )
    answers = oracle.query(np.zeros((1, 1, 28, 28), np.float32))
    np.testing.assert_allclose(answers, [[0.2, 0.3, 0.5]])
    assert oracle.backend.retry_for == 120.0
    assert max(clock.slept) <= 10.0  # backoff capped
    assert downtime <= clock.now <= downtime + 10.0  # resent soon after the server came back
    oracle.close()


def test_a_server_down_longer_than_the_window_ends_with_a_resume_hint() -> None:
    clock = FakeClock()
    oracle = HttpOracle(
        "http://far.example/v2/models/m",
        transport=_down_for(1e9, clock),
        retry_for=30.0,
        sleep=clock.sleep,
        clock=clock,
    )
    with pytest.raises(OracleError, match=r"retry_for=30 s.*--resume to continue the run") as caught:
        oracle.query(np.zeros((1, 1, 28, 28), np.float32))
    assert "ConnectError" in str(caught.value)
    assert clock.now <= 30.0 and len(clock.slept) >= 4
    assert oracle.answered()[0].size == 0  # nothing recorded as answered
    oracle.close()
    no_retries = HttpOracle(
        "http://far.example/v2/models/m", transport=_down_for(1e9, clock), retry_for=0, sleep=clock.sleep
    )
    slept_before = len(clock.slept)
    with pytest.raises(OracleError, match="failed after 1 tries"):
        no_retries.query(np.zeros((1, 1, 28, 28), np.float32))
    assert len(clock.slept) == slept_before
    with pytest.raises(OracleError, match="retry_for >= 0"):
        HttpOracle("http://far.example/v2/models/m", transport=_down_for(0, clock), retry_for=-1)
