"""train_target builds for the dataset's image shape and records what `load` needs."""

from __future__ import annotations

from pathlib import Path

import pytest

from activethief import models
from activethief.errors import ConfigError
from activethief.target import train_target


def test_an_rgb_target_is_built_for_the_datasets_shape_with_auto_resolved(tmp_path: Path) -> None:
    out = tmp_path / "photos.pt"
    info = train_target("mnist-on-photos", arch="auto", out=out, epochs=1, limit=200, device="cpu")
    assert info["arch"] == "resnet8"
    model, metadata = models.load(out)
    assert metadata["arch"] == "resnet8" and list(metadata["input_shape"]) == [3, 32, 32]
    assert 0.0 <= info["test_accuracy"] <= 1.0
    assert sum(p.numel() for p in model.parameters()) > 0


def test_an_unknown_device_is_refused_before_training(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="device"):
        train_target("mnist", out=tmp_path / "t.pt", epochs=1, limit=50, device="tpu")
