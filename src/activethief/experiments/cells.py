"""Cells: the independent units of work of an experiment grid, and how one is run.

A steal cell is one call of `steal` on a dataset with one setting and one repeat. Its seed derives from
(base seed, dataset, strategy, seeding, seed size, batch size, repeat) and deliberately not from the
budget, so a cell with a smaller budget is an exact prefix of one with a larger budget: experiments that
need the same trajectory to different lengths share one run (see `Task.share_key` and `Task.size`).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from activethief.experiments.grid import GridParams
from activethief.experiments.inputs import Inputs, InputSpec, load_inputs, torch_threads
from activethief.experiments.snapshots import SnapshotKeeper, shared_snapshots
from activethief.selection import Need, make_seeder, make_strategy
from activethief.steal import RoundEvent, StealConfig, StealResult, steal
from activethief.training import FitConfig

# Cost model of `Task.work`, in sample steps: one image through one training step (forward and backward),
# about 1/SAMPLE_STEPS_PER_SECOND s with 2 threads; predicting one image costs PREDICT_COST of that,
# k-means seeding KMEANS_COST per pool image; early stopping usually ends a cold round after
# TYPICAL_EPOCHS. Calibrated on the grid's own rows (2 cores, channels-last fit and predict): warm rounds
# train ~7,950 images/s, cold ones ~8,650, the per-cell time left over fits ~24,700 predicted images/s.
SAMPLE_STEPS_PER_SECOND = 8000.0
PREDICT_COST = 0.32
KMEANS_COST = 0.25
DEFAULT_TEST_SIZE = 10_000  # when the grid uses the whole test set
TYPICAL_EPOCHS = 8


def training_steps(fit: FitConfig, size: int, warm: bool) -> int:
    """The optimiser steps one round on `size` answers is expected to take (exact for warm rounds)."""
    if warm and fit.warm_steps:
        return fit.warm_steps
    per_epoch = math.ceil(max(1, round(size * (1 - fit.val_fraction))) / fit.batch_size)
    steps = max(fit.min_steps, min(fit.epochs, TYPICAL_EPOCHS) * per_epoch)
    return min(steps, fit.max_steps) if fit.max_steps else steps


def derive_seed(base_seed: int, *parts: object) -> int:
    """A stable 32-bit seed from a base seed and a tuple of parts (sha256, then numpy's SeedSequence)."""
    digest = hashlib.sha256(json.dumps([base_seed, *parts]).encode()).digest()
    return int(np.random.SeedSequence(int.from_bytes(digest[:16], "little")).generate_state(1)[0])


class Task(Protocol):
    """A unit of work of the grid. Steal cells are one kind; other experiments may add their own.

    A finished task covers every task with the same `share_key` and a `size` no larger than its own,
    so the planner runs each share key once, at the largest size any experiment asks for.
    """

    @property
    def dataset(self) -> str: ...

    @property
    def cell_id(self) -> str: ...

    @property
    def share_key(self) -> str: ...

    @property
    def size(self) -> int: ...

    def identity(self) -> dict[str, Any]:
        """The fields that identify the task, stored in each of its rows."""
        ...

    def work(self, pool_size: int, params: GridParams) -> float:
        """Estimated cost in sample steps (for the progress bar's ETA and the plan's time estimate)."""
        ...

    def run(self, inputs: Inputs, params: GridParams, work_dir: Path | None) -> list[dict[str, Any]]:
        """Compute the task's rows (one per round for a steal cell)."""
        ...


@dataclass(frozen=True, order=True)
class StealCell:
    """One `steal` run: dataset x setting x repeat, up to `budget` queries (stop = budget)."""

    dataset: str
    strategy: str
    seeding: str
    seed_size: int
    batch_size: int
    budget: int
    repeat: int

    @property
    def share_key(self) -> str:
        """Everything but the budget: cells with the same key are prefixes of one another."""
        return (
            f"{self.dataset}|{self.strategy}|{self.seeding}|s{self.seed_size}|b{self.batch_size}"
            f"|r{self.repeat}"
        )

    @property
    def cell_id(self) -> str:
        return f"{self.share_key}|n{self.budget}"

    @property
    def size(self) -> int:
        return self.budget

    def seed(self, base_seed: int) -> int:
        """The run seed: the same for every budget, so shorter runs are prefixes of longer ones."""
        return derive_seed(
            base_seed, self.dataset, self.strategy, self.seeding, self.seed_size, self.batch_size, self.repeat
        )

    def identity(self) -> dict[str, Any]:
        return {"kind": "steal", "cell_id": self.cell_id, "share_key": self.share_key, **asdict(self)}

    def train_sizes(self) -> list[int]:
        """How many answers each round after the seed round trains on."""
        sizes, size = [], min(self.seed_size, self.budget)
        while True:
            sizes.append(size)
            if size >= self.budget:
                return sizes
            size = min(size + self.batch_size, self.budget)

    def work(self, pool_size: int, params: GridParams) -> float:
        sizes = self.train_sizes()
        fit = self.config(params).fit
        train = sum(training_steps(fit, n, warm=i > 0) * fit.batch_size for i, n in enumerate(sizes))
        # Every round measures on the test set; the pool is scored only where the seeding or the strategy
        # reads scores, in the seed round and every round that selects (all but the last).
        scorings = int(Need.PROBS in make_seeder(self.seeding).needs)
        scorings += (len(sizes) - 1) * int(Need.PROBS in make_strategy(self.strategy).needs)
        predicted = (len(sizes) + 1) * (params.test_size or DEFAULT_TEST_SIZE) + scorings * pool_size
        cost = train + predicted * PREDICT_COST
        if "kmeans" in self.seeding:
            cost += pool_size * KMEANS_COST
        return float(cost)

    def snapshot_budgets(self, params: GridParams) -> tuple[int, ...]:
        """The transfer experiment's budgets this cell's trajectory reaches, when it is one of that
        experiment's trajectories (a strategies cell of a transfer strategy); else none."""
        trajectory = (self.seeding, self.seed_size, self.batch_size) == (
            "random",
            params.seed_size,
            params.batch_size,
        )
        if not trajectory or self.strategy not in params.transfer_strategies:
            return ()
        return tuple(b for b in params.transfer_budgets if b <= self.budget)

    def run(self, inputs: Inputs, params: GridParams, work_dir: Path | None) -> list[dict[str, Any]]:
        """Steal with this cell's settings; with `work_dir`, checkpoint there and resume what is there,
        and keep the substitutes the transfer experiment will attack (see `snapshots.py`)."""
        budgets = self.snapshot_budgets(params) if work_dir is not None else ()
        if work_dir is not None and budgets:
            folder = shared_snapshots(work_dir, self)
            keeper = SnapshotKeeper(folder, budgets, params.substitute, inputs.num_classes)
            result = self.run_steal(inputs, params, work_dir, on_round=keeper.capture)
        else:
            result = self.run_steal(inputs, params, work_dir)
        rows = [asdict(record) for record in result.history]
        for row in rows:
            row["stopped_by"] = result.stopped_by
            row["seed"] = self.seed(params.base_seed)
        return rows

    def config(self, params: GridParams) -> StealConfig:
        """This cell's steal settings."""
        return StealConfig(
            budget=self.budget,
            batch_size=self.batch_size,
            strategy=self.strategy,
            seeding=self.seeding,
            seed_size=self.seed_size,
            substitute=params.substitute,
            seed=self.seed(params.base_seed),
            fit=params.fit,
        )

    def run_steal(
        self,
        inputs: Inputs,
        params: GridParams,
        work_dir: Path | None,
        *,
        on_round: Callable[[RoundEvent], None] | None = None,
    ) -> StealResult:
        """The `steal` call behind `run` (other cells reuse the trajectory; `on_round` is steal's hook)."""
        return steal(
            inputs.oracle(),
            inputs.pool,
            self.config(params),
            test=(inputs.test_x, inputs.test_y),
            out=work_dir,
            resume=work_dir is not None,
            quiet=True,
            target_test_labels=inputs.target_labels,
            on_round=on_round,
        )


@dataclass(frozen=True)
class Job:
    """A task with everything a worker needs to run it."""

    task: Task
    spec: InputSpec
    params: GridParams
    threads: int
    work_dir: str | None = None


@dataclass
class Outcome:
    """What running a job gave: its rows, or the error that stopped it."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    error: str | None = None
    threads: int = 1
    pid: int = 0


def execute(job: Job, inputs: Inputs) -> Outcome:
    """Run one job with its thread count; an exception becomes `Outcome.error`, so other cells go on.

    The work folder (a checkpoint for resuming an interrupted cell) is removed by the driver once the
    cell's rows are saved.
    """
    started = time.perf_counter()
    work_dir = Path(job.work_dir) if job.work_dir is not None else None
    try:
        with torch_threads(job.threads):
            rows = job.task.run(inputs, job.params, work_dir)
    except Exception:
        return Outcome(
            seconds=time.perf_counter() - started,
            error=traceback.format_exc(limit=8),
            threads=job.threads,
            pid=os.getpid(),
        )
    return Outcome(rows=rows, seconds=time.perf_counter() - started, threads=job.threads, pid=os.getpid())


def execute_here(job: Job) -> Outcome:
    """Load the job's inputs in this process (cached) and run it: the entry point of pool workers."""
    return execute(job, load_inputs(job.spec, job.threads))
