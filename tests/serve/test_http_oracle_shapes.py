"""HttpOracle and the model's input shape: read from the OIP metadata at open time (name, shape,
datatype), requests sent in that shape, and clear errors for a shape it cannot use. (Queries through the
Oracle, whose image check uses the backend's shape, are in test_steal_rgb_over_http.py.)"""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from serve_helpers import KEYS, LiveServer
from shape_helpers import RGB, RGB_CLASSES, rgb_images, rgb_service

from activethief.errors import OracleError
from activethief.oracle.http import HttpOracle
from activethief.training import predict_proba

URL = "http://far.example/v2/models/m"


@pytest.fixture(scope="module")
def rgb_server(keys_file: Path) -> Iterator[LiveServer]:
    live = LiveServer(rgb_service(keys_file, max_batch=8))
    yield live
    live.stop()


def test_reads_the_rgb_shape_and_answers_like_the_model_in_binary_and_json(rgb_server: LiveServer) -> None:
    model = rgb_server.service.model
    x = rgb_images(20)
    before = rgb_server.used("alice")
    for binary in (True, False):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # the server publishes its shape: no fallback warning
            oracle = HttpOracle(rgb_server.model_url, api_key=KEYS["alice"], binary=binary)
        assert oracle.backend.input_shape == RGB and oracle.backend.input_datatype == "FP32"
        assert oracle.num_classes == RGB_CLASSES and oracle.backend.request_size == 8
        answers = oracle.backend.answer(x, f"rgb-{binary}")  # three requests of at most 8 images
        np.testing.assert_allclose(answers, predict_proba(model, x), atol=1e-6)
        oracle.close()
    assert rgb_server.used("alice") == before + 40
    agreeing = HttpOracle(rgb_server.model_url, api_key=KEYS["alice"], input_shape=(3, 16, 16))
    assert agreeing.backend.input_shape == RGB
    agreeing.close()


def test_wrong_shapes_are_refused_on_the_client_before_anything_is_sent(rgb_server: LiveServer) -> None:
    before = rgb_server.used("alice")
    oracle = HttpOracle(rgb_server.model_url, api_key=KEYS["alice"])
    for bad in (rgb_images(2, (1, 28, 28)), rgb_images(2, (3, 16, 17)), rgb_images(2)[:, 0]):
        with pytest.raises(OracleError, match=r"do not fit this model's input \[n, 3, 16, 16\]"):
            oracle.backend.answer(bad, "wrong-shape")
    assert rgb_server.used("alice") == before
    oracle.close()
    with pytest.raises(
        OracleError, match=r"takes images of shape \[3, 16, 16\], not input_shape \[1, 28, 28\]"
    ):
        HttpOracle(rgb_server.model_url, api_key=KEYS["alice"], input_shape=(1, 28, 28))


class Scripted(httpx.MockTransport):
    """A far server with the given input metadata, answering every infer request with probabilities
    0.2/0.3/0.5; it keeps the infer requests it got."""

    def __init__(self, inputs: Any = None) -> None:
        self.requests: list[tuple[dict[str, Any], bytes]] = []
        self.metadata: dict[str, Any] = {
            "name": "m",
            "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [-1, 3]}],
        }
        if inputs is not None:
            self.metadata["inputs"] = inputs
        super().__init__(self.handle)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if not request.url.path.endswith("/infer"):
            return httpx.Response(200, json=self.metadata)
        body = request.read()
        length = int(request.headers.get("inference-header-content-length", len(body)))
        doc = json.loads(body[:length])
        self.requests.append((doc, body[length:]))
        count = doc["inputs"][0]["shape"][0]
        data = [0.2, 0.3, 0.5] * count
        return httpx.Response(
            200,
            json={
                "outputs": [{"name": "probabilities", "datatype": "FP32", "shape": [count, 3], "data": data}]
            },
        )


