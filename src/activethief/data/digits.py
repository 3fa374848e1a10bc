"""`sklearn-digits`: scikit-learn's 1,797 handwritten digits as a small pool from another source.

The images ship with scikit-learn (`sklearn.datasets.load_digits`, the UCI optical recognition set:
8x8 blocks of counts 0..16, ink high), so the pool needs no download. They are scaled to [0, 1] and
upsampled to the target's shape with bilinear interpolation (`torch.nn.functional.interpolate`,
`align_corners=False`), then quantised to uint8; RGB targets get the grey replicated in all three
channels.

- `sklearn-digits`: the digit fills the whole image (as the 8x8 block does).
- `sklearn-digits:framed`: the digit fills the central 20/28 of each side, as MNIST frames its digits
  (LeCun et al., 1998: a 20x20 box in a 28x28 image), the rest black.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from activethief.data.pools import Pool, PoolSource, PoolSummary
from activethief.data.registry import Shape
from activethief.errors import DataError

DIGITS_NAME = "sklearn-digits"
DIGITS_LAYOUTS = ("full", "framed")
MNIST_BOX = 20 / 28  # the share of each side MNIST's digits occupy


def load_sklearn_digits() -> np.ndarray:
    """The 1,797 digits as float32 [1797, 8, 8] in [0, 1] (counts 0..16 divided by 16)."""
    try:
        from sklearn.datasets import load_digits
    except ImportError as exc:  # pragma: no cover - scikit-learn is a dependency
        raise DataError("the sklearn-digits pool needs scikit-learn (pip install scikit-learn)") from exc
    images: np.ndarray = np.asarray(load_digits().images, dtype=np.float32) / np.float32(16.0)
    return images


def upsample(images: np.ndarray, shape: Shape, *, framed: bool) -> np.ndarray:
    """float [N, h, w] in [0, 1] resized (bilinear) to uint8 [N, C, H, W], in a MNIST-like frame if asked."""
    c, h, w = shape
    box_h, box_w = (max(1, round(h * MNIST_BOX)), max(1, round(w * MNIST_BOX))) if framed else (h, w)
    resized = F.interpolate(
        torch.from_numpy(images)[:, None], size=(box_h, box_w), mode="bilinear", align_corners=False
    )
    top, left = (h - box_h) // 2, (w - box_w) // 2
    canvas = torch.zeros(len(images), 1, h, w)
    canvas[:, :, top : top + box_h, left : left + box_w] = resized
    out = torch.round(canvas.clamp(0, 1) * 255).to(torch.uint8).numpy()
    return np.repeat(out, c, axis=1) if c > 1 else out


@dataclass(frozen=True)
class DigitsReader:
    """`sklearn-digits` or `sklearn-digits:framed`: scikit-learn's digits in the target's shape.

    Without a shape the digits stay at their own 8x8.
    """

    kind: str = "digits"

    def accepts(self, source: PoolSource) -> bool:
        return isinstance(source, str) and source.partition(":")[0] == DIGITS_NAME

    def open(self, source: PoolSource, shape: Shape | None) -> Pool:
        layout = str(source).partition(":")[2] or "full"
        if layout not in DIGITS_LAYOUTS:
            raise DataError(
                f"bad pool {source!r}: write {DIGITS_NAME} (the digit fills the image) or "
                f"{DIGITS_NAME}:framed (in MNIST's 20/28 frame)"
            )
        digits = load_sklearn_digits()
        images = upsample(digits, shape or (1, 8, 8), framed=layout == "framed")
        storage = "uint8, in memory (upsampled bilinearly from 8x8)"
        summary = PoolSummary(f"{DIGITS_NAME}:{layout}", self.kind, storage, len(images))
        return Pool(images, "NCHW", summary)
