"""Run experiments: plan the cells, skip finished ones, run the rest on an executor, append every result."""

from __future__ import annotations

import datetime as dt
import shutil
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activethief import __version__, data
from activethief.errors import ConfigError
from activethief.experiments.cells import SAMPLE_STEPS_PER_SECOND, Job, Outcome, Task
from activethief.experiments.executors import Executor, SerialExecutor
from activethief.experiments.grid import GridParams
from activethief.experiments.inputs import InputSpec, ensure_target, load_inputs, settings_for, target_path
from activethief.experiments.registry import Experiment, Scope, plan_tasks, resolve_experiments
from activethief.experiments.snapshots import safe_name
from activethief.experiments.store import (
    CELLS,
    Results,
    append_rows,
    complete_cells,
    read_config,
    read_rows,
    write_config,
)
from activethief.progress import Progress

DATASETS: tuple[str, ...] = ("mnist", "fashion-mnist")


def seconds_per_work() -> float:
    """Seconds per unit of `Task.work` (one sample step) with the default two threads."""
    return 1.0 / SAMPLE_STEPS_PER_SECOND


def resolve_datasets(names: str | Sequence[str]) -> list[str]:
    """`all`, one name, a comma-separated list or a sequence; each must be a known dataset."""
    wanted = [n.strip() for n in (names.split(",") if isinstance(names, str) else names) if n.strip()]
    if "all" in wanted:
        return list(DATASETS)
    for name in wanted:
        data.get_spec(name)  # DataError naming the known datasets
    if not wanted:
        raise ConfigError(f"name a dataset: all, {', '.join(DATASETS)}")
    return list(dict.fromkeys(wanted))


@dataclass
class Plan:
    """The cells a set of experiments needs on some datasets, with their cost."""

    tasks: list[Task]
    pool_sizes: dict[str, int]
    params: GridParams

    def queries(self, tasks: Sequence[Task] | None = None) -> int:
        """Queries the tasks buy (a steal cell buys its budget)."""
        return sum(t.size for t in (self.tasks if tasks is None else tasks))

    def work(self, tasks: Sequence[Task] | None = None) -> float:
        return sum(self.work_of(t) for t in (self.tasks if tasks is None else tasks))

    def work_of(self, task: Task) -> float:
        return task.work(self.pool_sizes[task.dataset], self.params)

    def seconds(self, tasks: Sequence[Task] | None = None) -> float:
        """Estimated serial seconds (one 2-thread worker)."""
        return self.work(tasks) * seconds_per_work()

    def by_dataset(self) -> dict[str, list[Task]]:
        groups: dict[str, list[Task]] = {}
        for task in self.tasks:
            groups.setdefault(task.dataset, []).append(task)
        return groups


def plan_grid(
    experiments: Sequence[Experiment], datasets: Sequence[str], params: GridParams, pool_sizes: dict[str, int]
) -> Plan:
    """Validate the parameters against each pool and list the (shared) cells."""
    scopes = []
    for dataset in datasets:
        params.validate(pool_sizes[dataset])
        scopes.append(Scope(dataset, params, pool_sizes[dataset]))
    return Plan(plan_tasks(experiments, scopes), dict(pool_sizes), params)


def pool_size_of(dataset: str, params: GridParams, data_dir: Path | str | None = None) -> int:
    """The pool size a grid uses on a dataset (its training set, or the configured slice of it)."""
    full = len(data.load(dataset, "train", root=data_dir)[1])
    return full if params.pool_size is None else min(params.pool_size, full)


def input_spec(dataset: str, target: Path, params: GridParams, data_dir: Path | str | None) -> InputSpec:
    """What a cell of `dataset` loads: the pool and test slices, and the target at `target`."""
    return InputSpec(
        dataset,
        str(target.resolve()),
        params.pool_size,
        params.test_size,
        None if data_dir is None else str(data_dir),
    )


def trained_settings(
    datasets: Sequence[str],
    params: GridParams,
    target_dir: Path | str,
    data_dir: Path | str | None = None,
) -> dict[str, dict[str, Any]]:
    """The row settings of each dataset whose target is already trained (nothing is trained here)."""
    settings = {}
    for dataset in datasets:
        path = target_path(target_dir, dataset)
        if path.is_file():
            inputs = load_inputs(input_spec(dataset, path, params, data_dir), 1)
            settings[dataset] = settings_for(inputs, params)
    return settings


