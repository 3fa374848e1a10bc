"""PNG figures of the report (matplotlib, no GUI): ours solid, the study's numbers dashed beside them."""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Rectangle

from activethief.experiments.registry import FigureSpec

STUDY_STYLE: dict[str, Any] = {"linestyle": "--", "linewidth": 1.2}
LEGENDS = {
    "bars": "filled: ours (mean ± std over repeats); dashed outline: the study",
    "lines": "solid: ours (mean, band ± std over repeats); dashed: the study",
    "stopping": "dots: ours (one per repeat); dashed boxes: the study's range over five runs",
}


def _series(rows: Sequence[dict[str, Any]], spec: FigureSpec) -> list[Any]:
    present = list(dict.fromkeys(row[spec.series] for row in rows)) if spec.series else [""]
    if spec.only:
        return [s for s in spec.only if s in present]
    return present


def _label(value: Any) -> str:
    return "ours" if value == "" else str(value)


def draw_figure(
    spec: FigureSpec,
    summary: Sequence[dict[str, Any]],
    points: Sequence[dict[str, Any]],
    datasets: Sequence[str],
    path: Path,
) -> bool:
    """Draw `spec` into `path`: one panel per dataset (and per value of `spec.columns` and `spec.rows`);
    False (and no file) when there is nothing to draw."""
    keep = set(spec.only) if spec.only and spec.series else None
    chosen = [
        r
        for r in summary
        if (keep is None or r[spec.series] in keep) and all(_equal(r.get(k), v) for k, v in spec.where)
    ]
    columns = [(d, c) for d in datasets for c in _values(chosen, spec.columns)]
    grid = [
        [[r for r in chosen if _in_panel(r, spec, d, c, v)] for d, c in columns]
        for v in _values(chosen, spec.rows)
    ]
    shown = [i for i in range(len(columns)) if any(line[i] for line in grid)]
    if not shown:
        return False
    # One colour per series for the whole figure, so a strategy looks the same in every panel.
    ordered = _series(
        sorted(chosen, key=lambda r: _sort_key(r[spec.series])) if spec.series else chosen, spec
    )
    colours = {name: f"C{i}" for i, name in enumerate(ordered)}
    width = 6.4 if len(shown) <= 2 else 4.8
    height = 5.0 if len(grid) == 1 else 3.6 * len(grid) + 1.0
    figure = Figure(figsize=(max(7.5, width * len(shown)), height), layout="constrained")
    # Rows of panels (another value of `spec.rows`) share their column's axes, so they compare at a glance.
    axes = figure.subplots(len(grid), len(shown), squeeze=False, sharex="col", sharey="col")
    for line, row_value, panel_axes in zip(grid, _values(chosen, spec.rows), axes, strict=True):
        for ax, i in zip(panel_axes, shown, strict=True):
            rows = line[i]
            dataset, column_value = columns[i]
            if spec.reference:  # first, so the series' legend lists it
                _reference(ax, spec, rows)
            if spec.kind == "bars":
                _bars(ax, spec, rows, colours)
            elif spec.kind == "lines":
                _lines(ax, spec, rows, colours)
            else:
                mine = [p for p in points if _in_panel(p, spec, dataset, column_value, row_value)]
                _stopping(ax, spec, rows, mine, colours)
            ax.set_title(" · ".join([dataset, *_panel_labels(spec, column_value, row_value)]))
            ax.set_xlabel(spec.xlabel or spec.x)
            ax.set_ylabel(spec.ylabel)
            if spec.ylim is not None:
                ax.set_ylim(*spec.ylim)
            ax.grid(alpha=0.3)
    legend = spec.legend or LEGENDS[spec.kind]
    figure.suptitle(f"{spec.title}\n{legend}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return True


def _values(rows: Sequence[dict[str, Any]], column: str) -> list[Any]:
    """The values of `column`, sorted (numbers by value), or [""] when no column is named."""
    if not column:
        return [""]
    return sorted(dict.fromkeys(row[column] for row in rows), key=_sort_key)


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, float(value)) if isinstance(value, int | float) else (1, str(value))


def _equal(value: Any, wanted: Any) -> bool:
    if isinstance(value, int | float) and isinstance(wanted, int | float):
        return math.isclose(float(value), float(wanted), rel_tol=1e-9, abs_tol=1e-12)
    return bool(value == wanted)


def _in_panel(row: dict[str, Any], spec: FigureSpec, dataset: str, column: Any, line: Any) -> bool:
    return (
        row["dataset"] == dataset
        and (not spec.columns or row[spec.columns] == column)
        and (not spec.rows or row[spec.rows] == line)
    )


def _panel_labels(spec: FigureSpec, column: Any, line: Any) -> list[str]:
    names = [(spec.columns, column), (spec.rows, line)]
    return [_panel_label(name, value) for name, value in names if name]


