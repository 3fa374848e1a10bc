"""TorchScript targets: shape from the file or the caller, softmax once, normalisation inside."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activethief import BudgetExceededError, models
from activethief.errors import ConfigError, ModelError, OracleError
from activethief.oracle.torchscript import TorchScriptBackend, TorchScriptOracle

# Saving and tracing TorchScript is deprecated in torch 2.13; users still ship such files.
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


class TinyNet(nn.Module):
    """A small conv net for [n, C, H, W] images; `softmax=True` makes it output probabilities."""

    def __init__(self, channels: int = 3, size: int = 16, classes: int = 5, *, softmax: bool = False) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, 4, 3, padding=1)
        self.fc = nn.Linear(4 * (size // 2) ** 2, classes)
        self.softmax = softmax
        self.input_shape = [channels, size, size]  # kept by torch.jit.script: the file records it
        generator = torch.Generator().manual_seed(0)
        with torch.no_grad():
            for p in self.parameters():
                p.copy_(torch.randn(p.shape, generator=generator) * 0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.max_pool2d(torch.relu(self.conv(x)), 2)
        out = self.fc(h.flatten(1))
        return torch.softmax(out, 1) if self.softmax else out


def softmax_of(model: nn.Module, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return torch.softmax(model(torch.from_numpy(x)), 1).numpy()


def save_scripted(model: nn.Module, path: Path, shape: str | None = "[3, 16, 16]") -> Path:
    extra = {} if shape is None else {"input_shape.json": shape}
    torch.jit.save(torch.jit.script(model), str(path), _extra_files=extra)
    return path


def images(n: int, shape: tuple[int, int, int] = (3, 16, 16), seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).random((n, *shape), dtype=np.float32)


def test_a_scripted_file_records_its_shape_and_answers_softmax_of_its_logits(tmp_path: Path) -> None:
    model = TinyNet().eval()
    backend = TorchScriptBackend(save_scripted(model, tmp_path / "t.pt"), batch_size=7)
    assert (backend.input_shape, backend.num_classes, backend.returns) == ((3, 16, 16), 5, "logits")
    assert backend.owned and backend.remote_mode is None
    x = images(20)
    probs = backend.answer(x, "r")
    assert probs.dtype == np.float32 and probs.shape == (20, 5)
    np.testing.assert_allclose(probs, softmax_of(model, x), atol=1e-5)
    assert backend.answer(x[:0], "r").shape == (0, 5)


def test_the_shape_comes_from_the_module_attribute_or_the_caller(tmp_path: Path) -> None:
    model = TinyNet(1, 12, 3).eval()
    assert TorchScriptBackend(save_scripted(model, tmp_path / "a.ts", None)).input_shape == (1, 12, 12)
    traced = tmp_path / "traced.pt"  # tracing keeps no attributes: the file says nothing of its shape
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 1, 12, 12)), str(traced))
    with pytest.raises(ConfigError, match="does not record its input shape; pass input_shape"):
        TorchScriptBackend(traced)
    backend = TorchScriptBackend(traced, input_shape=(1, 12, 12))
    x = images(4, (1, 12, 12))
    np.testing.assert_allclose(backend.answer(x, "r"), softmax_of(model, x), atol=1e-5)
    with pytest.raises(ConfigError, match=r"records input shape \(1, 12, 12\); input_shape=\(3, 12, 12\)"):
        TorchScriptBackend(tmp_path / "a.ts", input_shape=(3, 12, 12))
    with pytest.raises(OracleError, match=r"takes images of shape \[n, 1, 12, 12\]; got \[2, 1, 13, 13\]"):
        backend.answer(images(2, (1, 13, 13)), "r")


def test_a_wrong_input_shape_fails_at_open_time_on_the_probe(tmp_path: Path) -> None:
    path = tmp_path / "traced.pt"
    torch.jit.save(torch.jit.trace(TinyNet().eval(), torch.zeros(1, 3, 16, 16)), str(path))
    with pytest.raises(ConfigError, match=r"failed on a probe batch of shape \[2, 3, 20, 20\]"):
        TorchScriptBackend(path, input_shape=(3, 20, 20))
    with pytest.raises(OracleError, match="input_shape must be"):
        TorchScriptBackend(path, input_shape=(4, 16, 16))


def test_probabilities_are_never_softmaxed_twice(tmp_path: Path) -> None:
    model = TinyNet(softmax=True).eval()
    path = save_scripted(model, tmp_path / "p.pt")
    backend = TorchScriptBackend(path)  # read from the model: its outputs are distributions
    assert backend.returns == "probs"
    x = images(6)
    with torch.no_grad():
        np.testing.assert_allclose(backend.answer(x, "r"), model(torch.from_numpy(x)).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match=r"returns='logits' but .* are probabilities"):
        TorchScriptBackend(path, returns="logits")
    logits_file = save_scripted(TinyNet().eval(), tmp_path / "l.pt")
    with pytest.raises(ConfigError, match=r"returns='probs' but .* are not probabilities"):
        TorchScriptBackend(logits_file, returns="probs")
    with pytest.raises(OracleError, match="returns must be 'logits' or 'probs'"):
        TorchScriptBackend(logits_file, returns="scores")
    assert TorchScriptBackend(logits_file, returns="logits").returns == "logits"


def test_normalisation_is_applied_once_inside_the_backend(tmp_path: Path) -> None:
    model = TinyNet().eval()
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.2, 0.1)
    backend = TorchScriptBackend(save_scripted(model, tmp_path / "t.pt"), normalise=(mean, std))
    x = images(5)
    m, s = np.array(mean, np.float32)[:, None, None], np.array(std, np.float32)[:, None, None]
    expected = softmax_of(model, (x - m) / s)
    np.testing.assert_allclose(backend.answer(x, "r"), expected, atol=1e-5)
    assert not np.allclose(expected, softmax_of(model, x), atol=1e-3)  # the normalisation matters here
    one = TorchScriptBackend(tmp_path / "t.pt", normalise="0.5:0.25")  # one value for every channel
    np.testing.assert_allclose(one.answer(x, "r"), softmax_of(model, (x - 0.5) / 0.25), atol=1e-5)
    with pytest.raises(OracleError, match=r"normalise mean must be 1 or 3 finite values \(one per channel\)"):
        TorchScriptBackend(tmp_path / "t.pt", normalise=((0.5, 0.5), (1.0, 1.0, 1.0)))
    with pytest.raises(OracleError, match="normalise std must be positive"):
        TorchScriptBackend(tmp_path / "t.pt", normalise=((0.5,), (0.0,)))


class FourD(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x[:, :, :1, :1]


class OneClass(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.flatten(1)[:, :1]


class Pair(nn.Module):
    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x.flatten(1), x


@pytest.mark.parametrize(
    ("module", "message"),
    [
        (FourD(), r"output has shape \[2, 3, 1, 1\] for 2 images; a classifier must output \[n, classes\]"),
        (OneClass(), r"output has shape \[2, 1\] .* at least 2 classes"),
        (Pair(), "returned tuple; a classifier must return one tensor"),
    ],
)
def test_outputs_that_are_not_class_scores_are_refused(
    tmp_path: Path, module: nn.Module, message: str
) -> None:
    path = save_scripted(module, tmp_path / "bad.pt")
    with pytest.raises(ModelError, match=message):
        TorchScriptBackend(path)


def test_files_that_are_not_torchscript_are_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.pt").write_text("not a model")
    with pytest.raises(ModelError, match="is not a TorchScript file"):
        TorchScriptBackend(tmp_path / "notes.pt", input_shape=(1, 28, 28))
    models.save(models.build("mlp", 10, seed=0), tmp_path / "a.pt", arch="mlp", num_classes=10)
    with pytest.raises(ModelError, match="is not a TorchScript file"):
        TorchScriptBackend(tmp_path / "a.pt", input_shape=(1, 28, 28))
    with pytest.raises(ModelError, match="does not exist"):
        TorchScriptBackend(tmp_path / "missing.pt")


def test_every_answer_is_counted_by_the_oracle(tmp_path: Path) -> None:
    model = TinyNet(1, 28, 4).eval()
    path = save_scripted(model, tmp_path / "g.pt", "[1, 28, 28]")
    oracle = TorchScriptOracle(path, budget=6, ledger=tmp_path / "ledger.sqlite", mode="label")
    pool = images(10, (1, 28, 28))
    answers = oracle.query(pool[:4], keys=np.arange(4))
    assert np.array_equal(answers.argmax(1), softmax_of(model, pool[:4]).argmax(1))
    assert set(np.unique(answers)) <= {0.0, 1.0}  # the oracle's output mode, applied to probabilities
    assert (oracle.used, len(oracle.ledger)) == (4, 4)
    oracle.query(pool[:4], keys=np.arange(4))  # answered before: free
    assert oracle.used == 4
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[4:7], keys=np.arange(4, 7))
    keys, recorded = oracle.answered()
    assert keys.tolist() == [0, 1, 2, 3] and np.array_equal(recorded, answers)
    # A file the user holds is theirs: evaluation is free; owned=False counts it like a paid API.
    assert oracle.free_evaluation and oracle.evaluate(pool[:3]) is not None
    assert TorchScriptOracle(path, owned=False).evaluate(pool[:3]) is None
    oracle.close()


def test_a_model_the_user_does_not_own_is_billed_for_the_probe_and_the_run_ledger_keeps_it(
    tmp_path: Path,
) -> None:
    from activethief.oracle.ledger import Ledger

    path = save_scripted(TinyNet(1, 28, 4).eval(), tmp_path / "p.pt", "[1, 28, 28]")
    assert TorchScriptOracle(path).used == 0  # owned: the probe is free
    oracle = TorchScriptOracle(path, owned=False, budget=5)
    assert oracle.used == 2 and oracle.remaining == 3  # the two probe images
    oracle.use_ledger(Ledger(tmp_path / "run.sqlite"))  # what `steal` does with its run folder
    assert oracle.used == 2
    with pytest.raises(BudgetExceededError):
        oracle.query(images(4, (1, 28, 28)), keys=np.arange(4))
    oracle.close()


def test_rgb_images_go_through_the_oracle_in_the_targets_shape(tmp_path: Path) -> None:
    model = TinyNet().eval()
    oracle = TorchScriptOracle(save_scripted(model, tmp_path / "rgb.pt"), budget=8, returns="logits")
    assert oracle.input_shape == (3, 16, 16)
    pool = images(12)
    answers = oracle.query(pool[:8], keys=np.arange(8))
    np.testing.assert_allclose(answers, softmax_of(model, pool[:8]), atol=1e-5)
    assert (oracle.used, len(oracle.ledger)) == (8, 8)
    with pytest.raises(BudgetExceededError):
        oracle.query(pool[8:], keys=np.arange(8, 12))
    with pytest.raises(OracleError, match=r"\[n, 3, 16, 16\].*got shape \[2, 1, 28, 28\]"):
        oracle.query(images(2, (1, 28, 28)), keys=np.arange(2))
    assert oracle.used == 8
    oracle.close()
