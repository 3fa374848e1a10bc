"""ONNX targets: input name, shape, layout and dtype read from the model; softmax once; clear errors."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activethief import BudgetExceededError
from activethief.errors import ConfigError, ModelError, OracleError

pytest.importorskip("onnxruntime", reason="ONNX targets need the onnx extra")
pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")

from activethief.oracle.onnx import OnnxBackend, OnnxOracle, read_layout

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")


class TinyNet(nn.Module):
    """A small conv net for [n, C, H, W] images with global pooling, so any H, W works."""

    def __init__(self, channels: int = 3, classes: int = 5, *, softmax: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 6, 3, padding=1)
        self.fc = nn.Linear(6, classes)
        self.softmax = softmax
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.7)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.fc(torch.relu(self.conv(x)).mean((2, 3)))
        return torch.softmax(out, 1) if self.softmax else out


class ChannelsLast(nn.Module):
    """Takes [n, H, W, C]."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.permute(0, 3, 1, 2))


class Pixels(nn.Module):
    """Takes uint8 (or float16) pixels and scales them to what `net` was made for."""

    def __init__(self, net: nn.Module, scale: float) -> None:
        super().__init__()
        self.net, self.scale = net, scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.float() / self.scale)


def export(
    module: nn.Module,
    path: Path,
    example: torch.Tensor,
    dynamic: dict[int, str] | None = None,
) -> Path:
    torch.onnx.export(
        module.eval(),
        (example,),
        str(path),
        input_names=["pixels"],
        output_names=["scores"],
        dynamic_axes=None if dynamic is None else {"pixels": dynamic},
        dynamo=False,  # the dynamo exporter needs onnxscript, which the extra does not install
    )
    return path


def softmax_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), 1).numpy()


def images(n: int, shape: tuple[int, int, int] = (3, 16, 16), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


@pytest.fixture()
def net() -> nn.Module:
    return TinyNet().eval()


def test_an_nchw_model_answers_softmax_of_its_logits(tmp_path: Path, net: nn.Module) -> None:
    path = export(net, tmp_path / "t.onnx", torch.zeros(2, 3, 16, 16), {0: "n"})
    backend = OnnxBackend(path, batch_size=8)
    assert (backend.input_name, backend.layout, backend.input_shape) == ("pixels", "NCHW", (3, 16, 16))
    assert (backend.num_classes, backend.returns, backend.fixed_batch) == (5, "logits", None)
    assert backend.owned and backend.remote_mode is None
    x = images(19)
    probs = backend.answer(x, "r")
    assert probs.dtype == np.float32
    np.testing.assert_allclose(probs, softmax_of(net, x), atol=1e-5)
    with pytest.raises(OracleError, match=r"takes images of shape \[n, 3, 16, 16\]; got \[2, 1, 16, 16\]"):
        backend.answer(images(2, (1, 16, 16)), "r")


def test_nhwc_uint8_float16_and_fixed_batch_inputs(tmp_path: Path, net: nn.Module) -> None:
    x = images(7)
    expected = softmax_of(net, x)
    nhwc = OnnxBackend(export(ChannelsLast(net), tmp_path / "nhwc.onnx", torch.zeros(2, 16, 16, 3), {0: "n"}))
    assert (nhwc.layout, nhwc.input_shape) == ("NHWC", (3, 16, 16))
    np.testing.assert_allclose(nhwc.answer(x, "r"), expected, atol=1e-5)

    as_uint8 = torch.zeros(2, 3, 16, 16, dtype=torch.uint8)
    byte = OnnxBackend(export(Pixels(net, 255.0), tmp_path / "u8.onnx", as_uint8, {0: "n"}))
    assert byte.input_dtype == np.uint8
    quantised = (np.round(x * 255) / 255).astype(np.float32)  # what a uint8 model can see of x
    np.testing.assert_allclose(byte.answer(x, "r"), softmax_of(net, quantised), atol=1e-5)
    with pytest.raises(ConfigError, match=r"takes uint8 pixels .* leave normalise"):
        OnnxBackend(tmp_path / "u8.onnx", normalise="imagenet")

    as_half = torch.zeros(2, 3, 16, 16, dtype=torch.float16)
    half = OnnxBackend(export(Pixels(net, 1.0), tmp_path / "f16.onnx", as_half, {0: "n"}))
    assert half.input_dtype == np.float16
    np.testing.assert_allclose(half.answer(x, "r"), expected, atol=2e-3)  # float16 inputs: ~3 digits

    fixed = OnnxBackend(export(net, tmp_path / "b3.onnx", torch.zeros(3, 3, 16, 16)))  # batch fixed at 3
    assert fixed.fixed_batch == 3
    np.testing.assert_allclose(fixed.answer(x, "r"), expected, atol=1e-5)  # 7 = 3 + 3 + 1 padded


def test_dynamic_spatial_dims_need_an_input_shape(tmp_path: Path, net: nn.Module) -> None:
    path = export(net, tmp_path / "d.onnx", torch.zeros(2, 3, 16, 16), {0: "n", 2: "h", 3: "w"})
    with pytest.raises(ConfigError, match="dynamic channel or spatial dimensions; pass input_shape"):
        OnnxBackend(path)
    backend = OnnxBackend(path, input_shape=(3, 24, 20))
    x = images(3, (3, 24, 20))
    np.testing.assert_allclose(backend.answer(x, "r"), softmax_of(net, x), atol=1e-5)
    static = export(net, tmp_path / "s.onnx", torch.zeros(2, 3, 16, 16), {0: "n"})
    with pytest.raises(ConfigError, match=r"contradicts the model's input shape \['n', 3, 16, 16\]"):
        OnnxBackend(static, input_shape=(3, 32, 32))


def test_layouts_read_from_input_shapes() -> None:
    assert read_layout(["n", 3, 32, 32], None, "m") == ("NCHW", (3, 32, 32), None)
    assert read_layout([1, 32, 32, 3], None, "m") == ("NHWC", (3, 32, 32), 1)
    assert read_layout(["n", 1, 28, 28], None, "m")[:2] == ("NCHW", (1, 28, 28))
    assert read_layout(["n", "h", "w", 3], (3, 40, 40), "m")[:2] == ("NHWC", (3, 40, 40))
    assert read_layout(["n", 3, 3, 3], None, "m")[0] == "NCHW"  # dimension 1 wins a tie
    with pytest.raises(ConfigError, match="cannot tell the channel axis"):
        read_layout(["n", 32, 32, 4], None, "m")
    with pytest.raises(ModelError, match="takes \\[N, C, H, W\\]"):
        read_layout(["n", 784], None, "m")


def test_probabilities_are_never_softmaxed_twice(tmp_path: Path) -> None:
    model = TinyNet(softmax=True).eval()
    path = export(model, tmp_path / "p.onnx", torch.zeros(2, 3, 16, 16), {0: "n"})
    backend = OnnxBackend(path)
    assert backend.returns == "probs"
    x = images(4)
    with torch.no_grad():
        np.testing.assert_allclose(backend.answer(x, "r"), model(torch.from_numpy(x)).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match=r"returns='logits' but .* are probabilities"):
        OnnxBackend(path, returns="logits")


def test_normalisation_is_applied_once_inside_the_backend(tmp_path: Path, net: nn.Module) -> None:
    path = export(net, tmp_path / "t.onnx", torch.zeros(2, 3, 16, 16), {0: "n"})
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    backend = OnnxBackend(path, normalise="imagenet")
    x = images(5)
    m, s = np.array(mean, np.float32)[:, None, None], np.array(std, np.float32)[:, None, None]
    expected = softmax_of(net, (x - m) / s)
    np.testing.assert_allclose(backend.answer(x, "r"), expected, atol=1e-5)
    assert not np.allclose(expected, softmax_of(net, x), atol=1e-3)


def test_bad_files_and_a_missing_onnxruntime_are_clear(
    tmp_path: Path, net: nn.Module, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "notes.onnx").write_text("not a model")
    with pytest.raises(ModelError, match="is not a readable ONNX model"):
        OnnxBackend(tmp_path / "notes.onnx")
    with pytest.raises(ModelError, match="does not exist"):
        OnnxBackend(tmp_path / "missing.onnx")
    pooled = export(nn.AdaptiveAvgPool2d(1), tmp_path / "pool.onnx", torch.zeros(2, 3, 16, 16), {0: "n"})
    with pytest.raises(ModelError, match=r"has shape \[2, 3, 1, 1\] for 2 images; a classifier must output"):
        OnnxBackend(pooled)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match=r"pip install 'activethief\[onnx\]'"):
        OnnxBackend(tmp_path / "notes.onnx")


