"""The plumbing every gradient attack shares; a concrete attack writes only its `perturb` step.

The base class converts and checks inputs, picks the goal class of every image (its label, a fixed
target class, or the least-likely class of the attacked model), runs the attack batch by batch on the
model's device, and returns images of the input's type, always inside [0, 1] and the ε-ball of its norm
(L∞ or L2, `attacks.norms`).
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass, fields
from typing import Any, ClassVar, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activethief.attacks.norms import Ball, ball, recorded
from activethief.errors import ConfigError

LEAST_LIKELY = "least-likely"

ArrayT = TypeVar("ArrayT", np.ndarray, torch.Tensor)
Labels = np.ndarray | torch.Tensor


@runtime_checkable
class AttackLoss(Protocol):
    """A model that defines its own attack objective (an ensemble averaging its members' losses, a model
    behind random input transformations): the cross-entropy of a batch with the goal classes, summed."""

    def attack_cross_entropy(self, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor: ...


def cross_entropy_of(model: nn.Module, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
    """The attack objective of `model` on `x` [b, ...]: its cross-entropy with `goal` [b], summed over
    the batch (so each image's gradient is independent of the batch); the model's own when it defines
    one (`AttackLoss`)."""
    if isinstance(model, AttackLoss):
        return model.attack_cross_entropy(x, goal)
    return F.cross_entropy(model(x), goal, reduction="sum")


@dataclass(frozen=True, kw_only=True)
class Attack(ABC):
    """A norm-bounded evasion attack on a differentiable classifier (logits out), inputs in [0, 1].

    Calling an attack crafts adversarial images: `attack(model, images, labels, seed=0)`.

    Args:
        eps: radius of the ball around each image, in pixel units of [0, 1] (L∞: per pixel; L2: the
            perturbation's Euclidean length, e.g. 2.0 for a 28x28 image).
        target_class: None for an untargeted attack (leave the true label); a class index to push
            every image to that class; or "least-likely" for the class the attacked model finds least
            likely on each clean image.
        batch_size: images per forward/backward pass.
        norm: "inf" (L∞, signed steps) or "2" (L2, unit-length gradient steps); `attacks.norms`.
    """

    name: ClassVar[str]

    eps: float = 0.3
    target_class: int | str | None = None
    batch_size: int = 256
    norm: str = "inf"

    def __post_init__(self) -> None:
        self.validate()
        object.__setattr__(self, "norm", self.ball.name)  # "l2" and "linf" are stored as "2" and "inf"

    @property
    def ball(self) -> Ball:
        """The ε-ball of the attack's norm: its steps, projection and random start."""
        return ball(self.norm)

    def validate(self) -> None:
        """Raise ConfigError for hyperparameters out of range; subclasses extend this."""
        if not math.isfinite(self.eps) or self.eps < 0:
            raise ConfigError(
                f"eps must be a finite number >= 0 (the ball's radius in [0, 1] pixel units); got {self.eps}"
            )
        self.ball  # noqa: B018 -- raises ConfigError for an unknown norm
        if self.batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1; got {self.batch_size}")
        target = self.target_class
        if isinstance(target, str) and target != LEAST_LIKELY:
            raise ConfigError(f"target_class must be None, a class index or {LEAST_LIKELY!r}; got {target!r}")
        if isinstance(target, bool) or (isinstance(target, int) and target < 0):
            raise ConfigError(f"target_class must be a class index >= 0; got {target!r}")

    @property
    def targeted(self) -> bool:
        return self.target_class is not None

    def config(self) -> dict[str, Any]:
        """The attack's name and hyperparameters as a JSON-able dict (the norm only when it is L2, so
        results written before attacks had a norm keep their settings)."""
        return recorded({"method": self.name, **{f.name: getattr(self, f.name) for f in fields(self)}})

    # --- the call ---------------------------------------------------------------------------------
    def __call__(
        self, model: nn.Module, images: ArrayT, labels: Labels, *, seed: int | torch.Generator = 0
    ) -> ArrayT:
        """Adversarial versions of `images`.

        Args:
            model: maps float32 [b, ...] images to logits [b, C]; attacked in eval mode on its own device.
            images: float32 [n, C, H, W] (any C, H, W the model takes) in [0, 1], numpy array or tensor.
            labels: true classes [n] (integers); the untargeted attack moves away from them.
            seed: an int seed or a `torch.Generator` for the random start; same seed, same images.

        Returns:
            Adversarial images of the same shape and type as `images`, in [0, 1], within eps of them
            in the attack's norm.
        """
        x, y = check_inputs(images, labels)
        generator = seed if isinstance(seed, torch.Generator) else torch.Generator().manual_seed(seed)
        goal = self.goal_classes(model, x, y)
        device = _device(model)
        out = torch.empty_like(x)
        was_training = model.training
        model.eval()
        try:
            with torch.enable_grad():
                for start in range(0, len(x), self.batch_size):
                    xb = x[start : start + self.batch_size].to(device)
                    gb = torch.from_numpy(goal[start : start + self.batch_size]).to(device)
                    adv = self.perturb(model, xb, gb, generator).detach()
                    assert adv.shape == xb.shape, (adv.shape, xb.shape)
                    out[start : start + len(xb)] = self.project(adv, xb).cpu()
        finally:
            model.train(was_training)
        if isinstance(images, torch.Tensor):
            return out.to(images.device)
        return out.numpy()

    def goal_classes(self, model: nn.Module, images: np.ndarray | torch.Tensor, labels: Labels) -> np.ndarray:
        """The class each image is pushed away from (untargeted) or towards (targeted), int64 [n].

        Untargeted: the labels. Fixed target: that class for all. Least-likely: argmin of the model's
        logits on each clean image.
        """
        x, y = check_inputs(images, labels)
        num_classes = num_classes_of(model, x)
        if len(y) and (int(y.min()) < 0 or int(y.max()) >= num_classes):
            raise ConfigError(
                f"labels must be class indices in [0, {num_classes}); got [{y.min()}, {y.max()}]"
            )
        if self.target_class is None:
            return y
        if self.target_class == LEAST_LIKELY:
            return predict_classes(model, x, self.batch_size, least=True)
        assert isinstance(self.target_class, int)
        if self.target_class >= num_classes:
            raise ConfigError(
                f"target_class {self.target_class} is not a class of a {num_classes}-class model"
            )
        return np.full(len(y), self.target_class, dtype=np.int64)

    # --- what a concrete attack writes --------------------------------------------------------------
    @abstractmethod
    def perturb(
        self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor, generator: torch.Generator
    ) -> torch.Tensor:
        """Adversarial images for one batch: `x` [b, ...] in [0, 1], `goal` int64 [b] -> [b, ...]."""

    # --- helpers for concrete attacks ---------------------------------------------------------------
    def gradient(self, model: nn.Module, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """Gradient [b, ...] of the attack objective w.r.t. `x`: ascend it to succeed.

        The objective is the cross-entropy with the goal class (summed over the batch, so each image's
        gradient is independent of the batch; `cross_entropy_of`), negated for targeted attacks.
        """
        x = x.detach().requires_grad_(True)
        loss = cross_entropy_of(model, x, goal)
        (grad,) = torch.autograd.grad(loss, x)
        return -grad if self.targeted else grad

    def project(self, x_adv: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Clip `x_adv` to [0, 1], then project it onto the ε-ball around `x` (ART's order)."""
        return self.ball.project(x_adv, x, self.eps)

    def step(
        self, x_adv: torch.Tensor, x: torch.Tensor, direction: torch.Tensor, size: float
    ) -> torch.Tensor:
        """One step of length `size` along `direction` (L∞: its sign; L2: scaled to unit length),
        clipped and projected."""
        return self.project(x_adv + self.ball.step(direction, size), x)


def check_inputs(images: np.ndarray | torch.Tensor, labels: Labels) -> tuple[torch.Tensor, np.ndarray]:
    """Images as a float32 CPU tensor [n, ...] in [0, 1] and labels as int64 [n], or a ConfigError."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if x.ndim < 2:
        raise ConfigError(
            f"images must be a batch [n, C, H, W] (e.g. [n, 3, 32, 32]); got shape {list(x.shape)}"
        )
    if not x.dtype.is_floating_point:
        raise ConfigError(f"images must be floats in [0, 1]; got dtype {x.dtype}")
    x = x.float()
    if len(x) and not bool(torch.isfinite(x).all()):
        raise ConfigError("images contain NaN or infinite values")
    if len(x) and (float(x.min()) < 0.0 or float(x.max()) > 1.0):
        raise ConfigError(
            f"images must lie in [0, 1]; got [{float(x.min()):.3g}, {float(x.max()):.3g}] (divide by 255?)"
        )
    y = labels.detach().cpu().numpy() if isinstance(labels, torch.Tensor) else np.asarray(labels)
    if y.shape != (len(x),):
        raise ConfigError(f"labels must have shape [{len(x)}] (one class per image); got {list(y.shape)}")
    if len(y) and not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"labels must be integer class indices; got dtype {y.dtype}")
    return x, y.astype(np.int64)


def _device(model: nn.Module) -> torch.device:
    param = next(iter(model.parameters()), None)
    return param.device if param is not None else torch.device("cpu")


@torch.no_grad()
def predict_classes(model: nn.Module, x: torch.Tensor, batch_size: int, *, least: bool = False) -> np.ndarray:
    """Argmax (or argmin) class of the model's logits, int64 [n], in eval mode."""
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        chunks = [np.zeros(0, np.int64)]
        for start in range(0, len(x), batch_size):
            logits = model(x[start : start + batch_size].to(device))
            chunks.append((logits.argmin(1) if least else logits.argmax(1)).cpu().numpy().astype(np.int64))
    finally:
        model.train(was_training)
    return np.concatenate(chunks)


@torch.no_grad()
def num_classes_of(model: nn.Module, x: torch.Tensor) -> int:
    """Number of logits the model outputs (one forward pass on one image)."""
    if len(x) == 0:
        last = [m for m in model.modules() if isinstance(m, nn.Linear)]
        return int(last[-1].out_features) if last else 0
    was_training = model.training
    model.eval()
    try:
        return int(model(x[:1].to(_device(model))).shape[1])
    finally:
        model.train(was_training)
