"""`open_oracle`: one opener for every command, the same errors everywhere."""

from __future__ import annotations

import re
import zipfile
from pathlib import Path

import pytest
import torch
from torch import nn

from activethief import models
from activethief.errors import ConfigError, ModelError, OracleError
from activethief.oracle import ModelOracle, open_oracle
from activethief.oracle.open import check_normalise, parse_input_shape, parse_normalise, target_kind


def test_a_model_file_opens_as_a_model_oracle_the_user_owns(tmp_path: Path) -> None:
    models.save(models.build("mlp", 10, seed=0), tmp_path / "t.pt", arch="mlp", num_classes=10)
    oracle = open_oracle(str(tmp_path / "t.pt"), output_mode="label", budget=7)
    assert isinstance(oracle, ModelOracle) and oracle.free_evaluation
    assert (oracle.budget, str(oracle.mode)) == (7, "label")


def test_key_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError, match="only for HTTP targets"):
        open_oracle(str(tmp_path / "t.pt"), api_key_env="KEY")
    monkeypatch.delenv("ACTIVETHIEF_TEST_UNSET", raising=False)
    with pytest.raises(ConfigError, match="ACTIVETHIEF_TEST_UNSET: that environment variable is not set"):
        open_oracle("http://127.0.0.1:9/v2/models/m", api_key_env="ACTIVETHIEF_TEST_UNSET")