def _panel_label(name: str, value: Any) -> str:
    if name == "eps":
        return f"ε = {value:g}"
    return f"{name} {value:g}" if isinstance(value, int | float) else str(value)


def _reference(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]]) -> None:
    """A horizontal line at the panel's mean of `spec.reference` (one value per panel, e.g. a bound)."""
    values = [float(v) for r in rows if (v := r.get(f"{spec.reference}_mean")) is not None]
    if values:
        ax.axhline(
            sum(values) / len(values),
            color="black",
            linestyle=":",
            linewidth=1.4,
            label=spec.reference_label or spec.reference,
        )


def _bars(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]], colours: dict[Any, str]) -> None:
    drew_study = False
    groups = sorted({row[spec.x] for row in rows})
    series = _series(rows, spec)
    slots = 2 * len(series)
    width = 0.8 / slots
    for i, name in enumerate(series):
        colour = colours[name]
        by_x = {row[spec.x]: row for row in rows if not spec.series or row[spec.series] == name}
        xs = [g for g in range(len(groups)) if groups[g] in by_x]
        ours = [by_x[groups[g]] for g in xs]
        offset = -0.4 + width * (2 * i + 0.5)
        ax.bar(
            [g + offset for g in xs],
            [r[f"{spec.y}_mean"] for r in ours],
            width,
            yerr=[r.get(f"{spec.y}_std") or 0.0 for r in ours],
            color=colour,
            label=_label(name),
            capsize=2,
        )
        study = [(g, float(v)) for g in xs if (v := by_x[groups[g]].get(f"study_{spec.y}")) is not None]
        if study:
            drew_study = True
            ax.bar(
                [g + offset + width for g, _ in study],
                [v for _, v in study],
                width,
                fill=False,
                edgecolor=colour,
                **STUDY_STYLE,
            )
    ax.set_xticks(range(len(groups)), [str(g) for g in groups])
    _legend(ax, drew_study)


def _lines(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]], colours: dict[Any, str]) -> None:
    drew_study = False
    for name in _series(rows, spec):
        colour = colours[name]
        mine = sorted((r for r in rows if r[spec.series] == name), key=lambda r: r[spec.x])
        xs = [r[spec.x] for r in mine]
        mean = [r[f"{spec.y}_mean"] for r in mine]
        std = [r.get(f"{spec.y}_std") or 0.0 for r in mine]
        ax.plot(xs, mean, color=colour, label=_label(name))
        ax.fill_between(
            xs,
            [m - s for m, s in zip(mean, std, strict=True)],
            [m + s for m, s in zip(mean, std, strict=True)],
            color=colour,
            alpha=0.2,
        )
        study = [(r[spec.x], r[f"study_{spec.y}"]) for r in mine if r.get(f"study_{spec.y}") is not None]
        if study:
            drew_study = True
            ax.plot(
                [x for x, _ in study],
                [v for _, v in study],
                color=colour,
                marker="o",
                markersize=3,
                **STUDY_STYLE,
            )
    _legend(ax, drew_study)


def _stopping(
    ax: Axes,
    spec: FigureSpec,
    rows: list[dict[str, Any]],
    points: list[dict[str, Any]],
    colours: dict[Any, str],
) -> None:
    drew_study = False
    for row in sorted(rows, key=lambda r: r[spec.series]):
        alpha = row[spec.series]
        colour = colours[alpha]
        mine = [p for p in points if p[spec.series] == alpha]
        ax.scatter(
            [p[spec.x] for p in mine], [p[spec.y] for p in mine], color=colour, s=18, label=f"alpha {alpha:g}"
        )
        names = [
            f"study_{m}_{end}" for m in ("queries_at_stop", "accuracy_at_stop_pct") for end in ("min", "max")
        ]
        if all(row.get(name) is not None for name in names):
            q0, q1, a0, a1 = (float(row[name]) for name in names)
            drew_study = True
            ax.add_patch(
                Rectangle(
                    (q0, a0),
                    q1 - q0,
                    a1 - a0,
                    fill=False,
                    edgecolor=colour,
                    **STUDY_STYLE,
                )
            )
    full = [p["accuracy_full_pool_pct"] for p in points if p.get("accuracy_full_pool_pct") is not None]
    if full:
        ax.axhline(sum(full) / len(full), color="grey", linestyle=":", label="whole pool (ours)")
    ax.autoscale_view()
    _legend(ax, drew_study)


def _legend(ax: Axes, study: bool) -> None:
    """Our series, plus one entry for the study's dashed marks (drawn in each series' colour) if any."""
    handles, labels = ax.get_legend_handles_labels()
    if study:
        handles.append(Line2D([], [], color="black", **STUDY_STYLE))
        labels.append("the study (same colour)")
    ax.legend(handles, labels, fontsize=7, ncol=2 if len(labels) > 6 else 1)
