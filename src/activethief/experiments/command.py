"""`activethief experiment` (run the study's grid, resumable) and `activethief report` (tables, figures)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from activethief.cli import friendly
from activethief.errors import ConfigError

if TYPE_CHECKING:
    from activethief.experiments.cells import Task


def register(app: typer.Typer) -> None:
    """Add the `experiment` and `report` commands to the CLI app."""
    app.command("experiment")(experiment_command)
    app.command("report")(report_command)


@friendly
def experiment_command(
    name: Annotated[
        str,
        typer.Argument(
            help="all (the study's five), or experiments (comma-separated): seeding, strategies, seed-size, "
            "stopping, full-data, and transfer (adversarial transfer vs budget; not part of all)."
        ),
    ],
    dataset: Annotated[
        str, typer.Option(help="mnist, fashion-mnist or all (comma-separated for several).")
    ] = "all",
    repeats: Annotated[int | None, typer.Option(help="Repeats per cell (default 5; 2 with --quick).")] = None,
    out: Annotated[Path, typer.Option(help="Results folder: cells.jsonl, config.json.")] = Path("results"),
    workers: Annotated[
        int | None, typer.Option(help="Local worker processes (default: CPUs / threads per cell).")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per cell (default 2, or CPUs / --workers).")
    ] = None,
    ray_address: Annotated[
        str | None, typer.Option(help="Run cells as Ray tasks: auto, HOST:PORT or local.")
    ] = None,
    quick: Annotated[bool, typer.Option("--quick", help="A reduced grid that runs in minutes.")] = False,
    target_dir: Annotated[
        Path, typer.Option(help="Targets <dir>/<dataset>-cnn2.pt; missing ones are trained first.")
    ] = Path("runs/targets"),
    data_dir: Annotated[Path | None, typer.Option(help="Dataset cache folder.")] = None,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Print the cells, how many --out already holds, and their cost; run nothing."
        ),
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Run the study's experiments; finished cells are kept, so rerunning continues where it stopped."""
    from activethief.experiments.executors import make_executor
    from activethief.experiments.grid import QUICK, GridParams
    from activethief.experiments.inputs import target_path
    from activethief.experiments.registry import resolve_experiments
    from activethief.experiments.runner import (
        plan_grid,
        pool_size_of,
        resolve_datasets,
        run_experiments,
        trained_settings,
        unfinished,
    )

    params = (QUICK if quick else GridParams()).with_repeats(repeats)
    experiments = resolve_experiments(name)
    datasets = resolve_datasets(dataset)
    if dry_run:
        settings = trained_settings(datasets, params, target_dir, data_dir)
        # A trained dataset's settings already hold its pool size; only the others load their pool for it.
        pool_sizes = {
            d: settings[d]["pool_size"] if d in settings else pool_size_of(d, params, data_dir)
            for d in datasets
        }
        plan = plan_grid(experiments, datasets, params, pool_sizes)
        todo = unfinished(plan, out, settings)
        for ds, tasks in plan.by_dataset().items():
            left = [t for t in todo if t.dataset == ds]
            done = (
                f"{len(tasks) - len(left)} done in {out}"
                if ds in settings
                else f"no target at {target_path(target_dir, ds)} yet (trained first, a few minutes)"
            )
            typer.echo(
                f"{ds}: {_runs(tasks)}, {plan.queries(tasks):,} queries, "
                f"about {plan.seconds(tasks) / 3600:.1f} h on one 2-thread worker; "
                f"{done}, {len(left)} to run (about {plan.seconds(left) / 3600:.1f} h)"
            )
        typer.echo(
            f"total: {_runs(plan.tasks)}, {plan.queries():,} queries, "
            f"about {plan.seconds() / 3600:.1f} h on one worker; {len(todo)} cells to run "
            f"(about {plan.seconds(todo) / 3600:.1f} h)"
        )
        return
    executor = make_executor(workers=workers, threads=threads, ray_address=ray_address)
    report = run_experiments(
        [e.name for e in experiments],
        datasets,
        out=out,
        params=params,
        target_dir=target_dir,
        data_dir=data_dir,
        executor=executor,
        progress=not quiet,
        log=typer.echo,
    )
    typer.echo(
        f"{report.ran} cells run, {report.skipped} already done, {len(report.failed)} failed, "
        f"{report.wall_seconds / 60:.1f} min ({executor.name}, {executor.workers} x {executor.threads} "
        f"threads); results in {out / 'cells.jsonl'}"
    )
    if report.failed:
        for cell_id, error in report.failed:
            typer.echo(f"failed: {cell_id}: {error.strip().splitlines()[-1]}", err=True)
        raise ConfigError(f"{len(report.failed)} cells failed; rerun the same command to retry them")


def _runs(tasks: Sequence[Task]) -> str:
    """How many steal runs, and how many cells that steal nothing (e.g. attacks on the target itself)."""
    other = sum(1 for t in tasks if t.size == 0)
    return f"{len(tasks) - other} steal runs" + (f" and {other} other cells" if other else "")


@friendly
def report_command(
    results: Annotated[
        Path, typer.Argument(help="Results folder written by `activethief experiment`.")
    ] = Path("results"),
    out: Annotated[Path, typer.Option(help="Where to write CSVs, figures and README.md.")] = Path(
        "docs/results"
    ),
) -> None:
    """Summarise a results folder: CSV tables (mean ± std), figures beside the study's, and README.md."""
    from activethief.experiments.report import write_report

    files = write_report(results, out)
    typer.echo(f"wrote {files.markdown}, {len(files.csvs)} tables and {len(files.figures)} figures to {out}")
    if files.missing:
        typer.echo(f"no results yet for: {', '.join(files.missing)}")
