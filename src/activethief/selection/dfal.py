"""DFAL: DeepFool active learning, the adversarial strategy of ActiveThief (Pal et al., AAAI 2020).

DFAL (Ducoffe & Precioso, 2018) queries the points closest to the substitute's decision boundary, where
the distance is the L2 norm of the DeepFool perturbation (Moosavi-Dezfooli et al., CVPR 2016) that flips
the substitute's predicted class: the smaller, the more informative. DeepFool costs a forward and C
backward passes per image and iteration, so when the candidates are many only the `max_candidates`
most uncertain by entropy (a cheap score) are attacked.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from activethief.errors import ConfigError
from activethief.selection.base import IndexArray, Need, PoolView, Strategy
from activethief.selection.scorers import Entropy


def deepfool_distances(
    model: nn.Module,
    images: np.ndarray,
    *,
    max_iter: int = 10,
    overshoot: float = 0.02,
    batch_size: int = 256,
) -> np.ndarray:
    """L2 norm of the DeepFool perturbation flipping each image's predicted class, float64 [n].

    Multi-class DeepFool, L2, with images kept in [0, 1]; an image not flipped within `max_iter`
    steps gets `inf` (farther than any flipped one). The model's weights are not touched.
    """
    distances = np.full(len(images), np.inf)
    was_training = model.training
    model.eval()
    with torch.enable_grad():
        for start in range(0, len(images), batch_size):
            x0 = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size], dtype=np.float32))
            distances[start : start + len(x0)] = _deepfool_batch(model, x0, max_iter, overshoot)
    model.train(was_training)
    return distances


def _deepfool_batch(model: nn.Module, x0: torch.Tensor, max_iter: int, overshoot: float) -> np.ndarray:
    n = len(x0)
    rows = torch.arange(n)
    with torch.no_grad():
        original = model(x0).argmax(1)
    total = torch.zeros_like(x0)
    found = torch.full((n,), float("inf"), dtype=torch.float64)
    active = torch.ones(n, dtype=torch.bool)
    for _ in range(max_iter + 1):
        x = (x0 + (1 + overshoot) * total).clamp(0.0, 1.0).requires_grad_(True)
        logits = model(x)
        flipped = active & (logits.argmax(1) != original)
        found[flipped] = (x.detach() - x0).flatten(1).norm(dim=1)[flipped].double()
        active &= ~flipped
        if not bool(active.any()):
            break
        grads = torch.stack(
            [
                torch.autograd.grad(logits[:, c].sum(), x, retain_graph=True)[0]
                for c in range(logits.shape[1])
            ],
            dim=1,
        )  # [n, C, ...]: d logit_c / d x, one backward pass per class
        f = logits.detach()
        w = grads - grads[rows, original][:, None]
        gap = (f - f[rows, original][:, None]).abs()
        norms = w.flatten(2).norm(dim=2) + 1e-8
        ratio = gap / norms
        ratio[rows, original] = float("inf")
        nearest = ratio.argmin(1)
        scale = (ratio[rows, nearest] + 1e-4) / norms[rows, nearest]
        step = scale.view(n, *([1] * (x0.ndim - 1))) * w[rows, nearest]
        total = total + step * active.view(n, *([1] * (x0.ndim - 1)))
    return found.numpy()


class DFAL(Strategy):
    """`dfal`: the `k` candidates with the smallest DeepFool distance under the substitute.

    Args:
        max_candidates: DeepFool runs on at most this many candidates (never fewer than `k`), the most
            uncertain by entropy; the rest are not attacked. Bounds the cost per round.
        max_iter: DeepFool iterations per image.
        overshoot: DeepFool's overshoot.
    """

    name = "dfal"
    needs: frozenset[Need] = frozenset({Need.PROBS, Need.MODEL, Need.IMAGES})

    def __init__(self, *, max_candidates: int = 2000, max_iter: int = 10, overshoot: float = 0.02) -> None:
        if isinstance(max_candidates, bool) or not isinstance(max_candidates, int) or max_candidates < 1:
            raise ConfigError(f"DFAL max_candidates must be a positive integer, got {max_candidates!r}")
        if max_iter < 1 or not overshoot >= 0:
            raise ConfigError(f"DFAL needs max_iter >= 1 and overshoot >= 0, got {max_iter}, {overshoot}")
        self.max_candidates, self.max_iter, self.overshoot = max_candidates, max_iter, overshoot

    def choose(
        self,
        view: PoolView,
        labelled: IndexArray,
        candidates: IndexArray,
        k: int,
        rng: np.random.Generator,
    ) -> IndexArray:
        keep = max(k, self.max_candidates)
        if candidates.size > keep:  # the cheap score first: the most uncertain, in ascending index order
            candidates = np.sort(candidates[Entropy().rank(view.need_probs(), candidates)[:keep]])
        images = view.need(Need.IMAGES)[candidates]
        distances = deepfool_distances(
            view.need(Need.MODEL), images, max_iter=self.max_iter, overshoot=self.overshoot
        )
        return candidates[np.argsort(distances, kind="stable")[:k]].astype(np.int64, copy=False)