def test_every_answer_is_counted_by_the_oracle(tmp_path: Path) -> None:
    model = TinyNet(1, 4).eval()
    path = export(model, tmp_path / "g.onnx", torch.zeros(2, 1, 28, 28), {0: "n"})
    oracle = OnnxOracle(path, budget=5, ledger=tmp_path / "ledger.sqlite")
    pool = images(9, (1, 28, 28))
    answers = oracle.query(pool[:5], keys=np.arange(5))
    np.testing.assert_allclose(answers, softmax_of(model, pool[:5]), atol=1e-5)
    assert (oracle.used, len(oracle.ledger), oracle.remaining) == (5, 5, 0)
    np.testing.assert_array_equal(oracle.query(pool[2:5], keys=np.arange(2, 5)), answers[2:5])  # free
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[5:6], keys=np.array([5]))
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[5:6])  # unkeyed queries are charged too
    assert oracle.free_evaluation
    assert OnnxOracle(path, owned=False).evaluate(pool[:2]) is None
    oracle.close()


def test_rgb_images_go_through_the_oracle_in_the_targets_shape(tmp_path: Path, net: nn.Module) -> None:
    path = export(ChannelsLast(net), tmp_path / "nhwc.onnx", torch.zeros(2, 16, 16, 3), {0: "n"})
    oracle = OnnxOracle(path, budget=6, mode="label")
    assert oracle.input_shape == (3, 16, 16)
    pool = images(10)
    answers = oracle.query(pool[:6], keys=np.arange(6))
    assert np.array_equal(answers.argmax(1), softmax_of(net, pool[:6]).argmax(1))
    assert (oracle.used, len(oracle.ledger)) == (6, 6)
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[6:7], keys=np.array([6]))
    with pytest.raises(OracleError, match=r"\[n, 3, 16, 16\].*got shape \[2, 16, 16, 3\]"):
        oracle.query(pool[:2].transpose(0, 2, 3, 1))  # the pool stays NCHW; the adapter transposes
    oracle.close()
