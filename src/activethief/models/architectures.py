"""The architectures we train, by name. Each maps float32 [n, C, H, W] in [0, 1] to logits [n, classes].

Every architecture builds for any input shape (C, H, W) with H, W >= 8. At MNIST's (1, 28, 28) the
convolutional and dense ones are exactly the layers they always were (same layers, same initial weights
for the same seed), so MNIST results do not move; at other shapes they adapt: the first layer takes C
channels and the dense layer's width is computed from the shape (with average pooling bounding it for
large images). The residual nets (`resnet8`, `resnet14-wide`) end in global average pooling, so any
size works.

Each is a `Classifier`: a sequence of layers whose last one is the classification head, so the
penultimate-layer features (what core-set and BADGE-style strategies select on) are one method away.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

InputShape = tuple[int, int, int]
MNIST_SHAPE: InputShape = (1, 28, 28)
MIN_SIDE = 8  # smallest height or width every architecture accepts


class Classifier(nn.Sequential):
    """Layers applied in order, the last one a linear head: `forward(x) == head(features(x))`.

    A subclass of `nn.Sequential` with the same children, so weights saved before it existed load as
    they are (the state-dict keys are the layer positions). `input_shape` is the (C, H, W) it was built
    for; `models.save` records it.
    """

    input_shape: InputShape = MNIST_SHAPE

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate-layer features [n, D]: every layer but the head."""
        for layer in list(self)[:-1]:
            x = layer(x)
        return x

    def head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits [n, C] from penultimate features."""
        logits: torch.Tensor = self[-1](features)
        return logits


def _classifier(input_shape: InputShape, *layers: nn.Module) -> Classifier:
    model = Classifier(*layers)
    model.input_shape = input_shape
    return model


def _bounded(height: int, width: int, cap: int) -> tuple[list[nn.Module], int, int]:
    """An average pool down to at most `cap` x `cap` when a feature map is larger (none at or below it), so
    a dense layer after it stays small whatever the image size; returns (layers, height, width)."""
    if height <= cap and width <= cap:
        return [], height, width
    height, width = min(height, cap), min(width, cap)
    return [nn.AdaptiveAvgPool2d((height, width))], height, width


def _two_conv(
    channels: tuple[int, int], hidden: int, num_classes: int, input_shape: InputShape
) -> Classifier:
    """Two 5x5 conv + 2x2 max-pool blocks, then one hidden dense layer: the study's 2-layer CNN shape."""
    first, second = channels
    c, h, w = input_shape
    pool, h, w = _bounded(h // 4, w // 4, 8)  # 28x28 -> 7x7, 32x32 -> 8x8: no pool at either
    return _classifier(
        input_shape,
        nn.Conv2d(c, first, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(first, second, 5, padding=2),
        nn.ReLU(),
        nn.MaxPool2d(2),
        *pool,
        nn.Flatten(),
        nn.Linear(second * h * w, hidden),
        nn.ReLU(),
        nn.Linear(hidden, num_classes),
    )


def cnn2(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """The study's 2-layer CNN: two 5x5 conv + max-pool blocks, then two fully connected layers.

    16 and 32 channels keep training above 5,000 images/s on 2 CPU cores (benchmarks/training_speed.py),
    which matters because the active-learning loop retrains it every round.
    """
    return _two_conv((16, 32), 128, num_classes, input_shape)


def cnn2_wide(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """cnn2 with 32 and 64 channels and a 256-unit hidden layer: a stronger target, ~3x slower to train."""
    return _two_conv((32, 64), 256, num_classes, input_shape)


def lenet(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """LeNet-5 style: 6 and 16 channel 5x5 convolutions with average pooling, three dense layers.

    The second convolution is unpadded (28 -> 14 -> 10 -> 5); images under 12 pixels a side pad it, so
    that 8x8 still leaves a feature map.
    """
    c, h, w = input_shape
    pad = 0 if min(h, w) >= 12 else 2
    h, w = (h // 2 + 2 * pad - 4) // 2, (w // 2 + 2 * pad - 4) // 2
    pool, h, w = _bounded(h, w, 5)
    return _classifier(
        input_shape,
        nn.Conv2d(c, 6, 5, padding=2),
        nn.Tanh(),
        nn.AvgPool2d(2),
        nn.Conv2d(6, 16, 5, padding=pad),
        nn.Tanh(),
        nn.AvgPool2d(2),
        *pool,
        nn.Flatten(),
        nn.Linear(16 * h * w, 120),
        nn.Tanh(),
        nn.Linear(120, 84),
        nn.Tanh(),
        nn.Linear(84, num_classes),
    )


def mlp(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """A small multi-layer perceptron (784-256-128-C at 28x28), a deliberately different family from the
    CNNs. Images over 32 pixels a side are average-pooled to at most 32x32 first."""
    c, h, w = input_shape
    pool, h, w = _bounded(h, w, 32)
    return _classifier(
        input_shape,
        *pool,
        nn.Flatten(),
        nn.Linear(c * h * w, 256),
        nn.ReLU(),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Linear(128, num_classes),
    )


class BasicBlock(nn.Module):
    """He et al. (2016)'s basic residual block: two 3x3 conv + batch-norm layers and an identity
    shortcut (a strided 1x1 conv + batch norm where the block downsamples or widens)."""

    def __init__(self, inputs: int, outputs: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inputs, outputs, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(outputs)
        self.conv2 = nn.Conv2d(outputs, outputs, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(outputs)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or inputs != outputs:
            self.shortcut = nn.Sequential(
                nn.Conv2d(inputs, outputs, 1, stride=stride, bias=False), nn.BatchNorm2d(outputs)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


def residual_net(
    blocks: int, width: int, num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE
) -> Classifier:
    """A CIFAR-style residual net (He et al. 2016, section 4.2): a 3x3 stem, three stages of `blocks`
    basic blocks at `width`, 2x and 4x `width` channels (the last two halve the resolution), global
    average pooling and a linear head; 6 * blocks + 2 layers deep.

    Images of 64 pixels a side or more get ImageNet's stem instead (a strided conv and a max pool: 4x
    smaller), which keeps a 224x224 image at about three times a 32x32 one's cost.
    """
    c, h, w = input_shape
    if min(h, w) >= 64:
        stem: list[nn.Module] = [
            nn.Conv2d(c, width, 3, stride=2, padding=1, bias=False),
            nn.BatchNorm2d(width),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=2, padding=1),
        ]
    else:
        stem = [nn.Conv2d(c, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU()]
    stages: list[nn.Module] = []
    inputs = width
    for stage in range(3):
        outputs = width * 2**stage
        for block in range(blocks):
            stages.append(BasicBlock(inputs, outputs, 2 if stage > 0 and block == 0 else 1))
            inputs = outputs
    model = _classifier(
        input_shape, *stem, *stages, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(inputs, num_classes)
    )
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return model


def resnet8(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """The RGB substitute (what `auto` picks for anything but 28x28 grayscale): one basic block per stage
    at 16, 32 and 64 channels, ~78k weights. The size was chosen by measurement
    (benchmarks/training_speed.py --rgb): it trains at ~1,200 32x32 RGB images/s on 2 CPU cores, so a
    1,500-step round of batch 100 takes about two minutes, where 24 or 32 channels or two blocks per
    stage took 1.8-2.8x longer."""
    return residual_net(1, 16, num_classes, input_shape)


def resnet14_wide(num_classes: int = 10, input_shape: InputShape = MNIST_SHAPE) -> Classifier:
    """A stronger residual net for RGB *targets*: two basic blocks per stage at 32, 64 and 128 channels
    (~0.7M weights), a different architecture from the `resnet8` substitute; ~5x slower to train."""
    return residual_net(2, 32, num_classes, input_shape)


Architecture = Callable[[int, InputShape], Classifier]

ARCHITECTURES: dict[str, Architecture] = {
    "cnn2": cnn2,
    "cnn2-wide": cnn2_wide,
    "lenet": lenet,
    "mlp": mlp,
    "resnet8": resnet8,
    "resnet14-wide": resnet14_wide,
}
