"""The service over real HTTP (uvicorn on 127.0.0.1): the Open Inference Protocol with httpx and with
Triton's own client, auth, output modes, budgets under concurrency, rate limits, restarts, idempotent
replays, size limits and metrics."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import KEYS, LiveServer, auth, infer_body

from activethief import models
from activethief.oracle.modes import OutputMode
from activethief.training import predict_proba


def _probs(doc: dict[str, object]) -> np.ndarray:
    outputs = doc["outputs"]
    assert isinstance(outputs, list)
    tensor = next(o for o in outputs if o["name"] == "probabilities")
    return np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])


def _infer(server: LiveServer, key: str, images: np.ndarray, request_id: str | None = None) -> httpx.Response:
    return httpx.post(f"{server.model_url}/infer", json=infer_body(images, request_id), headers=auth(key))


# --- protocol endpoints ---------------------------------------------------------------------------
def test_health_and_metadata_endpoints(server: LiveServer) -> None:
    assert httpx.get(f"{server.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{server.url}/v2/health/ready").json() == {"ready": True}
    meta = httpx.get(f"{server.url}/v2").json()
    assert meta["name"] == "activethief" and "binary_tensor_data" in meta["extensions"]
    assert httpx.get(f"{server.model_url}/ready").json() == {"name": "mnist", "ready": True}
    assert httpx.get(f"{server.model_url}/versions/1/ready").status_code == 200
    missing = httpx.get(f"{server.url}/v2/models/cifar/ready")
    assert missing.status_code == 404 and "unknown model 'cifar'" in missing.json()["error"]
    assert httpx.get(server.model_url).status_code == 401  # metadata tells the key's policy: key needed
    model = httpx.get(server.model_url, headers=auth("topk")).json()
    assert model["name"] == "mnist" and model["versions"] == ["1"]
    assert model["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 1, 28, 28]}]
    assert model["outputs"][0] == {"name": "probabilities", "datatype": "FP32", "shape": [-1, 10]}
    params = model["parameters"]
    assert (
        params["output_mode"] == "topk:3" and params["num_classes"] == 10 and params["max_batch_size"] == 64
    )
    assert params["class_names"] == "0,1,2,3,4,5,6,7,8,9" and "budget" not in params
    index = httpx.post(f"{server.url}/v2/repository/index", headers=auth("alice")).json()
    assert index == [{"name": "mnist", "version": "1", "state": "READY"}]


def test_unknown_routes_and_methods_answer_json_errors(server: LiveServer) -> None:
    nowhere = httpx.get(f"{server.url}/v3/anything")
    assert nowhere.status_code == 404 and "error" in nowhere.json()
    wrong_method = httpx.get(f"{server.model_url}/infer", headers=auth("alice"))
    assert wrong_method.status_code == 405 and "error" in wrong_method.json()


def test_infer_answers_match_the_model_in_every_mode(
    server: LiveServer, images: np.ndarray, target_file: Path
) -> None:
    model, _ = models.load(target_file)
    probs = predict_proba(model, images)
    for key, mode in [("alice", "probs"), ("topk", "topk:3"), ("label", "label"), ("round", "round:1")]:
        response = _infer(server, key, images)
        assert response.status_code == 200, response.text
        doc = response.json()
        assert doc["model_name"] == "mnist" and doc["model_version"] == "1"
        expected = OutputMode.parse(mode).apply(probs)
        np.testing.assert_allclose(_probs(doc), expected, atol=1e-6)
        label = next(o for o in doc["outputs"] if o["name"] == "label")  # reveals no more than the mode
        assert label["datatype"] == "INT64" and label["data"] == expected.argmax(1).tolist()


def test_uint8_and_other_shapes(server: LiveServer, images: np.ndarray) -> None:
    pixels = np.round(images * 255).astype(np.uint8)
    body = {
        "inputs": [
            {
                "name": "images",
                "datatype": "UINT8",
                "shape": [25, 28, 28],
                "data": pixels.reshape(-1).tolist(),
            }
        ]
    }
    as_uint8 = httpx.post(f"{server.model_url}/infer", json=body, headers=auth("alice"))
    as_float = _infer(server, "alice", pixels.astype(np.float32) / 255)
    assert as_uint8.status_code == as_float.status_code == 200
    np.testing.assert_allclose(_probs(as_uint8.json()), _probs(as_float.json()), atol=1e-6)


def test_tritonclient_json_binary_and_classification(server: LiveServer, images: np.ndarray) -> None:
    triton = pytest.importorskip("tritonclient.http", reason="needs tritonclient[http] (the test extra)")

    client = triton.InferenceServerClient(url=f"127.0.0.1:{server.port}")
    try:
        assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("mnist")
        meta = client.get_model_metadata("mnist", headers=auth("alice"))
        assert meta["parameters"]["output_mode"] == "probs"
        results = {}
        for binary in (False, True):
            tensor = triton.InferInput("images", list(images.shape), "FP32")
            tensor.set_data_from_numpy(images, binary_data=binary)
            outputs = [
                triton.InferRequestedOutput("probabilities", binary_data=binary),
                triton.InferRequestedOutput("label", binary_data=binary),
            ]
            result = client.infer(
                "mnist", [tensor], outputs=outputs, request_id=f"triton-{binary}", headers=auth("alice")
            )
            assert result.get_response()["id"] == f"triton-{binary}"
            results[binary] = result.as_numpy("probabilities")
            assert result.as_numpy("label").tolist() == results[binary].argmax(1).tolist()
        np.testing.assert_array_equal(results[False], results[True])
        assert results[True].shape == (25, 10)

        pixels = np.round(images * 255).astype(np.uint8)
        tensor = triton.InferInput("images", list(pixels.shape), "UINT8")
        tensor.set_data_from_numpy(pixels, binary_data=True)
        for binary in (False, True):  # Triton's classification extension: top-k "value:index" strings
            top = client.infer(
                "mnist",
                [tensor],
                headers=auth("topk"),
                outputs=[triton.InferRequestedOutput("probabilities", binary_data=binary, class_count=3)],
            ).as_numpy("probabilities")
            assert top.shape == (25, 3)
            first = [s.decode() if isinstance(s, bytes) else s for s in top[0]]
            values = [float(s.split(":")[0]) for s in first]
            assert values == sorted(values, reverse=True) and all(
                0 <= int(s.split(":")[1]) < 10 for s in first
            )
        default = client.infer("mnist", [tensor], headers=auth("alice"))  # no outputs: all, binary
        assert default.as_numpy("probabilities").shape == (25, 10)
    finally:
        client.close()


# --- auth ---------------------------------------------------------------------------------------
def test_auth_refuses_missing_wrong_and_malformed_keys_without_logging_them(
    server: LiveServer, images: np.ndarray, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = f"{server.model_url}/infer"
    wrong_key = "wrong-secret-key-9999"
    cases = [
        ({}, "missing API key"),
        ({"Authorization": f"Bearer {wrong_key}"}, "invalid API key"),
        ({"Authorization": f"Basic {KEYS['alice']}"}, "malformed"),
        ({"Authorization": "Bearer"}, "malformed"),
    ]
    for headers, message in cases:
        response = httpx.post(url, json=infer_body(images[:1]), headers=headers)
        assert response.status_code == 401 and message in response.json()["error"]
        assert response.headers["www-authenticate"].startswith("Bearer")
        assert KEYS["alice"] not in response.text and wrong_key not in response.text
    assert _infer(server, "alice", images[:1]).status_code == 200
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "POST /v2/models/mnist/infer" in logged  # the access log ran ...
    for secret in [*KEYS.values(), wrong_key]:
        assert secret not in logged  # ... and never shows a key
    metrics = httpx.get(f"{server.url}/metrics", headers=auth("ops")).text
    assert all(secret not in metrics for secret in KEYS.values())


# --- budgets ------------------------------------------------------------------------------------
def test_budget_exhaustion_refuses_whole_requests(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    server = start_server()
    batch = np.concatenate([images, images, images])[:60]
    assert _infer(server, "small", batch).status_code == 200
    refused = _infer(server, "small", batch)
    assert refused.status_code == 402
    doc = refused.json()
    assert (
        "query budget exceeded" in doc["error"]
        and "40 left" in doc["error"]
        and "nothing was billed" in doc["error"]
    )
    assert (doc["budget"], doc["used"], doc["requested"]) == (100, 60, 60)
    assert _infer(server, "small", batch[:40]).status_code == 200
    assert _infer(server, "small", batch[:1]).status_code == 402
    assert server.used("small") == 100
    params = httpx.get(server.model_url, headers=auth("small")).json()["parameters"]
    assert (params["budget"], params["budget_used"], params["budget_left"]) == (100, 100, 0)


def test_sixteen_clients_racing_one_budget_get_exactly_the_budget(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    server = start_server()
    served: list[int] = []
    statuses: set[int] = set()
    lock = threading.Lock()

    def client(size: int) -> None:
        with httpx.Client(headers=auth("race"), timeout=30) as http:
            while True:
                response = http.post(f"{server.model_url}/infer", json=infer_body(images[:size]))
                with lock:
                    statuses.add(response.status_code)
                if response.status_code != 200:
                    return
                with lock:
                    served.append(size)

    threads = [threading.Thread(target=client, args=(1 + i % 4,)) for i in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert statuses == {200, 402}
    assert sum(served) == server.used("race") == 500  # size-1 clients drain the rest: exactly the budget


def test_restart_keeps_budget_usage(
    start_server: Callable[..., LiveServer], images: np.ndarray, tmp_path: Path
) -> None:
    state = tmp_path / "serve-state.sqlite"
    first = start_server(state=state)
    assert _infer(first, "small", np.concatenate([images, images])[:30]).status_code == 200
    assert _infer(first, "small", images[:5], request_id="before-restart").status_code == 200
    first.stop()
    second = start_server(state=state)
    assert httpx.get(second.model_url, headers=auth("small")).json()["parameters"]["budget_used"] == 35
    assert _infer(second, "small", np.concatenate([images] * 3)[:66]).status_code == 402
    replay = _infer(second, "small", images[:5], request_id="before-restart")  # remembered across restarts
    assert replay.status_code == 200 and second.used("small") == 35
    assert _infer(second, "small", np.concatenate([images] * 3)[:65]).status_code == 200
    assert second.used("small") == 100


def test_idempotent_replay_is_answered_from_the_record_and_not_billed(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    server = start_server()
    first = _infer(server, "small", images[:10], request_id="req-1")
    again = _infer(server, "small", images[:10], request_id="req-1")
    assert first.status_code == again.status_code == 200
    assert first.json() == again.json() and again.json()["id"] == "req-1"
    assert server.used("small") == 10
    conflict = _infer(server, "small", images[10:20], request_id="req-1")
    assert conflict.status_code == 409 and "already used for different images" in conflict.json()["error"]
    other_key = _infer(server, "alice", images[:10], request_id="req-1")  # ids are per key
    assert other_key.status_code == 200
    assert _infer(server, "small", images[:10]).status_code == 200  # no id: billed each time
    assert _infer(server, "small", images[:10]).status_code == 200
    assert server.used("small") == 30
    metrics = httpx.get(f"{server.url}/metrics", headers=auth("ops")).text
    assert 'activethief_images_replayed_total{key="small"} 10.0' in metrics


# --- rate limit ---------------------------------------------------------------------------------
def test_rate_limit_answers_429_with_retry_after(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    now = [1000.0]
    server = start_server(clock=lambda: now[0])
    assert _infer(server, "slow", images[:20]).status_code == 200  # a full bucket: 20 images
    limited = _infer(server, "slow", images[:10])
    assert limited.status_code == 429 and limited.headers["retry-after"] == "1"
    assert "rate limit of 20 images/s" in limited.json()["error"]
    now[0] += 0.5
    assert _infer(server, "slow", images[:10]).status_code == 200
    assert _infer(server, "slow", images[:21]).status_code == 413  # can never fit the bucket
    assert _infer(server, "alice", images).status_code == 200  # other keys are not limited
    assert server.used("slow") == 30


# --- limits and bad input -----------------------------------------------------------------------
def test_size_limits_answer_413(start_server: Callable[..., LiveServer], images: np.ndarray) -> None:
    server = start_server(max_batch=10, max_bytes=128 * 1024)
    too_many = _infer(server, "alice", images[:11])
    assert too_many.status_code == 413 and "at most 10" in too_many.json()["error"]
    big = json.dumps(infer_body(images)).encode()
    assert len(big) > 128 * 1024
    declared = httpx.post(f"{server.model_url}/infer", content=big, headers=auth("alice"))
    assert declared.status_code == 413 and "limit of 131072 bytes" in declared.json()["error"]

    def chunks() -> object:  # no Content-Length: the limit holds while streaming
        for start in range(0, len(big), 4096):
            yield big[start : start + 4096]

    streamed = httpx.post(f"{server.model_url}/infer", content=chunks(), headers=auth("alice"))  # type: ignore[arg-type]
    assert streamed.status_code == 413
    assert server.used("alice") == 0


@pytest.mark.parametrize(
    ("content", "headers", "status"),
    [
        (b"\xff\xfe not json", {}, 400),
        (b"{}", {}, 400),
        (b'{"inputs": []}', {}, 400),
        (b"{" * 50_000, {}, 400),
        (b'{"inputs": 1}', {"Inference-Header-Content-Length": "x"}, 400),
        (b'{"inputs": 1}', {"Inference-Header-Content-Length": "999"}, 400),
        (b'{"inputs": 1}', {"Content-Encoding": "gzip"}, 415),
    ],
)
def test_malformed_bodies_get_4xx(
    server: LiveServer, content: bytes, headers: dict[str, str], status: int
) -> None:
    response = httpx.post(f"{server.model_url}/infer", content=content, headers={**auth("alice"), **headers})
    assert response.status_code == status and response.json()["error"]


def test_metrics_count_requests_images_and_latency(
    start_server: Callable[..., LiveServer], images: np.ndarray
) -> None:
    server = start_server()
    assert _infer(server, "small", images[:7]).status_code == 200
    assert _infer(server, "small", np.concatenate([images] * 4)[:94]).status_code == 402
    assert httpx.post(f"{server.model_url}/infer", content=b"x", headers=auth("small")).status_code == 400
    assert httpx.post(f"{server.model_url}/infer", content=b"x").status_code == 401
    response = httpx.get(f"{server.url}/metrics", headers=auth("ops"))
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    text = response.text
    assert 'activethief_images_served_total{key="small"} 7.0' in text
    assert 'activethief_images_refused_total{key="small",reason="budget"} 94.0' in text
    assert 'activethief_requests_total{code="200",endpoint="infer",key="small"} 1.0' in text
    assert 'activethief_requests_total{code="402",endpoint="infer",key="small"} 1.0' in text
    assert 'activethief_requests_total{code="401",endpoint="infer",key="-"} 1.0' in text
    assert 'activethief_request_duration_seconds_count{endpoint="infer"} 4.0' in text
    assert 'activethief_budget_used_images{key="small"} 7.0' in text
    assert 'activethief_budget_images{key="small"} 100.0' in text
    for line in text.splitlines():  # every sample line: name{labels} value
        assert line.startswith("#") or (len(line.rsplit(" ", 1)) == 2 and float(line.rsplit(" ", 1)[1]) >= 0)
