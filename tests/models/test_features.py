"""Every architecture exposes its penultimate features; one streaming pass yields features and probs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from activethief import models
from activethief.errors import ModelError
from activethief.training import predict_outputs, predict_proba


@pytest.mark.parametrize("arch", sorted(models.ARCHITECTURES))
def test_features_then_head_is_the_forward_pass(arch: str) -> None:
    model = models.build(arch, 10, seed=0).eval()
    x = torch.rand(7, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        features, logits = models.features_and_logits(model, x)
        assert features.ndim == 2 and features.shape[0] == 7
        assert torch.equal(logits, model(x))  # the same layers, split before the head


def test_one_pass_gives_features_and_the_same_probabilities() -> None:
    model = models.build("cnn2", 10, seed=1)
    x = np.random.default_rng(0).random((1100, 1, 28, 28), dtype=np.float32)
    out = predict_outputs(model, x, features=True, batch_size=512)
    assert out.features is not None and out.features.shape == (1100, 128) and out.logits is None
    np.testing.assert_array_equal(out.probs, predict_proba(model, x, batch_size=512))
    empty = predict_outputs(model, x[:0], features=True)
    assert empty.probs is not None and empty.probs.shape == (0, 10)


def test_a_module_without_features_says_what_to_add() -> None:
    with pytest.raises(ModelError, match=r"features\(x\)"):
        models.features_and_logits(nn.Linear(784, 10), torch.zeros(1, 784))


def test_weights_saved_as_a_plain_sequential_still_load(tmp_path: Path) -> None:
    plain = nn.Sequential(*models.build("lenet", 10, seed=0))  # what files written before `Classifier` held
    models.save(plain, tmp_path / "old.pt", arch="lenet", num_classes=10)
    loaded, _ = models.load(tmp_path / "old.pt")
    assert isinstance(loaded, models.Classifier)
    x = torch.rand(3, 1, 28, 28, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert torch.equal(loaded(x), plain.eval()(x))
