"""Train a model on a target's answers (soft or hard labels).

RMSProp + cross-entropy as in the study. Targets may be class indices [n] or probability rows [n, C]
(`oracle.answers_to_targets` turns any output mode's answers into such rows: `training.targets`). A set of
rows that are all one-hot (a label-only API's answers) is label-smoothed by default
(`FitConfig.label_smoothing`). Soft answers can be distilled at a temperature (`FitConfig.temperature`).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from activethief.errors import ConfigError
from activethief.training.augment import weak_augment
from activethief.training.predict import (
    ArrayLike,
    Images,
    as_float_tensor,
    channels_last,
    model_device,
    network_batch,
    output_classes,
    predict_logits,
    to_device,
)
from activethief.training.semisup import SemiConfig, unlabelled_loss
from activethief.training.targets import distillation_temperature, smooth, smoothing_amount, soften

# FitConfig fields newer than the stored runs and results, with the default those runs trained with.
ADDED_LATER: dict[str, Any] = {
    "hflip": False,
    "semi": None,
    "label_smoothing": None,
    "ema": 0.0,
    "temperature": 1.0,
}


@dataclass(frozen=True)
class FitConfig:
    """How to train. Defaults were chosen by measurement (benchmarks/query_efficiency.py)."""

    epochs: int = 30
    batch_size: int = 128
    lr: float = 1e-3
    weight_decay: float = 0.0
    val_fraction: float = 0.1  # of the training answers, held out for early stopping (costs no queries)
    patience: int = 5  # epochs without validation improvement before stopping
    min_steps: int = (
        0  # at least this many optimiser steps, however small the set (short sets need more epochs)
    )
    max_steps: int = 0  # stop after this many optimiser steps, whatever the epoch (0 = no cap)
    # Steps of each warm-started round of `steal` (every round after the first trains exactly this many,
    # from the previous round's weights); 0 trains every round like the first. Later rounds only add a
    # batch to a model that already fits the rest, so they need far fewer steps than a cold start.
    warm_steps: int = 0
    augment: int = 0  # random translations of up to this many pixels (0 = off)
    hflip: bool = False  # random horizontal flips (photographs of objects; never for digits)
    semi: SemiConfig | None = None  # semi-supervised objective over the unlabelled pool (None = off)
    bf16: bool = False  # bfloat16 autocast on CPU
    # RMSProp's first steps are ~10x the learning rate (its running average starts at zero), which wrecks
    # a warm start; ramping the rate up linearly over the first steps avoids that.
    warmup_steps: int = 30
    # Label smoothing of the training targets (Szegedy et al., CVPR 2016): None applies
    # `training.targets.AUTO_SMOOTHING` when every target row is one-hot (hard-label answers) and nothing
    # to soft answers or class indices; a number smooths any targets by that much (0 = off).
    label_smoothing: float | None = None
    # Polyak averaging of the weights (Polyak & Juditsky, 1992), as an exponential moving average with this
    # decay per step (0 = off): validation, early stopping and the returned model use the average. Averaged
    # weights generalise better to data unlike the training set (SWAD, Cha et al., NeurIPS 2021), which is
    # a thief's situation when its pool comes from another distribution than the target's.
    ema: float = 0.0
    # Distillation temperature (Hinton et al., 2015): > 1 trains softmax(z / T) against the answers
    # softened the same way, p^(1/T) renormalised (softmax of the target's logits / T, recovered from its
    # probabilities), with the loss scaled by T^2. It lifts the small probabilities a confident target
    # gives its other classes, which carry most of what a soft answer says beyond the label. Hard labels
    # train at 1 whatever it says (`targets.distillation_temperature`).
    temperature: float = 1.0

    def __post_init__(self) -> None:
        counts = ("epochs", "batch_size", "patience", "min_steps", "max_steps", "warm_steps", "augment")
        negative = [name for name in counts if getattr(self, name) < 0]
        if negative or self.batch_size < 1 or self.lr <= 0 or not 0 <= self.val_fraction < 1:
            raise ConfigError(
                f"bad training settings {negative or ''}: counts must be >= 0, batch_size >= 1, lr > 0 "
                f"and 0 <= val_fraction < 1 (got {self})"
            )
        if 0 < self.max_steps < self.min_steps:
            raise ConfigError(f"max_steps ({self.max_steps}) is below min_steps ({self.min_steps})")
        if self.label_smoothing is not None and not 0 <= self.label_smoothing < 1:
            raise ConfigError(
                f"FitConfig.label_smoothing must be None or lie in [0, 1), got {self.label_smoothing}"
            )
        if not self.temperature > 0:
            raise ConfigError(f"FitConfig.temperature must be > 0 (1 = off), got {self.temperature}")
        if not 0 <= self.ema < 1:
            raise ConfigError(f"FitConfig.ema must lie in [0, 1) (0 = off), got {self.ema}")
        if self.semi is not None and not isinstance(self.semi, SemiConfig):
            raise ConfigError(f"FitConfig.semi must be a SemiConfig or None, got {type(self.semi).__name__}")

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON types: what run folders and experiment rows store and compare.

        Fields added after run folders and results were first written (`ADDED_LATER`) appear only when
        they differ from their default, so those runs still resume and those rows still count."""
        stored = asdict(self)
        for name, default in ADDED_LATER.items():
            if stored[name] == default:
                del stored[name]
        return stored

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> FitConfig:
        """The inverse of `to_dict` (and of `dataclasses.asdict`, the form older runs stored)."""
        values = dict(values)
        semi = values.pop("semi", None)
        return cls(**values, semi=None if semi is None else SemiConfig(**semi))


