"""The architectures we train, by name. All map float32 [n, 1, 28, 28] in [0, 1] to logits [n, C].

Each is a `Classifier`: a sequence of layers whose last one is the classification head, so the
penultimate-layer features (what core-set and BADGE-style strategies select on) are one method away.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class Classifier(nn.Sequential):
    """Layers applied in order, the last one a linear head: `forward(x) == head(features(x))`.

    A subclass of `nn.Sequential` with the same children, so weights saved before it existed load as
    they are (the state-dict keys are the layer positions).
    """

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features [n, D]: every layer but the head."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [n, C] from penultimate features."""
        logits: torch.Tensor = self[-1](features)
        return logits


def _two_conv(channels: tuple[int, int], hidden: int, num_classes: int) -> Classifier:
    """Two 5x5 conv + 2x2 max-pool blocks, then one hidden dense layer: the study's 2-layer CNN shape."""
    first, second = channels
    return Classifier(
        nn.Conv2d(1, first, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(second * 7 * 7, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def cnn2(num_classes: int = 10) -> Classifier:
    """The study's 2-layer CNN: two 5x5 conv + max-pool blocks, then two fully connected layers.

    16 and 32 channels keep training above 5,000 images/s on 2 CPU cores (benchmarks/training_speed.py),
    which matters because the active-learning loop retrains it every round.
    """
    return _two_conv((16, 32), 128, num_classes)


def lenet(num_classes: int = 10) -> Classifier:
    """LeNet-5 style: 6 and 16 channel 5x5 convolutions with average pooling, three dense layers."""
    return Classifier(
        nn.Conv2d(1, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Flatten(),
        nn.Linear(16 * 5 * 5, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


def mlp(num_classes: int = 10) -> Classifier:
    """A small multi-layer perceptron (784-256-128-C), a deliberately different family from the CNNs."""
    return Classifier(
        nn.Flatten(),
        nn.Linear(28 * 28, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


def cnn2_wide(num_classes: int = 10) -> Classifier:
    """cnn2 with 32 and 64 channels and a 256-unit hidden layer: a stronger target, ~3x slower to train."""
    return _two_conv((32, 64), 256, num_classes)


ARCHITECTURES: dict[str, Callable[[int], Classifier]] = {
    "cnn2": cnn2,
    "cnn2-wide": cnn2_wide,
    "lenet": lenet,
    "mlp": mlp,
}
