"""Augmentations: shapes, ranges, what each transform does to a known image, determinism from a seed."""

from __future__ import annotations

import pytest
import torch

from activethief.training.augment import (
    cutout,
    random_affine,
    random_colour,
    random_hflip,
    random_shift,
    strong_augment,
    weak_augment,
)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


@pytest.mark.parametrize("channels", [1, 3])
def test_shift_moves_every_channel_by_the_same_offset(channels: int) -> None:
    x = torch.zeros(4, channels, 8, 8)
    x[:, :, 4, 4] = torch.arange(1, channels + 1, dtype=torch.float32)  # one bright pixel per channel
    shifted = random_shift(x, 2, _gen())
    assert shifted.shape == x.shape
    for image in shifted:
        spots = [torch.nonzero(image[c]).tolist() for c in range(channels)]
        assert all(spot == spots[0] and len(spot) == 1 for spot in spots)  # same place in each channel
        ((row, col),) = spots[0]
        assert abs(row - 4) <= 2 and abs(col - 4) <= 2
        assert image[:, row, col].tolist() == list(range(1, channels + 1))


def test_shift_of_zero_pixels_is_the_identity() -> None:
    x = torch.rand(3, 1, 6, 6, generator=_gen())
    assert torch.equal(random_shift(x, 0, _gen()), x)


def test_hflip_mirrors_exactly_the_images_it_picks() -> None:
    x = torch.rand(64, 3, 5, 5, generator=_gen())
    out = random_hflip(x, _gen(1))
    flipped = [bool(torch.equal(o, i.flip(2))) for o, i in zip(out, x, strict=True)]
    kept = [bool(torch.equal(o, i)) for o, i in zip(out, x, strict=True)]
    assert all(f != k for f, k in zip(flipped, kept, strict=True))
    assert 10 < sum(flipped) < 54


def test_cutout_zeroes_one_square_and_leaves_the_rest() -> None:
    x = torch.ones(16, 1, 20, 20)
    out = cutout(x, _gen())
    for image in out[:, 0]:
        zero = torch.nonzero(image == 0)
        assert len(zero) >= 1
        rows, cols = zero[:, 0], zero[:, 1]
        height, width = int(rows.max() - rows.min() + 1), int(cols.max() - cols.min() + 1)
        assert len(zero) == height * width  # a rectangle (a square cut by the border)
        assert max(height, width) <= 10
        assert set(image.unique().tolist()) <= {0.0, 1.0}


def test_affine_and_colour_keep_shape_and_range() -> None:
    x = torch.rand(8, 3, 12, 12, generator=_gen())
    warped = random_affine(x, _gen())
    coloured = random_colour(x, _gen())
    assert warped.shape == coloured.shape == x.shape
    assert float(coloured.min()) >= 0 and float(coloured.max()) <= 1
    assert not torch.allclose(warped, x)


@pytest.mark.parametrize("hflip", [False, True])
def test_views_are_deterministic_from_the_seed(hflip: bool) -> None:
    x = torch.rand(6, 1, 28, 28, generator=_gen())
    a, b = strong_augment(x, _gen(3), hflip=hflip), strong_augment(x, _gen(3), hflip=hflip)
    assert torch.equal(a, b)
    assert not torch.equal(a, strong_augment(x, _gen(4), hflip=hflip))
    assert torch.equal(weak_augment(x, 2, _gen(5), hflip=hflip), weak_augment(x, 2, _gen(5), hflip=hflip))