@dataclass
class FitResult:
    """What happened during `fit`."""

    epochs: int
    steps: int
    best_epoch: int
    best_val_loss: float | None
    val_agreement: float | None
    train_loss: list[float] = field(default_factory=list)
    val_loss: list[float] = field(default_factory=list)
    # semi-supervised only: the mean fraction of pool images per step confident enough to be a target
    confident: float | None = None


def to_soft_targets(targets: ArrayLike, num_classes: int) -> torch.Tensor:
    """Probability rows [n, C] from class indices [n] or (possibly unnormalised) probability rows."""
    t = torch.from_numpy(np.asarray(targets)) if isinstance(targets, np.ndarray) else targets
    if t.ndim == 1:
        if t.dtype.is_floating_point:
            raise ConfigError("1-D targets must be integer class indices")
        if len(t) and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise ConfigError(f"class indices must lie in [0, {num_classes})")
        return F.one_hot(t.long(), num_classes).float()
    if t.ndim != 2 or t.shape[1] != num_classes:
        raise ConfigError(
            f"targets must be [n] indices or [n, {num_classes}] probabilities, got {tuple(t.shape)}"
        )
    t = t.float().clamp_min(0)
    mass = t.sum(1, keepdim=True)
    if bool((mass <= 0).any()):
        raise ConfigError("a target row has no probability mass")
    return t / mass