def unfinished(plan: Plan, out: Path, settings: dict[str, dict[str, Any]]) -> list[Task]:
    """The plan's tasks with no finished rows under `out`, longest first (so a pool ends evenly).

    A dataset missing from `settings` (its target is not trained yet) has no finished task.
    """
    done = Results(complete_cells(read_rows(out / CELLS)), settings)
    todo = [
        t
        for t in plan.tasks
        if t.dataset not in settings
        or not done.covers(settings[t.dataset]["settings_id"], t.share_key, t.size)
    ]
    return sorted(todo, key=lambda t: -plan.work_of(t))


@dataclass
class GridReport:
    """What `run_experiments` did."""

    experiments: list[str]
    datasets: list[str]
    planned: int
    skipped: int
    ran: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    queries: int = 0
    queries_to_run: int = 0
    estimated_seconds: float = 0.0
    wall_seconds: float = 0.0
    interrupted: bool = False


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def _work_dir(out: Path, settings_id: str, cell_id: str) -> str:
    return str(out / "work" / settings_id / safe_name(cell_id))


def run_experiments(
    names: str | Sequence[str],
    datasets: str | Sequence[str] = "all",
    *,
    out: Path | str,
    params: GridParams | None = None,
    target_dir: Path | str = "runs/targets",
    data_dir: Path | str | None = None,
    executor: Executor | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
    on_cell: Callable[[Task, list[dict[str, Any]]], None] | None = None,
) -> GridReport:
    """Run the named experiments' cells that `out` does not hold yet, appending each as it finishes.

    Args:
        names: experiment names, `all`, or a comma-separated list.
        datasets: dataset names, `all` (mnist and fashion-mnist), or a comma-separated list.
        out: results folder (`cells.jsonl`, `config.json`, `work/` checkpoints of unfinished cells).
        params: the grid (`GridParams()` follows the study; `QUICK` is a reduced grid).
        target_dir: targets live at `<target_dir>/<dataset>-cnn2.pt`; missing ones are trained first.
        data_dir: dataset cache.
        executor: serial (default), `LocalPoolExecutor` or `RayExecutor`.
        progress: show a progress bar over cells, with an ETA weighted by each cell's estimated cost.
        log: where to write one-line messages.
        on_cell: called in the driver after each finished cell is saved, with its rows.
    """
    experiments = resolve_experiments(names)
    dataset_names = resolve_datasets(datasets)
    params = params or GridParams()
    executor = executor or SerialExecutor()
    out = Path(out)
    say = log or (lambda message: None)

    specs: dict[str, InputSpec] = {}
    settings: dict[str, dict[str, Any]] = {}
    targets: dict[str, dict[str, Any]] = {}
    pool_sizes: dict[str, int] = {}
    for dataset in dataset_names:
        path = ensure_target(dataset, target_dir, data_dir=data_dir, log=say)
        spec = input_spec(dataset, path, params, data_dir)
        inputs = load_inputs(spec, executor.threads)
        specs[dataset], pool_sizes[dataset] = spec, len(inputs.pool)
        settings[dataset] = settings_for(inputs, params)
        targets[dataset] = {
            "path": str(path),
            "sha256": inputs.target_sha256,
            "test_accuracy": inputs.target_accuracy,
            "test_size": len(inputs.test_y),
            "trained_test_accuracy": inputs.target_metadata.get("test_accuracy"),
        }
    plan = plan_grid(experiments, dataset_names, params, pool_sizes)
    todo = unfinished(plan, out, settings)

    report = GridReport(
        experiments=[e.name for e in experiments],
        datasets=dataset_names,
        planned=len(plan.tasks),
        skipped=len(plan.tasks) - len(todo),
        queries=plan.queries(),
        queries_to_run=plan.queries(todo),
        estimated_seconds=plan.seconds(todo),
    )
    config = _update_config(out, params, settings, targets, report.experiments, say)
    invocation: dict[str, Any] = {
        "started": _now(),
        "experiments": report.experiments,
        "datasets": dataset_names,
        "executor": executor.name,
        "workers": executor.workers,
        "threads": executor.threads,
        "cells_planned": report.planned,
        "cells_to_run": len(todo),
        "queries_to_run": report.queries_to_run,
        "estimated_serial_seconds": round(report.estimated_seconds),
    }
    config.setdefault("invocations", []).append(invocation)
    write_config(out, config)
    say(
        f"{report.planned} cells planned, {report.skipped} already done, {len(todo)} to run "
        f"({report.queries_to_run:,} queries, about {report.estimated_seconds / 3600:.1f} h on one worker"
        + (
            f", {report.estimated_seconds / 3600 / executor.workers:.1f} h on {executor.workers})"
            if executor.workers > 1
            else ")"
        )
    )

    bar = _Progress(progress, plan.work(todo), len(todo))

    def on_done(job: Job, outcome: Outcome) -> None:
        task = job.task
        rows: list[dict[str, Any]] = []
        if outcome.error is not None:
            report.failed.append((task.cell_id, outcome.error))
            say(f"cell {task.cell_id} failed: {outcome.error.strip().splitlines()[-1]}")
        else:
            attempt, finished = uuid.uuid4().hex, _now()
            rows = [
                {
                    **settings[task.dataset],
                    **task.identity(),
                    "size": task.size,
                    **row,
                    "n_rows": len(outcome.rows),
                    "cell_seconds": round(outcome.seconds, 3),
                    "attempt": attempt,
                    "threads": outcome.threads,
                    "executor": executor.name,
                    "version": __version__,
                    "finished_at": finished,
                }
                for row in outcome.rows
            ]
            append_rows(out / CELLS, rows)
            report.ran += 1
            if job.work_dir is not None:  # the cell is saved: its checkpoint is no longer needed
                shutil.rmtree(job.work_dir, ignore_errors=True)
        bar.advance(plan.work_of(task))
        # The time so far, after every cell: a run that is killed outright (kill -9, out of memory)
        # still leaves its wall time for the report.
        invocation.update(
            wall_seconds=round(time.perf_counter() - started, 1),
            cells_run=report.ran,
            cells_failed=len(report.failed),
        )
        write_config(out, config)
        if on_cell is not None and rows:
            on_cell(task, rows)

    jobs = [
        Job(
            t,
            specs[t.dataset],
            params,
            executor.threads,
            _work_dir(out, settings[t.dataset]["settings_id"], t.cell_id),
        )
        for t in todo
    ]
    started = time.perf_counter()
    try:
        executor.run(jobs, on_done)
    except BaseException:
        report.interrupted = True
        raise
    finally:
        bar.close()
        report.wall_seconds = time.perf_counter() - started
        invocation.update(
            finished=_now(),
            wall_seconds=round(report.wall_seconds, 1),
            cells_run=report.ran,
            cells_failed=len(report.failed),
            interrupted=report.interrupted,
        )
        write_config(out, config)
    return report


