"""`report` turns the tiny grid into every table and figure; the CLI commands parse, plan and fail cleanly."""

from __future__ import annotations

import csv
import dataclasses
import re
import shutil
from pathlib import Path

import pytest
import typer
from experiment_helpers import GridRun
from matplotlib.figure import Figure
from typer.testing import CliRunner

from activethief.experiments import command, write_report
from activethief.experiments.figures import draw_figure
from activethief.experiments.registry import EXPERIMENTS, FigureSpec, load_builtin_experiments

FIGURES = [
    "fig2_seeding.png",
    "fig3_uncertainty.png",
    "fig4_entropy_uniform_kcenter.png",
    "fig5_combinations.png",
    "fig6_seed_size.png",
    "fig7_stopping.png",
]
TABLES = ["seeding.csv", "strategies.csv", "seed-size.csv", "stopping.csv", "full-data.csv", "time.csv"]


def _app() -> typer.Typer:
    app = typer.Typer()
    command.register(app)
    return app


def test_report_writes_every_table_and_figure(serial_run: GridRun, tmp_path: Path) -> None:
    files = write_report(serial_run.out, tmp_path)
    assert sorted(p.name for p in files.figures) == sorted(FIGURES) and not files.missing
    assert sorted(p.name for p in files.csvs) == sorted(TABLES)
    for name in FIGURES:
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    strategies = list(csv.DictReader((tmp_path / "strategies.csv").open()))
    assert {(r["strategy"], r["queries"]) for r in strategies} == {
        (s, str(q)) for s in ("random", "entropy") for q in (100, 200, 300)
    }
    assert all(r["n"] == "2" and 0 <= float(r["accuracy_pct_mean"]) <= 100 for r in strategies)
    stopping = list(csv.DictReader((tmp_path / "stopping.csv").open()))
    assert [(r["patience"], r["alpha"]) for r in stopping] == [
        ("1", "0.01"),
        ("1", "0.5"),
        ("2", "0.01"),
        ("2", "0.5"),
    ]
    assert all(float(r["queries_at_stop_mean"]) <= 600 for r in stopping)
    full = {r["model"]: r for r in csv.DictReader((tmp_path / "full-data.csv").open())}
    assert set(full) == {"substitute", "target"} and full["substitute"]["queries"] == "600"
    readme = files.markdown.read_text()
    for heading in (
        "## seeding",
        "## strategies",
        "## seed-size",
        "## stopping",
        "## full-data",
        "## Time",
        "## Reading",
    ):
        assert heading in readme
    assert all(f"]({name})" in readme for name in FIGURES)
    time_line = next(line for line in readme.splitlines() if line.startswith("Grid wall time"))
    assert re.search(r"cells' own time summed: \d+\.\d\d h \(.*steal \d+\.\d\d h", time_line)


def test_report_includes_the_written_reading(serial_run: GridRun, tmp_path: Path) -> None:
    results = tmp_path / "results"
    shutil.copytree(serial_run.out, results)
    assert "_No reading yet" in write_report(results, tmp_path / "a").markdown.read_text()
    (results / "reading.md").write_text("Entropy beats random on this tiny grid.\n")
    readme = write_report(results, tmp_path / "b").markdown.read_text()
    assert "## Reading\n\nEntropy beats random on this tiny grid.\n" in readme


def test_report_command(serial_run: GridRun, tmp_path: Path) -> None:
    result = CliRunner().invoke(_app(), ["report", str(serial_run.out), "--out", str(tmp_path / "docs")])
    assert result.exit_code == 0, result.output
    assert "6 tables and 6 figures" in result.output and (tmp_path / "docs" / "README.md").is_file()


def test_experiment_command_plans_and_explains_mistakes(tmp_path: Path) -> None:
    runner = CliRunner()
    fresh = ["--out", str(tmp_path / "results"), "--target-dir", str(tmp_path / "targets")]
    result = runner.invoke(_app(), ["experiment", "all", "--dataset", "mnist", "--dry-run", *fresh])
    assert result.exit_code == 0, result.output
    assert "mnist: 170 steal runs, 1,900,000 queries" in result.output
    assert "no target at" in result.output and "170 to run" in result.output
    result = runner.invoke(_app(), ["experiment", "strategys", "--dry-run"])
    assert result.exit_code == 1
    assert "unknown experiment 'strategys'; known: all, seeding, strategies" in result.output
    result = runner.invoke(_app(), ["experiment", "all", "--dataset", "cifar", "--dry-run"])
    assert result.exit_code == 1 and "unknown dataset 'cifar'" in result.output
    result = runner.invoke(
        _app(), ["experiment", "all", "--workers", "2", "--ray-address", "auto", "--out", str(tmp_path)]
    )
    assert result.exit_code == 1 and "--workers applies to the local process pool" in result.output
    result = runner.invoke(_app(), ["report", str(tmp_path / "none")])
    assert result.exit_code == 1 and "holds no config.json" in result.output


def test_a_series_keeps_its_colour_in_every_panel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = FigureSpec("f.png", "t", "lines", x="queries", series="strategy")
    summary = [
        {"dataset": d, "strategy": s, "queries": q, "accuracy_pct_mean": 90.0, "accuracy_pct_std": 0.0}
        for d, strategies in (("mnist", ("entropy", "random")), ("fashion-mnist", ("random",)))
        for s in strategies
        for q in (1, 2)
    ]
    drawn: list[Figure] = []
    monkeypatch.setattr(Figure, "savefig", lambda self, *a, **k: drawn.append(self))
    assert draw_figure(spec, summary, summary, ["mnist", "fashion-mnist"], tmp_path / "f.png")
    colours = [{line.get_label(): line.get_color() for line in ax.get_lines()} for ax in drawn[0].axes]
    assert colours[0]["random"] == colours[1]["random"] != colours[0]["entropy"]


def test_a_folder_of_extensions_only_is_not_titled_as_the_study(
    serial_run: GridRun, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert (
        write_report(serial_run.out, tmp_path / "a")
        .markdown.read_text()
        .startswith("# Results: the study's experiments, reproduced")
    )
    for name, experiment in load_builtin_experiments().items():  # the same cells, seen as extensions
        monkeypatch.setitem(EXPERIMENTS, name, dataclasses.replace(experiment, in_all=False))
    readme = write_report(serial_run.out, tmp_path / "b").markdown.read_text()
    assert readme.startswith("# Results: experiments beyond the study")
    assert "Study numbers" not in readme
