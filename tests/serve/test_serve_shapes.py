"""The service for a model of any input shape: the protocol accepts exactly the model's shape (and the
grayscale shorthands), the metadata publishes it, and a model that cannot take its declared shape is
refused at start; keys, budgets and idempotent ids work as for 28x28."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import LiveServer, auth, infer_body
from shape_helpers import RGB, RGB_CLASSES, rgb_images, rgb_service, tiny_rgb_model

from activethief import models
from activethief.errors import ConfigError
from activethief.serve.app import build_service
from activethief.serve.protocol import (
    ProtocolError,
    accepted_shapes,
    describe_shapes,
    input_shape_of,
    parse_infer_request,
)
from activethief.training import predict_proba


def _body(images: np.ndarray, shape: list[int] | None = None, datatype: str = "FP32") -> bytes:
    tensor = {
        "name": "images",
        "datatype": datatype,
        "shape": shape or list(images.shape),
        "data": images.reshape(-1).tolist(),
    }
    return json.dumps({"inputs": [tensor]}).encode()


def _parse(body: bytes, shape: tuple[int, int, int] = RGB, header_length: str | None = None) -> np.ndarray:
    request = parse_infer_request(
        body, max_images=16, num_classes=RGB_CLASSES, input_shape=shape, header_length=header_length
    )
    return request.images


def test_shapes_accepted_per_model_and_described_in_errors() -> None:
    assert accepted_shapes((3, 16, 16)) == [(3, 16, 16)]
    assert accepted_shapes((1, 20, 24)) == [(1, 20, 24), (20, 24), (480,)]
    assert describe_shapes((3, 32, 32)) == "[n, 3, 32, 32]"
    assert describe_shapes((1, 28, 28)) == "[n, 1, 28, 28], [n, 28, 28] or [n, 784]"
    assert input_shape_of([3, 224, 224]) == (3, 224, 224) and input_shape_of((1, 8, 8)) == (1, 8, 8)
    for bad in ([2, 16, 16], [3, 7, 16], [3, 16], [3.0, 16, 16], "3,16,16", None, [True, 16, 16]):
        assert input_shape_of(bad) is None


def test_an_rgb_request_is_parsed_in_json_binary_and_uint8() -> None:
    x = rgb_images(3)
    np.testing.assert_array_equal(_parse(_body(x)), x)
    raw = x.astype("<f4").tobytes()
    tensor = {
        "name": "images",
        "datatype": "FP32",
        "shape": [3, *RGB],
        "parameters": {"binary_data_size": len(raw)},
    }
    header = json.dumps({"inputs": [tensor]}).encode()
    binary = _parse(header + raw, header_length=str(len(header)))
    np.testing.assert_array_equal(binary, x)
    pixels = np.random.default_rng(1).integers(0, 256, (2, *RGB))
    uint8 = _parse(_body(pixels, datatype="UINT8"))
    assert uint8.shape == (2, *RGB) and uint8.dtype == np.float32
    np.testing.assert_allclose(uint8, pixels / 255.0, rtol=1e-6)
    # Row-major order: the channel planes arrive where they were sent.
    assert np.array_equal(_parse(_body(x))[:, 2], x[:, 2])


@pytest.mark.parametrize("shape", [[2, 16, 16], [2, 768], [2, 1, 16, 16], [2, 3, 16, 17], [2, 1, 28, 28]])
def test_an_rgb_model_refuses_other_shapes_naming_its_own(shape: list[int]) -> None:
    x = np.zeros(int(np.prod(shape)), np.float32)
    with pytest.raises(ProtocolError, match=r"takes 3x16x16 images; use \[n, 3, 16, 16\]") as caught:
        _parse(_body(x, shape=shape))
    assert caught.value.status == 400 and str(shape) in caught.value.message


def test_a_grayscale_model_of_another_size_takes_its_three_shapes_and_not_mnists() -> None:
    gray = (1, 20, 24)
    x = rgb_images(2, gray)
    for shape in ([2, 1, 20, 24], [2, 20, 24], [2, 480]):
        np.testing.assert_array_equal(_parse(_body(x, shape=shape), gray), x)
    with pytest.raises(ProtocolError, match=r"use \[n, 1, 20, 24\], \[n, 20, 24\] or \[n, 480\]"):
        _parse(_body(np.zeros(2 * 784, np.float32), shape=[2, 1, 28, 28]), gray)
    with pytest.raises(ProtocolError, match="has 479 values; its shape needs 480"):
        _parse(_body(np.zeros(479, np.float32), shape=[1, 480]), gray)


def test_the_default_shape_is_still_mnists() -> None:
    x = rgb_images(2, (1, 28, 28))
    request = parse_infer_request(_body(x, shape=[2, 784]), max_images=4, num_classes=10)
    np.testing.assert_array_equal(request.images, x)
    with pytest.raises(ProtocolError, match=r"use \[n, 1, 28, 28\], \[n, 28, 28\] or \[n, 784\]"):
        parse_infer_request(_body(rgb_images(1)), max_images=4, num_classes=10)


def test_the_service_publishes_the_real_shape_and_checks_the_model_takes_it(keys_file: Path) -> None:
    service = rgb_service(keys_file)
    assert service.input_shape == RGB
    policy = service.authenticate(f"Bearer {_secret('alice')}")
    meta = service.model_metadata(policy)
    assert meta["inputs"] == [{"name": "images", "datatype": "FP32", "shape": [-1, 3, 16, 16]}]
    assert meta["outputs"][0]["shape"] == [-1, RGB_CLASSES]
    assert meta["parameters"]["input_datatypes"] == "FP32,UINT8"
    service.store.close()
    # Global pooling: the same net serves 32x32 if the metadata says so.
    assert rgb_service(keys_file, input_shape=(3, 32, 32)).input_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match=r"fails on one image of its declared input shape \[1, 16, 16\]"):
        rgb_service(keys_file, input_shape=(1, 16, 16))  # an RGB net declared grayscale
    with pytest.raises(ConfigError, match=r"input_shape \[2, 16, 16\] cannot be served"):
        rgb_service(keys_file, input_shape=(2, 16, 16))
    with pytest.raises(ConfigError, match=r"answers \[1, 7\] .* expected logits \[1, 5\]"):
        rgb_service(keys_file, model=tiny_rgb_model(num_classes=7))


def _secret(name: str) -> str:
    return auth(name)["Authorization"].removeprefix("Bearer ")


@pytest.fixture(scope="module")
def rgb_server(keys_file: Path) -> Iterator[LiveServer]:
    live = LiveServer(rgb_service(keys_file, max_batch=32))
    yield live
    live.stop()


def test_an_rgb_model_over_http_answers_bills_and_refuses_like_mnists(rgb_server: LiveServer) -> None:
    url, model = rgb_server.model_url, rgb_server.service.model
    meta = httpx.get(url, headers=auth("alice")).json()
    assert meta["inputs"][0]["shape"] == [-1, 3, 16, 16]
    x = rgb_images(6)
    answer = httpx.post(f"{url}/infer", json=infer_body(x, "rgb-1"), headers=auth("small"))
    assert answer.status_code == 200, answer.text
    probs = np.asarray(answer.json()["outputs"][0]["data"], np.float32).reshape(6, RGB_CLASSES)
    np.testing.assert_allclose(probs, predict_proba(model, x), atol=1e-6)
    replay = httpx.post(f"{url}/infer", json=infer_body(x, "rgb-1"), headers=auth("small"))
    assert replay.status_code == 200 and replay.json() == answer.json()
    assert rgb_server.used("small") == 6  # the replayed id is free
    other = httpx.post(f"{url}/infer", json=infer_body(rgb_images(6, seed=1), "rgb-1"), headers=auth("small"))
    assert other.status_code == 409

    gray = httpx.post(f"{url}/infer", json=infer_body(rgb_images(2, (1, 28, 28))), headers=auth("small"))
    assert gray.status_code == 400 and "use [n, 3, 16, 16]" in gray.json()["error"]
    too_many = httpx.post(f"{url}/infer", json=infer_body(rgb_images(95)), headers=auth("small"))
    assert too_many.status_code == 413  # over max_batch=32, refused before any budget check
    for start in range(6, 96, 30):
        ok = httpx.post(f"{url}/infer", json=infer_body(rgb_images(30, seed=start)), headers=auth("small"))
        assert ok.status_code == 200
    over = httpx.post(f"{url}/infer", json=infer_body(rgb_images(5)), headers=auth("small"))
    assert over.status_code == 402 and over.json()["used"] == 96
    assert rgb_server.used("small") == 96
    text = httpx.get(f"{rgb_server.url}/metrics", headers=auth("ops")).text
    assert 'activethief_images_served_total{key="small"} 96.0' in text
    assert 'activethief_images_refused_total{key="small",reason="invalid"}' in text


def test_a_saved_rgb_model_file_is_served_in_the_shape_it_records(keys_file: Path, tmp_path: Path) -> None:
    model = models.build("cnn2", RGB_CLASSES, input_shape=(3, 24, 20), seed=0)
    path = tmp_path / "rgb.pt"
    models.save(model, path, arch="cnn2", num_classes=RGB_CLASSES, dataset="rgb")
    service = build_service(path, keys_file)
    assert service.input_shape == (3, 24, 20)
    policy = service.authenticate(f"Bearer {_secret('alice')}")
    assert service.model_metadata(policy)["inputs"][0]["shape"] == [-1, 3, 24, 20]
    x = rgb_images(3, (3, 24, 20))
    encoded = service.infer(policy, _body(x))
    probs = np.asarray(json.loads(encoded.body)["outputs"][0]["data"], np.float32).reshape(3, RGB_CLASSES)
    np.testing.assert_allclose(probs, predict_proba(model, x), atol=1e-6)
    service.store.close()
    # A module built for a shape carries it: no metadata needed beyond the classes.
    module = build_service(model, keys_file, metadata={"num_classes": RGB_CLASSES})
    assert module.input_shape == (3, 24, 20)
    module.store.close()
    # An explicit metadata shape wins, and is checked against the model.
    with pytest.raises(ConfigError, match=r"fails on one image of its declared input shape \[1, 24, 20\]"):
        build_service(path, keys_file, metadata={"input_shape": [1, 24, 20]})
