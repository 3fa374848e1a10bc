"""PNG figures of the report (matplotlib, no GUI): ours solid, the study's numbers dashed beside them."""

from __future__ import annotations

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
    """Draw `spec`, one panel per dataset, into `path`; False (and no file) when there is nothing to draw."""
    keep = set(spec.only) if spec.only and spec.series else None
    per_dataset = {
        d: [r for r in summary if r["dataset"] == d and (keep is None or r[spec.series] in keep)]
        for d in datasets
    }
    shown = [d for d in datasets if per_dataset[d]]
    if not shown:
        return False
    figure = Figure(figsize=(max(7.5, 6.4 * len(shown)), 5.0), layout="constrained")
    axes = figure.subplots(1, len(shown), squeeze=False)[0]
    for ax, dataset in zip(axes, shown, strict=True):
        rows = per_dataset[dataset]
        if spec.kind == "bars":
            _bars(ax, spec, rows)
        elif spec.kind == "lines":
            _lines(ax, spec, rows)
        else:
            _stopping(ax, spec, rows, [p for p in points if p["dataset"] == dataset])
        ax.set_title(dataset)
        ax.set_xlabel(spec.xlabel or spec.x)
        ax.set_ylabel("test accuracy (%)")
        ax.grid(alpha=0.3)
    legend = LEGENDS[spec.kind]
    figure.suptitle(f"{spec.title}\n{legend}", fontsize=10)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return True


def _bars(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]]) -> None:
    drew_study = False
    groups = sorted({row[spec.x] for row in rows})
    series = _series(rows, spec)
    slots = 2 * len(series)
    width = 0.8 / slots
    for i, name in enumerate(series):
        colour = f"C{i}"
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


def _lines(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]]) -> None:
    drew_study = False
    for i, name in enumerate(_series(rows, spec)):
        colour = f"C{i}"
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


def _stopping(ax: Axes, spec: FigureSpec, rows: list[dict[str, Any]], points: list[dict[str, Any]]) -> None:
    drew_study = False
    for i, row in enumerate(sorted(rows, key=lambda r: r[spec.series])):
        colour = f"C{i}"
        alpha = row[spec.series]
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
