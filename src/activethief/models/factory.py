"""A user's own architecture, named `package.module:function`: a callable `(input_shape, num_classes)`
returning an `nn.Module` that maps float32 [n, C, H, W] in [0, 1] to logits [n, num_classes]."""

from __future__ import annotations

import importlib
from collections.abc import Callable

import torch
from torch import nn

from activethief.errors import ModelError

Factory = Callable[[tuple[int, int, int], int], nn.Module]


def is_factory_name(arch: str) -> bool:
    """Whether `arch` names a user factory (`module:function`) rather than a built-in architecture."""
    return ":" in arch


def import_factory(name: str) -> Factory:
    """The callable `name` (`package.module:function`, or `module:Class.method`) names, imported.

    Raises:
        ModelError: the name is malformed, the module cannot be imported, it has no such attribute, or
            the attribute is not callable.
    """
    module_name, _, attribute = name.partition(":")
    if not module_name or not attribute or ":" in attribute:
        raise ModelError(
            f"substitute factory {name!r} is not of the form package.module:function "
            "(a callable taking (input_shape, num_classes) and returning an nn.Module)"
        )
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (module_name == exc.name or module_name.startswith(exc.name + ".")):
            raise ModelError(
                f"substitute factory {name!r}: no module named {exc.name!r}; make it importable "
                "(install it, or add its folder to PYTHONPATH)"
            ) from None
        raise ModelError(f"substitute factory {name!r}: importing {module_name} failed: {exc}") from exc
    except Exception as exc:  # the user's module raised while being imported
        raise ModelError(
            f"substitute factory {name!r}: importing {module_name} raised {type(exc).__name__}: {exc}"
        ) from exc
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            public = sorted(n for n in dir(target) if not n.startswith("_") and callable(getattr(target, n)))
            raise ModelError(
                f"substitute factory {name!r}: {module_name} has no attribute {attribute!r}; "
                f"its callables: {', '.join(public) or 'none'}"
            )
        target = getattr(target, part)
    if not callable(target):
        raise ModelError(
            f"substitute factory {name!r} is a {type(target).__name__}, not a callable taking "
            "(input_shape, num_classes)"
        )
    factory: Factory = target  # checked callable; its signature is the contract, checked when it builds
    return factory


def build_from_factory(name: str, num_classes: int, input_shape: tuple[int, int, int]) -> nn.Module:
    """The module `name`'s factory returns for `(input_shape, num_classes)`, checked on one zero batch.

    The check runs the module once, in eval mode and without gradients, on zeros [1, *input_shape]: its
    output must be logits [1, num_classes]. The module keeps the mode it came in.

    Raises:
        ModelError: naming the factory, for an import problem, a factory that raised, a result that is
            not an `nn.Module`, or one whose output has the wrong shape.
    """
    factory = import_factory(name)
    try:
        model = factory(input_shape, num_classes)
    except Exception as exc:
        raise ModelError(
            f"substitute factory {name!r} raised {type(exc).__name__} for input_shape={input_shape}, "
            f"num_classes={num_classes}: {exc}"
        ) from exc
    if not isinstance(model, nn.Module):
        raise ModelError(f"substitute factory {name!r} returned a {type(model).__name__}, not an nn.Module")
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            out = model(torch.zeros(1, *input_shape))
    except Exception as exc:
        raise ModelError(
            f"substitute factory {name!r}: its model failed on a zero batch of shape "
            f"{(1, *input_shape)}: {type(exc).__name__}: {exc}"
        ) from exc
    finally:
        model.train(was_training)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ModelError(
            f"substitute factory {name!r}: its model maps a batch of shape {(1, *input_shape)} to {got}; "
            f"expected logits of shape (1, {num_classes})"
        )
    return model