def test_http_settings_reach_the_http_oracle(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("httpx", reason="HTTP targets need the serve extra")
    from activethief.oracle import http

    seen: dict[str, object] = {}

    def fake(url: str, **kwargs: object) -> str:
        seen.update(url=url, **kwargs)
        return "oracle"

    monkeypatch.setattr(http, "HttpOracle", fake)
    monkeypatch.setenv("ACTIVETHIEF_TEST_KEY", "secret")
    url = "http://127.0.0.1:9/v2/models/m"
    assert open_oracle(url, budget=5, api_key_env="ACTIVETHIEF_TEST_KEY", retry_for=3.5) == "oracle"  # type: ignore[comparison-overlap]
    assert seen == {"url": url, "api_key": "secret", "budget": 5, "ledger": None, "retry_for": 3.5}
    seen.clear()
    open_oracle(url)
    assert "retry_for" not in seen and "input_shape" not in seen  # HttpOracle's own defaults
    open_oracle(url, input_shape=[3, 32, 32])
    assert seen["input_shape"] == (3, 32, 32)  # for a server that publishes no shape


class Tiny(nn.Module):
    """A small RGB 3x16x16 conv net (global pooling), logits out."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.relu(self.conv(x)).mean((2, 3)))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_files_open_with_the_adapter_their_contents_name(tmp_path: Path) -> None:
    from activethief.oracle.torchscript import TorchScriptOracle

    scripted = torch.jit.script(Tiny().eval())
    for name in ("t.pt", "t.pth", "t.ts", "no_suffix"):
        torch.jit.save(scripted, str(tmp_path / name))
        assert target_kind(str(tmp_path / name)) == "torchscript"
    oracle = open_oracle(
        str(tmp_path / "t.ts"), input_shape=(3, 16, 16), returns="logits", normalise="0.5:0.5", budget=3
    )
    assert isinstance(oracle, TorchScriptOracle) and oracle.budget == 3
    assert (oracle.backend.input_shape, oracle.num_classes, oracle.backend.returns) == (
        (3, 16, 16),
        3,
        "logits",
    )
    with pytest.raises(ConfigError, match="does not record its input shape"):
        open_oracle(str(tmp_path / "t.pt"))
    models.save(models.build("mlp", 10, seed=0), tmp_path / "a.pt", arch="mlp", num_classes=10)
    assert target_kind(str(tmp_path / "a.pt")) == "activethief"
    # A zip that names TorchScript's entries is read as TorchScript without anything in it being run.
    with zipfile.ZipFile(tmp_path / "fake.pt", "w") as archive:
        archive.writestr("fake/code/__torch__/m.py", "raise SystemExit")
        archive.writestr("fake/constants.pkl", b"\x80")
    assert target_kind(str(tmp_path / "fake.pt")) == "torchscript"
    with pytest.raises(ModelError, match="is not a TorchScript file"):
        open_oracle(str(tmp_path / "fake.pt"), input_shape=(3, 16, 16))


@pytest.mark.filterwarnings("ignore::DeprecationWarning", "ignore::UserWarning")
def test_an_onnx_file_opens_as_an_onnx_oracle(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime", reason="ONNX targets need the onnx extra")
    pytest.importorskip("onnx", reason="torch.onnx.export needs the onnx package")
    from activethief.oracle.onnx import OnnxOracle

    path = tmp_path / "t.onnx"
    example = (torch.zeros(2, 3, 16, 16),)
    torch.onnx.export(
        Tiny().eval(), example, str(path), dynamic_axes={"x": {0: "n"}}, input_names=["x"], dynamo=False
    )
    oracle = open_oracle(str(path), output_mode="topk:2", returns="logits")
    assert isinstance(oracle, OnnxOracle) and str(oracle.mode) == "topk:2"
    assert (oracle.backend.input_shape, oracle.num_classes) == ((3, 16, 16), 3)
    with pytest.raises(ConfigError, match=r"contradicts the model's input shape"):
        open_oracle(str(path), input_shape=(1, 16, 16))


def test_target_options_must_agree_with_an_activethief_model_file(tmp_path: Path) -> None:
    path = tmp_path / "t.pt"
    models.save(models.build("mlp", 10, seed=0), path, arch="mlp", num_classes=10)
    assert isinstance(open_oracle(str(path), input_shape=(1, 28, 28), returns="logits"), ModelOracle)
    with pytest.raises(ConfigError, match=r"for input shape \(1, 28, 28\); input_shape=\(3, 32, 32\)"):
        open_oracle(str(path), input_shape=(3, 32, 32))
    with pytest.raises(ConfigError, match="output logits; returns='probs' contradicts it"):
        open_oracle(str(path), returns="probs")
    with pytest.raises(ConfigError, match="leave --normalise out"):
        open_oracle(str(path), normalise="imagenet")
    with pytest.raises(ConfigError, match="only for TorchScript and ONNX files"):
        open_oracle("http://127.0.0.1:9/v2/models/m", returns="logits")


def test_files_that_are_no_model_say_what_a_target_can_be(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(ModelError, match=r"not a readable model file.*TorchScript file.*ONNX file"):
        open_oracle(str(tmp_path / "notes.txt"))
    with pytest.raises(ModelError, match="does not exist"):
        open_oracle(str(tmp_path / "missing.pt"))


def test_parse_input_shape() -> None:
    assert parse_input_shape("3,32,32") == (3, 32, 32)
    assert parse_input_shape("1x28x28") == (1, 28, 28)
    for bad in ("3,32", "3,32,32,1", "a,b,c", "4,32,32", "3,0,32", ""):
        with pytest.raises((ConfigError, OracleError), match="input-shape"):
            parse_input_shape(bad)


def test_parse_normalise() -> None:
    assert parse_normalise("0.5,0.5,0.5:0.25,0.25,0.25") == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    assert parse_normalise("0.5:0.25") == ((0.5,), (0.25,))
    assert parse_normalise("ImageNet") == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for bad in ("0.5,0.5", "0.5:x", "1:2:3", "cifar"):
        with pytest.raises(ConfigError, match=re.escape("MEAN,...:STD,...")):
            parse_normalise(bad)
    checked = check_normalise("0.1,0.2,0.3:1,2,4", 3)
    assert checked is not None
    assert checked.mean.shape == checked.std.shape == (1, 3, 1, 1) and checked.std.ravel().tolist() == [
        1,
        2,
        4,
    ]
