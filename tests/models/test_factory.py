"""A user's own substitute, `package.module:function`: built, checked, saved and loaded back through the
one model format, with clear errors for every way the name or the factory can be wrong."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from torch import nn

from activethief import models
from activethief.errors import ConfigError, ModelError
from activethief.steal import StealConfig

FACTORIES = """
import torch
from torch import nn


def tiny(input_shape, num_classes):
    c, h, w = input_shape
    return nn.Sequential(nn.Conv2d(c, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, num_classes))


class Nets:
    @staticmethod
    def linear(input_shape, num_classes):
        c, h, w = input_shape
        return nn.Sequential(nn.Flatten(), nn.Linear(c * h * w, num_classes))


def wrong_width(input_shape, num_classes):
    return tiny(input_shape, num_classes + 1)


def not_a_module(input_shape, num_classes):
    return "a string"


def raises(input_shape, num_classes):
    raise ValueError("only RGB, please")


def broken_forward(input_shape, num_classes):
    return nn.Linear(3, num_classes)  # expects [n, 3], gets images


NOT_CALLABLE = 42
"""


@pytest.fixture
def factories(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The name of a module of factories, written to tmp_path and importable for this test only."""
    name = f"user_nets_{abs(hash(tmp_path)) % 10**8}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(FACTORIES))
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def test_a_factory_builds_seeded_modules_for_the_shape(factories: str) -> None:
    a = models.build(f"{factories}:tiny", 7, input_shape=(3, 16, 16), seed=0)
    b = models.build(f"{factories}:tiny", 7, input_shape=(3, 16, 16), seed=0)
    assert isinstance(a, nn.Sequential) and a.input_shape == (3, 16, 16)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters(), strict=True))
    assert a(torch.zeros(2, 3, 16, 16)).shape == (2, 7)
    assert a.training  # the probe left the mode as the factory made it
    nested = models.build(f"{factories}:Nets.linear", 3, input_shape=(1, 8, 8))
    assert nested(torch.zeros(1, 1, 8, 8)).shape == (1, 3)


def test_a_factory_model_saves_and_loads_back(factories: str, tmp_path: Path) -> None:
    arch = f"{factories}:tiny"
    model = models.build(arch, 5, input_shape=(3, 12, 10), seed=1)
    models.save(model, tmp_path / "m.pt", arch=arch, num_classes=5)
    loaded, meta = models.load(tmp_path / "m.pt")
    assert meta["arch"] == arch and meta["input_shape"] == [3, 12, 10]
    x = torch.rand(4, 3, 12, 10, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert torch.allclose(loaded(x), model.eval()(x))


def test_loading_without_the_factory_names_it(factories: str, tmp_path: Path) -> None:
    arch = f"{factories}:tiny"
    models.save(models.build(arch, 5, input_shape=(3, 12, 10)), tmp_path / "m.pt", arch=arch, num_classes=5)
    sys.modules.pop(factories)
    (tmp_path / f"{factories}.py").unlink()
    with pytest.raises(ModelError, match=rf"saved with factory {arch}; make it importable \(PYTHONPATH\)"):
        models.load(tmp_path / "m.pt")


@pytest.mark.parametrize(
    ("attribute", "message"),
    [
        ("wrong_width", r"to \(1, 6\); expected logits of shape \(1, 5\)"),
        ("not_a_module", "returned a str, not an nn.Module"),
        ("raises", "raised ValueError .*only RGB, please"),
        ("broken_forward", r"failed on a zero batch of shape \(1, 3, 8, 8\)"),
        ("NOT_CALLABLE", "is a int, not a callable"),
        ("missing", "has no attribute 'missing'; its callables: .*tiny"),
    ],
)
def test_bad_factories_say_what_is_wrong(factories: str, attribute: str, message: str) -> None:
    with pytest.raises(ModelError, match=message) as caught:
        models.build(f"{factories}:{attribute}", 5, input_shape=(3, 8, 8))
    assert f"{factories}:{attribute}" in str(caught.value)


def test_unimportable_and_malformed_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ModelError, match=r"no module named 'no_such_package_xyz'.*PYTHONPATH"):
        models.build("no_such_package_xyz.nets:tiny", 10)
    (tmp_path / "needs_missing_dep.py").write_text("import no_such_dependency_xyz\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(ModelError, match=r"importing needs_missing_dep failed.*no_such_dependency_xyz"):
        models.build("needs_missing_dep:net", 10)
    sys.modules.pop("needs_missing_dep", None)
    (tmp_path / "explodes_on_import.py").write_text("raise RuntimeError('boom')\n")
    with pytest.raises(ModelError, match=r"importing explodes_on_import raised RuntimeError: boom"):
        models.build("explodes_on_import:net", 10)
    for name in (":tiny", "module:", "a:b:c"):
        with pytest.raises(ModelError, match=r"not of the form package.module:function"):
            models.build(name, 10)


def test_steal_config_accepts_auto_and_factories(factories: str) -> None:
    assert StealConfig(budget=10, substitute="auto").substitute == "auto"
    assert StealConfig(budget=10, substitute="resnet8").substitute == "resnet8"
    assert (
        StealConfig(budget=10, substitute=f"{factories}:tiny").to_dict()["substitute"] == f"{factories}:tiny"
    )
    with pytest.raises(ConfigError, match=r"StealConfig.substitute: .*has no attribute 'nope'"):
        StealConfig(budget=10, substitute=f"{factories}:nope")
    with pytest.raises(ConfigError, match=r"StealConfig.substitute: .*NOT_CALLABLE.* not a callable"):
        StealConfig(budget=10, substitute=f"{factories}:NOT_CALLABLE")
    with pytest.raises(ConfigError, match=r"StealConfig.substitute: .*no module named"):
        StealConfig(budget=10, substitute="no_such_package_xyz:net")
    with pytest.raises(ConfigError, match=r"StealConfig.substitute: unknown architecture 'resnet'"):
        StealConfig(budget=10, substitute="resnet")
