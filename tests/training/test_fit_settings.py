"""FitConfig's stored form: fields added later appear only when set, so older runs and results still match."""

from __future__ import annotations

from dataclasses import asdict, replace

from activethief.experiments.grid import GridParams
from activethief.steal import DEFAULT_FIT, StealConfig
from activethief.training import FitConfig, SemiConfig
from activethief.training.fit import ADDED_LATER


def test_newer_fields_at_their_default_are_left_out_and_read_back() -> None:
    fit = FitConfig()
    stored = fit.to_dict()
    assert set(ADDED_LATER).isdisjoint(stored)
    assert set(stored) | set(ADDED_LATER) == set(asdict(fit))
    assert FitConfig.from_dict(stored) == fit


def test_newer_fields_that_are_set_are_stored_and_read_back() -> None:
    fit = FitConfig(
        hflip=True, semi=SemiConfig(method="pseudo"), label_smoothing=0.2, ema=0.99, temperature=2.0
    )
    stored = fit.to_dict()
    assert set(ADDED_LATER) <= set(stored)
    assert (
        stored["hflip"] is True and stored["label_smoothing"] == 0.2 and stored["semi"]["method"] == "pseudo"
    )
    assert stored["ema"] == 0.99 and stored["temperature"] == 2.0
    assert FitConfig.from_dict(stored) == fit
    assert FitConfig.from_dict(replace(fit, label_smoothing=0.0).to_dict()).label_smoothing == 0.0


def test_run_folders_and_grids_store_the_short_form() -> None:
    stored = StealConfig(budget=10).to_dict()["fit"]
    assert stored == DEFAULT_FIT.to_dict() and "label_smoothing" not in stored
    assert "semi" not in GridParams().to_dict()["fit"]
    assert GridParams.from_dict(GridParams().to_dict()) == GridParams()