def soft_cross_entropy(logits: torch.Tensor, soft: torch.Tensor) -> torch.Tensor:
    """Mean of -sum(q log softmax(z)): cross-entropy against probability targets."""
    return -(soft * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def _split(
    xs: torch.Tensor,
    soft: torch.Tensor,
    cfg: FitConfig,
    val: tuple[ArrayLike, ArrayLike] | None,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(train images, train targets, validation images, validation targets): `val`, a held-out fraction
    of the answers, or no validation (sets under 20 images, `val_fraction` 0)."""
    if val is not None:
        return xs, soft, as_float_tensor(val[0]), to_soft_targets(val[1], soft.shape[1])
    if cfg.val_fraction > 0 and len(xs) >= 20:
        order = torch.randperm(len(xs), generator=gen)
        n_val = max(1, round(len(xs) * cfg.val_fraction))
        return xs[order[n_val:]], soft[order[n_val:]], xs[order[:n_val]], soft[order[:n_val]]
    return xs, soft, None, None


class _Step:
    """One optimiser step: the loss on a batch of answers, plus the unlabelled loss when semi-supervised."""

    def __init__(
        self,
        model: nn.Module,
        cfg: FitConfig,
        gen: torch.Generator,
        pool: Images | None,
        temperature: float,
    ) -> None:
        self.model, self.cfg, self.gen, self.pool = model, cfg, gen, pool
        self.temperature = temperature
        self.device = model_device(model)
        self.optimiser = torch.optim.RMSprop(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        ramp = cfg.warmup_steps
        self.warmup = torch.optim.lr_scheduler.LambdaLR(
            self.optimiser, lambda step: min(1.0, (step + 1) / ramp) if ramp > 0 else 1.0
        )
        self.confident: list[float] = []
        self.average = (
            AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(cfg.ema), use_buffers=True)  # type: ignore[no-untyped-call]
            if cfg.ema > 0
            else None
        )

    @property
    def evaluated(self) -> nn.Module:
        """The model validation sees and `fit` returns: the weight average when there is one."""
        return self.model if self.average is None else self.average.module

    def __call__(self, images: torch.Tensor, targets: torch.Tensor) -> float:
        """Train on one batch; returns the answered images' loss."""
        cfg = self.cfg
        # Augmented on the CPU (its generator is there, so a GPU run draws the same shifts), then moved.
        xb = to_device(
            weak_augment(network_batch(images), cfg.augment, self.gen, hflip=cfg.hflip), self.device
        )
        targets = to_device(targets, self.device)
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=cfg.bf16):
            loss = soft_cross_entropy(self.model(xb) / self.temperature, targets) * self.temperature**2
            total = loss
            if cfg.semi is not None and self.pool is not None:
                count = cfg.semi.ratio * len(images)
                extra, confident = unlabelled_loss(
                    self.model, self.pool, count, cfg.semi, self.gen, max_shift=cfg.augment, hflip=cfg.hflip
                )
                total = loss + cfg.semi.weight * extra
                self.confident.append(confident)
        self.optimiser.zero_grad(set_to_none=True)
        total.backward()  # type: ignore[no-untyped-call]
        self.optimiser.step()
        self.warmup.step()
        if self.average is not None:
            self.average.update_parameters(self.model)
        return float(loss.item())


def fit(
    model: nn.Module,
    x: ArrayLike,
    targets: ArrayLike,
    *,
    config: FitConfig | None = None,
    seed: int = 0,
    init_state: Mapping[str, torch.Tensor] | None = None,
    val: tuple[ArrayLike, ArrayLike] | None = None,
    on_epoch: Callable[[int, float, float | None], None] | None = None,
    unlabelled: Images | None = None,
) -> FitResult:
    """Train `model` in place on images `x` [n, C, H, W] and `targets` (indices or probabilities).

    Args:
        config: training settings; `FitConfig()` when omitted.
        seed: drives the validation split, shuffling and augmentation; same seed, same weights (CPU).
        init_state: warm start from these weights; otherwise the model's current weights are used
            (build a fresh model for a cold start).
        val: explicit validation images and targets; otherwise `config.val_fraction` of the data is held out.
        on_epoch: called with (epoch, train_loss, val_loss) after each epoch, e.g. for a progress bar.
        unlabelled: the images `config.semi` draws from (the thief's pool); required when it is set.
    """
    cfg = config or FitConfig()
    if cfg.semi is not None and unlabelled is None:
        raise ConfigError("semi-supervised training (FitConfig.semi) needs the unlabelled images")
    if init_state is not None:
        model.load_state_dict(init_state)
    channels_last(model)
    xs = as_float_tensor(x)
    soft = to_soft_targets(targets, output_classes(model))
    if len(xs) != len(soft):
        raise ConfigError(f"{len(xs)} images but {len(soft)} targets")
    if len(xs) == 0:
        raise ConfigError("cannot train on an empty set")
    gen = torch.Generator().manual_seed(seed)
    x_tr, y_tr, x_val, y_val = _split(xs, soft, cfg, val, gen)
    # Only the training part is smoothed: early stopping still measures the fit to the answers themselves.
    temperature = distillation_temperature(targets.ndim, soft, cfg.temperature)
    y_tr = smooth(soften(y_tr, temperature), smoothing_amount(targets.ndim, soft, cfg.label_smoothing))
    step = _Step(model, cfg, gen, unlabelled if cfg.semi is not None else None, temperature)
    steps_per_epoch = math.ceil(len(x_tr) / cfg.batch_size)
    epochs = max(cfg.epochs, math.ceil(cfg.min_steps / steps_per_epoch))
    best_loss, best_epoch, best_state, stale, steps = math.inf, 0, None, 0, 0
    result = FitResult(epochs=0, steps=0, best_epoch=0, best_val_loss=None, val_agreement=None)
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(x_tr), generator=gen)
        total, seen = 0.0, 0
        for start in range(0, len(order), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            total += step(x_tr[idx], y_tr[idx]) * len(idx)
            seen += len(idx)
            steps += 1
            if steps == cfg.max_steps:
                break
        result.train_loss.append(total / seen)
        val_loss = None
        if x_val is not None and y_val is not None:
            probs = F.softmax(predict_logits(step.evaluated, x_val, bf16=cfg.bf16), dim=1)
            val_loss = float(-(y_val * probs.clamp_min(1e-12).log()).sum(1).mean())
            result.val_loss.append(val_loss)
            if val_loss < best_loss - 1e-6:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = copy.deepcopy(step.evaluated.state_dict())
                result.val_agreement = float((probs.argmax(1) == y_val.argmax(1)).float().mean())
            else:
                stale += 1
        if on_epoch is not None:
            on_epoch(epoch, result.train_loss[-1], val_loss)
        result.epochs = epoch
        if steps == cfg.max_steps or (x_val is not None and stale >= cfg.patience and steps >= cfg.min_steps):
            break
    if step.confident:
        result.confident = sum(step.confident) / len(step.confident)
    if best_state is not None:
        model.load_state_dict(best_state)
        result.best_epoch, result.best_val_loss = best_epoch, best_loss
    else:
        result.best_epoch = result.epochs
        if step.average is not None:
            model.load_state_dict(step.average.module.state_dict())
    result.steps = steps
    model.eval()
    return result