def test_sends_the_published_input_name_shape_and_datatype() -> None:
    fp32 = Scripted([{"name": "input__0", "datatype": "FP32", "shape": [-1, 3, 8, 12]}])
    oracle = HttpOracle(URL, transport=fp32)
    x = rgb_images(2, (3, 8, 12))
    np.testing.assert_allclose(oracle.backend.answer(x, "a"), [[0.2, 0.3, 0.5]] * 2)
    tensor = fp32.requests[0][0]["inputs"][0]
    assert tensor == {
        "name": "input__0",
        "datatype": "FP32",
        "shape": [2, 3, 8, 12],
        "parameters": {"binary_data_size": 2 * 3 * 8 * 12 * 4},
    }
    np.testing.assert_array_equal(np.frombuffer(fp32.requests[0][1], "<f4").reshape(x.shape), x)

    uint8 = Scripted([{"name": "pixels", "datatype": "UINT8", "shape": [-1, 1, 10, 10]}])
    gray = np.linspace(0, 1, 200, dtype=np.float32).reshape(2, 1, 10, 10)
    for binary in (True, False):
        HttpOracle(URL, transport=uint8, binary=binary).backend.answer(gray, "b")
    sent_binary, sent_json = uint8.requests
    expected = np.rint(gray.reshape(-1) * 255).astype(np.uint8)
    assert sent_binary[0]["inputs"][0]["datatype"] == "UINT8"
    np.testing.assert_array_equal(np.frombuffer(sent_binary[1], np.uint8), expected)
    assert sent_json[0]["inputs"][0]["data"] == expected.tolist()

    several = Scripted([{"name": "mask", "shape": [-1, 4]}, {"name": "images", "shape": [-1, 1, 28, 28]}])
    assert HttpOracle(URL, transport=several).backend.input_name == "images"


@pytest.mark.parametrize(
    ("inputs", "message"),
    [
        (
            [{"name": "x", "datatype": "FP32", "shape": [-1, 784]}],
            r"of shape \[-1, 784\]; activethief needs \[-1, C, H, W\]",
        ),
        (
            [{"name": "x", "datatype": "FP32", "shape": [4, 3, 16, 16]}],
            r"\[4, 3, 16, 16\]; activethief needs",
        ),
        ([{"name": "x", "datatype": "FP32", "shape": [-1, 2, 16, 16]}], "C = 1 or 3 channels"),
        ([{"name": "x", "datatype": "FP32", "shape": [-1, 3, 4, 4]}], "H and W at least 8"),
        ([{"name": "x", "datatype": "FP32", "shape": "[-1, 3, 16, 16]"}], "activethief needs"),
        ([{"name": "x", "datatype": "BYTES", "shape": [-1, 3, 16, 16]}], r"as 'BYTES'; activethief sends"),
        (
            [{"name": "a", "shape": [-1, 3, 8, 8]}, {"name": "b", "shape": [-1, 3, 8, 8]}],
            r"takes 2 inputs \['a', 'b'\]",
        ),
        ([{"datatype": "FP32", "shape": [-1, 3, 16, 16]}], "an input without a name"),
        ({"name": "x"}, "is not a list of tensors"),
    ],
)
def test_unusable_input_metadata_is_a_clear_error(inputs: Any, message: str) -> None:
    with pytest.raises(OracleError, match=message):
        HttpOracle(URL, transport=Scripted(inputs))


def test_a_server_without_a_published_shape_means_mnist_with_a_warning_unless_told() -> None:
    with pytest.warns(UserWarning, match=r"does not publish its input shape; assuming 1x28x28"):
        fallback = HttpOracle(URL, transport=Scripted())
    assert fallback.backend.input_shape == (1, 28, 28)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        told = HttpOracle(
            URL, transport=Scripted([{"name": "x", "datatype": "FP32"}]), input_shape=(3, 16, 16)
        )
    assert told.backend.input_shape == (3, 16, 16) and told.backend.input_name == "x"
    with pytest.raises(OracleError, match=r"input_shape \(2, 16, 16\) is not \(C, H, W\)"):
        HttpOracle(URL, transport=Scripted(), input_shape=(2, 16, 16))