def _update_config(
    out: Path,
    params: GridParams,
    settings: dict[str, dict[str, Any]],
    targets: dict[str, dict[str, Any]],
    experiments: list[str],
    say: Callable[[str], None],
) -> dict[str, Any]:
    """The folder's config with this invocation's grid, settings and targets merged in."""
    config = read_config(out) or {}
    grid = params.to_dict()
    if config.get("grid") not in (None, grid):
        say(f"the grid differs from the one recorded in {out}; the report will use this one")
    for dataset, new in settings.items():
        old = config.get("settings", {}).get(dataset)
        if old is not None and old["settings_id"] != new["settings_id"]:
            changed = ", ".join(k for k in new if k != "settings_id" and old.get(k) != new[k])
            say(
                f"{dataset}: settings changed ({changed}); rows computed with the old settings stay in "
                f"{CELLS} but are not mixed with the new ones"
            )
    config.update(version=__version__, grid=grid, results=CELLS)
    config.setdefault("settings", {}).update(settings)
    config.setdefault("targets", {}).update(targets)
    config["experiments"] = list(dict.fromkeys([*config.get("experiments", []), *experiments]))
    return config


class _Progress:
    """Cells done over cells planned, on a bar whose ETA weighs each cell by its estimated cost (cells
    differ 100-fold)."""

    def __init__(self, enabled: bool, total_work: float, cells: int) -> None:
        self.cells, self.done = cells, 0
        self.bar = Progress(
            enabled and cells > 0,
            total_work,
            f"cells 0/{cells}",
            dynamic_ncols=True,
            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}]",
        )

    def advance(self, work: float) -> None:
        self.done += 1
        self.bar.advance(work, desc=f"cells {self.done}/{self.cells}")

    def close(self) -> None:
        self.bar.close()
