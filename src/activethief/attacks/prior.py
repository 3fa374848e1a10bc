"""The substitute as a free prior for query attacks: its margin loss and gradients, no target queries.

Any `nn.Module` mapping images to logits works (a single stolen model or an ensemble of them). All
functions run in eval mode on the module's device, in batches, and return CPU results.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from activethief.attacks.base import _device


def logit_margin(logits: torch.Tensor, goal: torch.Tensor, *, targeted: bool) -> torch.Tensor:
    """Margin loss [b] on logits, below 0 exactly when the goal is reached (as `query.margin`)."""
    at_goal = logits.gather(1, goal[:, None])[:, 0]
    others = logits.scatter(1, goal[:, None], float("-inf")).amax(1)
    return others - at_goal if targeted else at_goal - others


@torch.no_grad()
def substitute_margin(
    model: nn.Module, images: np.ndarray, goal: np.ndarray, *, targeted: bool, batch_size: int = 1024
) -> np.ndarray:
    """float64 [n]: the substitute's margin loss on `images` [n, C, H, W] for the goal classes [n]."""
    device = _device(model)
    was_training = model.training
    model.eval()
    try:
        chunks = [np.zeros(0)]
        for start in range(0, len(images), batch_size):
            xb = torch.from_numpy(np.ascontiguousarray(images[start : start + batch_size])).to(device)
            gb = torch.from_numpy(goal[start : start + batch_size]).to(device)
            chunks.append(logit_margin(model(xb), gb, targeted=targeted).double().cpu().numpy())
    finally:
        model.train(was_training)
    return np.concatenate(chunks)


def margin_gradient(
    model: nn.Module,
    x: torch.Tensor,
    goal: torch.Tensor,
    *,
    targeted: bool,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Gradient [b, ...] of the substitute's summed margin loss w.r.t. `x` (descend it to succeed).

    With `weights` [b, C], the objective is instead the random logit combination `-(weights * logits)`,
    the output-diversified direction of ODS (Tashiro et al., NeurIPS 2020) that spreads restarts apart.
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    if weights is None:
        loss = logit_margin(logits, goal, targeted=targeted).sum()
    else:
        loss = -(weights * logits).sum()
    (grad,) = torch.autograd.grad(loss, x)
    return grad
