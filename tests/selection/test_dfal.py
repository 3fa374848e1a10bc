"""DFAL: DeepFool distances (Moosavi-Dezfooli et al., 2016) on a model whose boundary is known."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from activethief.selection import Need, PoolView, make_strategy
from activethief.selection.dfal import DFAL, deepfool_distances


def _linear_two_class() -> nn.Module:
    """logit_1 - logit_0 = 2 * (mean pixel - 0.5): the boundary is the plane of mean pixel 0.5."""
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[-0.25] * 4, [0.25] * 4]))
        model[1].bias.copy_(torch.tensor([0.5, -0.5]))
    return model


def test_the_distance_to_a_linear_boundary_is_exact() -> None:
    levels = np.array([0.1, 0.3, 0.45, 0.8], dtype=np.float32)
    images = np.repeat(levels[:, None], 4, axis=1).reshape(4, 1, 2, 2)
    distances = deepfool_distances(_linear_two_class(), images, overshoot=0.0)
    # every pixel moves by |0.5 - level|: L2 distance 2 * |0.5 - level| (plus DeepFool's 1e-4 step)
    np.testing.assert_allclose(distances, 2 * np.abs(0.5 - levels), atol=1e-3)


def test_dfal_picks_the_points_nearest_the_boundary() -> None:
    levels = np.array([0.05, 0.48, 0.9, 0.55, 0.2, 0.6], dtype=np.float32)
    images = np.repeat(levels[:, None], 4, axis=1).reshape(6, 1, 2, 2)
    probs = np.full((6, 2), 0.5, dtype=np.float32)
    view = PoolView(size=6, probs=probs, images=images, model=_linear_two_class())
    chosen = make_strategy("dfal").select(
        view, np.array([], np.int64), np.arange(6), 3, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, [1, 3, 5])  # |0.5 - level| = 0.02, 0.05, 0.1


def test_only_the_most_uncertain_candidates_are_attacked() -> None:
    levels = np.array([0.49, 0.1, 0.9, 0.3], dtype=np.float32)
    images = np.repeat(levels[:, None], 4, axis=1).reshape(4, 1, 2, 2)
    probs = np.array([[0.99, 0.01], [0.5, 0.5], [0.6, 0.4], [0.98, 0.02]], dtype=np.float32)
    view = PoolView(size=4, probs=probs, images=images, model=_linear_two_class())
    chosen = DFAL(max_candidates=2).select(
        view, np.array([], np.int64), np.arange(4), 1, np.random.default_rng(0)
    )
    np.testing.assert_array_equal(chosen, [2])  # 0 is nearest, but only 1 and 2 (highest entropy) are scored


def test_dfal_declares_what_it_reads_and_checks_its_settings() -> None:
    assert make_strategy("dfal").needs == {Need.PROBS, Need.MODEL, Need.IMAGES}
    assert make_strategy("dfal+kcenter").needs == {Need.PROBS, Need.MODEL, Need.IMAGES}
    with pytest.raises(Exception, match="max_candidates"):
        DFAL(max_candidates=0)
