"""The study's experiments as data: grids of independent cells, a resumable runner (serial, process pool,
Ray), tidy JSONL results, and a report with CSV tables and figures beside the study's numbers.

    from activethief.experiments import QUICK, run_experiments, write_report
    run_experiments("all", "mnist", out="results", params=QUICK)
    write_report("results", "docs/results")
"""

from activethief.experiments import definitions as definitions  # registers the built-in experiments
from activethief.experiments.cells import Job, Outcome, StealCell, Task, derive_seed
from activethief.experiments.definitions import stop_point
from activethief.experiments.executors import (
    Executor,
    LocalPoolExecutor,
    RayExecutor,
    SerialExecutor,
    make_executor,
    split_cpus,
)
from activethief.experiments.grid import QUICK, GridParams
from activethief.experiments.registry import (
    EXPERIMENTS,
    Experiment,
    FigureSpec,
    Scope,
    plan_tasks,
    register_experiment,
    resolve_experiments,
)
from activethief.experiments.report import ReportFiles, summarise, write_report
from activethief.experiments.runner import GridReport, Plan, plan_grid, run_experiments
from activethief.experiments.store import TIMING_FIELDS, Results, append_rows, complete_cells, read_rows

__all__ = [
    "EXPERIMENTS",
    "QUICK",
    "TIMING_FIELDS",
    "Executor",
    "Experiment",
    "FigureSpec",
    "GridParams",
    "GridReport",
    "Job",
    "LocalPoolExecutor",
    "Outcome",
    "Plan",
    "RayExecutor",
    "ReportFiles",
    "Results",
    "Scope",
    "SerialExecutor",
    "StealCell",
    "Task",
    "append_rows",
    "complete_cells",
    "derive_seed",
    "make_executor",
    "plan_grid",
    "plan_tasks",
    "read_rows",
    "register_experiment",
    "resolve_experiments",
    "run_experiments",
    "split_cpus",
    "stop_point",
    "summarise",
    "write_report",
]
