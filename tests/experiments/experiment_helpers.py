"""Shared pieces of the experiment tests: the tiny grid and row comparison."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from activethief.experiments import TIMING_FIELDS, GridParams, GridReport
from activethief.experiments.store import CELLS, complete_cells, read_rows
from activethief.training import FitConfig

TINY = GridParams(
    repeats=2,
    pool_size=600,
    test_size=200,
    batch_size=100,
    seed_size=100,
    seed_sizes=(100, 200),
    seedings=("random", "kmeans:5"),
    strategies=("random", "entropy"),
    strategies_budget=300,
    checkpoints=(200, 300),
    seed_size_budget=300,
    alphas=(0.01, 0.5),
    patiences=(1, 2),
    fit=FitConfig(epochs=1, patience=1, batch_size=100, warmup_steps=2),
)


@dataclass
class GridRun:
    """A finished tiny grid: its results folder and what the runner reported."""

    out: Path
    report: GridReport


def finished_rows(out: Path) -> list[dict[str, Any]]:
    """Every row of every complete cell in a results folder."""
    return [row for rows in complete_cells(read_rows(out / CELLS)).values() for row in rows]


def comparable(rows: list[dict[str, Any]]) -> list[str]:
    """Rows without their timing fields, as sorted canonical JSON: equal lists mean identical results."""
    return sorted(
        json.dumps({k: v for k, v in row.items() if k not in TIMING_FIELDS}, sort_keys=True) for row in rows
    )
