"""The report: CSV summaries (mean ± std over repeats), PNG figures and a Markdown page beside the study's."""

from __future__ import annotations

import csv
import datetime as dt
import math
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from activethief.experiments.figures import draw_figure
from activethief.experiments.grid import GridParams
from activethief.experiments.registry import Experiment, Scope, load_builtin_experiments
from activethief.experiments.runner import DATASETS
from activethief.experiments.store import Results, read_config

NOT_METRICS = frozenset({"dataset", "repeat"})
TIME_KEYS = ("kind", "dataset", "strategy", "seeding", "seed_size", "budget")


def summarise(points: Sequence[dict[str, Any]], keys: Sequence[str]) -> list[dict[str, Any]]:
    """Group points by (dataset, *keys) and give n, mean, std (sample), min and max of every metric."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = {}
    for point in points:
        groups.setdefault((point["dataset"], *(point[k] for k in keys)), []).append(point)
    metrics = [
        m for m in dict.fromkeys(k for p in points for k in p) if m not in NOT_METRICS and m not in keys
    ]
    summary = []
    for group_key, members in groups.items():
        row: dict[str, Any] = dict(zip(("dataset", *keys), group_key, strict=True))
        row["n"] = len(members)
        for metric in metrics:
            values = [float(p[metric]) for p in members if isinstance(p.get(metric), int | float)]
            if not values:
                continue
            row[f"{metric}_mean"] = statistics.fmean(values)
            row[f"{metric}_std"] = statistics.stdev(values) if len(values) > 1 else None
            row[f"{metric}_min"], row[f"{metric}_max"] = min(values), max(values)
        summary.append(row)
    return summary


def metric_names(summary: Sequence[dict[str, Any]]) -> list[str]:
    """The metrics of a summary, in column order."""
    return [c[: -len("_mean")] for c in dict.fromkeys(k for r in summary for k in r) if c.endswith("_mean")]


def write_csv(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """Rows to CSV; the header is the union of their keys in first-seen order."""
    columns = list(dict.fromkeys(k for row in rows for k in row))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: _csv_value(row.get(k)) for k in columns})


def _csv_value(value: Any) -> Any:
    if isinstance(value, float):
        return "" if math.isnan(value) else round(value, 4)
    return "" if value is None else value


def time_summary(results: Results) -> list[dict[str, Any]]:
    """Where the time goes: per kind of cell (all but the repeat), cells and seconds (wall, train, select,
    query), largest first."""
    cells: dict[str, list[dict[str, Any]]] = {}
    for row in results.all_rows():
        cells.setdefault(f"{row['settings_id']}|{row['cell_id']}", []).append(row)
    groups: dict[tuple[Any, ...], dict[str, Any]] = {}
    for rows in cells.values():
        first = rows[0]
        kind = {k: first.get(k, "-") for k in TIME_KEYS}
        group = groups.setdefault(
            tuple(kind.values()),
            {
                **kind,
                "cells": 0,
                "queries": 0,
                "cell_seconds": 0.0,
                "train_seconds": 0.0,
                "select_seconds": 0.0,
                "query_seconds": 0.0,
            },
        )
        group["cells"] += 1
        group["queries"] += int(first.get("size", 0))
        group["cell_seconds"] += float(first.get("cell_seconds", 0.0))
        for part in ("train", "select", "query"):
            group[f"{part}_seconds"] += sum(float(r.get(f"seconds_{part}", 0.0)) for r in rows)
    return sorted(groups.values(), key=lambda g: -g["cell_seconds"])


@dataclass
class ReportFiles:
    """What `write_report` wrote, and which experiments had no results yet."""

    markdown: Path
    csvs: list[Path] = field(default_factory=list)
    figures: list[Path] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)


def write_report(results_dir: Path | str, out_dir: Path | str) -> ReportFiles:
    """Read a results folder and write CSVs, figures and `README.md` into `out_dir`."""
    results_dir, out_dir = Path(results_dir), Path(out_dir)
    results = Results.load(results_dir)
    config = read_config(results_dir) or {}
    params = GridParams.from_dict(config["grid"])
    datasets = [d for d in DATASETS if d in results.settings] + [
        d for d in results.settings if d not in DATASETS
    ]
    scopes = [Scope(d, params, int(results.settings[d]["pool_size"])) for d in datasets]
    out_dir.mkdir(parents=True, exist_ok=True)
    files = ReportFiles(markdown=out_dir / "README.md")
    sections: list[str] = []
    ran = set(config.get("experiments", []))
    study_shown = False  # whether any of the study's own experiments (not only extensions) has results
    for experiment in load_builtin_experiments().values():
        points = [{"dataset": s.dataset, **p} for s in scopes for p in experiment.points(results, s)]
        if not points:
            if experiment.in_all or experiment.name in ran:  # an extension never asked for is not missing
                files.missing.append(experiment.name)
            continue
        study_shown = study_shown or experiment.in_all
        summary = summarise(points, experiment.keys)
        if experiment.study is not None:
            by_name = {s.dataset: s for s in scopes}
            for row in summary:
                row.update(experiment.study(by_name[row["dataset"]], row))
        csv_path = out_dir / f"{experiment.name}.csv"
        write_csv(csv_path, summary)
        files.csvs.append(csv_path)
        drawn = []
        for spec in experiment.figures:
            if draw_figure(spec, summary, points, datasets, out_dir / spec.file):
                files.figures.append(out_dir / spec.file)
                drawn.append(spec.file)
        shown = [r for r in summary if experiment.in_table is None or experiment.in_table(r, params)]
        notes = "" if experiment.notes is None else experiment.notes(summary, params)
        sections.append(_section(experiment, shown, drawn, notes))
    timing = time_summary(results)
    if timing:
        files.csvs.append(out_dir / "time.csv")
        write_csv(out_dir / "time.csv", timing)
    page = _page(results_dir, config, params, results, sections, timing, files.missing, study=study_shown)
    files.markdown.write_text(page)
    return files


# --- Markdown --------------------------------------------------------------------------------------


def _fmt(value: Any, metric: str) -> str:
    if value is None:
        return "-"
    digits = 0 if "queries" in metric else 2
    return f"{float(value):,.{digits}f}"


def _title(metric: str) -> str:
    return metric.replace("_pct", " %").replace("_", " ")


def _table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _section(
    experiment: Experiment, summary: list[dict[str, Any]], figures: list[str], notes: str = ""
) -> str:
    metrics = metric_names(summary)
    header = ["dataset", *experiment.keys, "n"]
    for metric in metrics:
        header.append(_title(metric))
        if any(f"study_{metric}" in r for r in summary):
            header += [f"study {_title(metric)}", "Δ"]
        elif any(f"study_{metric}_min" in r for r in summary):
            header.append(f"study {_title(metric)} (range)")
    body = []
    for row in summary:
        cells = [str(row["dataset"]), *(str(row[k]) for k in experiment.keys), str(row["n"])]
        for metric in metrics:
            mean, std = row.get(f"{metric}_mean"), row.get(f"{metric}_std")
            text = _fmt(mean, metric) + ("" if std is None else f" ± {_fmt(std, metric)}")
            if any(f"study_{metric}_min" in r for r in summary):
                text += (
                    f" [{_fmt(row.get(f'{metric}_min'), metric)} to {_fmt(row.get(f'{metric}_max'), metric)}]"
                )
            cells.append(text)
            if any(f"study_{metric}" in r for r in summary):
                study = row.get(f"study_{metric}")
                cells.append(_fmt(study, metric))
                cells.append("-" if study is None or mean is None else f"{float(mean) - float(study):+.2f}")
            elif any(f"study_{metric}_min" in r for r in summary):
                low, high = row.get(f"study_{metric}_min"), row.get(f"study_{metric}_max")
                cells.append("-" if low is None else f"{_fmt(low, metric)} to {_fmt(high, metric)}")
        body.append(cells)
    images = "".join(f"![{name}]({name})\n\n" for name in figures)
    notes = f"{notes.strip()}\n\n" if notes.strip() else ""
    return f"## {experiment.name}\n\n{experiment.title}.\n\n{notes}{images}{_table(header, body)}\n"


def _page(
    results_dir: Path,
    config: dict[str, Any],
    params: GridParams,
    results: Results,
    sections: list[str],
    timing: list[dict[str, Any]],
    missing: list[str],
    *,
    study: bool = True,
) -> str:
    """The report page; `study`: whether any of the study's experiments has results (a folder of
    extensions only gets a title and a preamble without study numbers)."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    fit = ", ".join(f"{k}={v}" for k, v in params.to_dict()["fit"].items())
    compared = (
        " Study numbers (read off its figures, ±0.3 points) appear only where the grid matches the study's: "
        "a 60,000-image pool and batches of 1,000; Δ = ours - study."
        if study
        else ""
    )
    title = "the study's experiments, reproduced" if study else "experiments beyond the study"
    lines = [
        f"# Results: {title}",
        "",
        f"Generated by `activethief report` from `{results_dir}` on {now} with activethief "
        f"{config.get('version', '?')}. Accuracy and agreement are percentages on the test set, mean ± "
        f"sample std over repeats (n).{compared}",
        "",
        f"Grid: up to {params.repeats} repeat(s) (n counts the finished ones), batches of "
        f"{params.batch_size}, random seed of {params.seed_size} "
        f"(strategies, stopping), {params.strategies_budget:,} queries per strategy run, "
        f"{params.seed_size_budget:,} per seed-size run, base seed {params.base_seed}, substitute "
        f"{params.substitute}; training: {fit}.",
        "",
        _table(
            ["dataset", "pool", "test set", "target test accuracy %", "target weights (sha256)"],
            [
                [
                    d,
                    f"{s['pool_size']:,}",
                    f"{s['test_size']:,}",
                    _fmt(100 * results.targets[d]["test_accuracy"], "acc") if d in results.targets else "-",
                    f"`{str(results.targets.get(d, {}).get('sha256', ''))[:16]}`",
                ]
                for d, s in results.settings.items()
            ],
        ),
        "",
        *sections,
    ]
    if missing:
        lines += ["## Not run yet", "", "No results yet for: " + ", ".join(missing) + ".", ""]
    lines += ["## Time", ""]
    invocations = config.get("invocations", [])
    wall = sum(float(i.get("wall_seconds", 0.0)) for i in invocations)
    by_kind: dict[str, float] = {}
    for g in timing:
        by_kind[str(g["kind"])] = by_kind.get(str(g["kind"]), 0.0) + g["cell_seconds"]
    kinds = ", ".join(f"{k} {v / 3600:.2f} h" for k, v in by_kind.items())
    lines += [
        f"Grid wall time over {len(invocations)} invocation(s): {wall / 3600:.2f} h; cells' own time summed: "
        f"{sum(by_kind.values()) / 3600:.2f} h ({kinds}; more than the wall time when cells ran in "
        f"parallel). Shared cells are counted once.",
        "",
        _table(
            [*TIME_KEYS, "cells", "queries", "cell min", "train min", "select min", "query min"],
            [
                [
                    *(str(g[k]) for k in TIME_KEYS),
                    str(g["cells"]),
                    f"{g['queries']:,}",
                    *(
                        f"{g[k] / 60:.1f}"
                        for k in ("cell_seconds", "train_seconds", "select_seconds", "query_seconds")
                    ),
                ]
                for g in timing
            ],
        ),
        "",
        _table(
            ["started", "experiments", "datasets", "executor", "workers x threads", "cells run", "wall h"],
            [
                [
                    str(i.get("started", "")),
                    ", ".join(i.get("experiments", [])),
                    ", ".join(i.get("datasets", [])),
                    str(i.get("executor", "")),
                    f"{i.get('workers', '?')} x {i.get('threads', '?')}",
                    str(i.get("cells_run", "-")),
                    f"{float(i.get('wall_seconds', 0.0)) / 3600:.3f}",
                ]
                for i in invocations
            ],
        ),
        "",
        "## Reading",
        "",
        _reading(results_dir),
        "",
    ]
    return "\n".join(lines)


READING = "reading.md"


def _reading(results_dir: Path) -> str:
    """The hand-written interpretation kept beside the rows (`reading.md`), since numbers need a reader."""
    path = results_dir / READING
    if path.is_file():
        return path.read_text().strip()
    return f"_No reading yet: write one into `{path}` and rerun `activethief report`._"
