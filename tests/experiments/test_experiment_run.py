"""The tiny grid end to end: serial, process pool and Ray agree row for row; interruptions lose nothing."""

from __future__ import annotations

import itertools
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from experiment_helpers import TINY, GridRun, comparable, finished_rows

import activethief
from activethief.experiments import (
    LocalPoolExecutor,
    RayExecutor,
    Results,
    SerialExecutor,
    StealCell,
    run_experiments,
    stop_point,
)
from activethief.experiments import cells as cells_module
from activethief.experiments.inputs import InputSpec, load_inputs, target_path, torch_threads
from activethief.experiments.registry import resolve_experiments
from activethief.experiments.runner import Plan, plan_grid, trained_settings, unfinished
from activethief.experiments.store import CELLS
from activethief.steal import steal


def test_serial_grid_runs_end_to_end_and_reruns_nothing(serial_run: GridRun, target_dir: Path) -> None:
    report = serial_run.report
    assert (report.planned, report.ran, report.skipped, report.failed) == (12, 12, 0, [])
    assert report.queries == 4200  # 2 repeats x (600 + 300 + 300 + 200 + 100 + 200 + 600)
    config = json.loads((serial_run.out / "config.json").read_text())
    assert config["version"] == activethief.__version__
    assert config["grid"] == TINY.to_dict()
    assert config["settings"]["mnist"]["pool_size"] == 600
    assert config["invocations"][0]["cells_run"] == 12 and not config["invocations"][0]["interrupted"]
    rows = finished_rows(serial_run.out)
    trajectory = sorted(
        (r for r in rows if r["share_key"] == "mnist|entropy|random|s100|b100|r0"), key=lambda r: r["round"]
    )
    assert [r["train_size"] for r in trajectory] == [0, 100, 200, 300, 400, 500, 600]  # the whole pool
    assert all(r["fit"]["epochs"] == 1 and r["cell_seconds"] > 0 and r["settings_id"] for r in rows)
    assert not (serial_run.out / "work").exists() or not any((serial_run.out / "work").rglob("*.json"))

    again = run_experiments(
        "all",
        "mnist",
        out=serial_run.out,
        params=TINY,
        target_dir=target_dir,
        executor=SerialExecutor(threads=1),
    )
    assert (again.ran, again.skipped) == (0, 12)


def test_unfinished_counts_what_a_folder_holds(serial_run: GridRun, target_dir: Path, tmp_path: Path) -> None:
    def plan(repeats: int) -> Plan:
        return plan_grid(
            resolve_experiments("all"), ["mnist"], replace(TINY, repeats=repeats), {"mnist": 600}
        )

    settings = trained_settings(["mnist"], TINY, target_dir)
    assert unfinished(plan(2), serial_run.out, settings) == []
    assert len(unfinished(plan(2), tmp_path, settings)) == len(plan(2).tasks) == 12  # an empty folder
    assert len(unfinished(plan(2), serial_run.out, {})) == 12  # no target yet: no row can match
    assert trained_settings(["mnist"], TINY, tmp_path) == {}
    left = unfinished(plan(3), serial_run.out, settings)  # one more repeat: only its cells are left
    assert len(left) == 6 and {t.repeat for t in left} == {2}


def test_process_pool_gives_identical_rows(serial_run: GridRun, target_dir: Path, tmp_path: Path) -> None:
    report = run_experiments(
        "all",
        "mnist",
        out=tmp_path,
        params=TINY,
        target_dir=target_dir,
        executor=LocalPoolExecutor(2, threads=1),
    )
    assert report.ran == 12 and not report.failed
    assert comparable(finished_rows(tmp_path)) == comparable(finished_rows(serial_run.out))


def test_ray_gives_identical_rows(serial_run: GridRun, target_dir: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray", reason="Ray is optional: pip install 'activethief[ray]'")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        report = run_experiments(
            "all",
            "mnist",
            out=tmp_path,
            params=TINY,
            target_dir=target_dir,
            executor=RayExecutor(None, threads=1),
        )
    finally:
        ray.shutdown()
    assert report.ran == 12 and not report.failed
    assert comparable(finished_rows(tmp_path)) == comparable(finished_rows(serial_run.out))


def test_resume_after_interruption_recomputes_nothing(
    serial_run: GridRun, target_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def interrupting_steal(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(kwargs["out"]))

        def hook(event: Any) -> None:
            if len(calls) == 4 and event.record.round == 2:  # the 4th cell dies in the middle
                # what a kill -9 now would leave: the three finished cells' count and time
                last = json.loads((tmp_path / "config.json").read_text())["invocations"][-1]
                assert last["cells_run"] == 3 and last["wall_seconds"] > 0
                raise KeyboardInterrupt

        return steal(*args, **{**kwargs, "on_round": hook})  # cells pass on_round=None themselves

    monkeypatch.setattr(cells_module, "steal", interrupting_steal)
    run = dict(
        names="seeding,strategies",
        datasets="mnist",
        out=tmp_path,
        params=TINY,
        target_dir=target_dir,
        executor=SerialExecutor(threads=1),
    )
    with pytest.raises(KeyboardInterrupt):
        run_experiments(**run)  # type: ignore[arg-type]
    assert len({r["cell_id"] for r in finished_rows(tmp_path)}) == 3
    assert json.loads((tmp_path / "config.json").read_text())["invocations"][-1]["interrupted"]
    assert list((tmp_path / "work").rglob("checkpoint.json"))  # the interrupted cell's progress is kept
    with (tmp_path / CELLS).open("a") as handle:
        handle.write('{"attempt": "torn", "cell_id": "mnist|')  # and a crash tore the file's last line

    calls.clear()

    def counting_steal(*args: Any, **kwargs: Any) -> Any:
        calls.append(str(kwargs["out"]))
        return steal(*args, **kwargs)

    monkeypatch.setattr(cells_module, "steal", counting_steal)
    report = run_experiments(**run)  # type: ignore[arg-type]
    assert (report.planned, report.skipped, report.ran) == (10, 3, 7) and len(calls) == 7
    assert not list((tmp_path / "work").rglob("checkpoint.json"))
    resumed = finished_rows(tmp_path)
    reference = {r["cell_id"] for r in finished_rows(serial_run.out)}
    shared = [r for r in resumed if r["cell_id"] in reference]
    # random-strategy and k-means cells; the entropy runs are longer in the full grid (shared there)
    assert len({r["cell_id"] for r in shared}) == 6
    assert comparable(shared) == comparable(
        [r for r in finished_rows(serial_run.out) if r["cell_id"] in {s["cell_id"] for s in shared}]
    )


@pytest.mark.parametrize("patience", [1, 2])
def test_stop_points_match_a_run_with_the_stopping_rule(
    serial_run: GridRun, target_dir: Path, patience: int
) -> None:
    cell = StealCell("mnist", "entropy", "random", 100, 100, 600, 0)
    rows = sorted(
        (r for r in finished_rows(serial_run.out) if r["cell_id"] == cell.cell_id), key=lambda r: r["round"]
    )
    entropies = [r["batch_entropy"] for r in rows if r["round"] > 0 and r["batch_entropy"] is not None]
    changes = [abs(a - b) for a, b in itertools.pairwise(entropies)]
    # The smallest alpha at which `patience` changes in a row, from the second change on, are small enough:
    # the rule fires after round 3 at the earliest, before the pool runs out.
    alpha = min(max(changes[i : i + patience]) for i in range(1, len(changes) - patience + 1))
    expected, stopped = stop_point(rows, alpha, patience)
    assert stopped
    inputs = load_inputs(InputSpec("mnist", str(target_path(target_dir, "mnist").resolve()), 600, 200), 1)
    with torch_threads(1):
        result = steal(
            inputs.oracle(),
            inputs.pool,
            budget=600,
            batch_size=100,
            seed_size=100,
            stop=f"entropy:{alpha!r}:{patience}",
            seed=cell.seed(0),
            test=(inputs.test_x, inputs.test_y),
            quiet=True,
            fit=TINY.fit,
            target_test_labels=inputs.target_labels,
        )
    assert result.stopped_by.startswith("entropy:")
    last = result.history[-1]
    assert (last.train_size, last.accuracy, last.agreement) == (
        expected["train_size"],
        expected["accuracy"],
        expected["agreement"],
    )


def test_changed_settings_never_mix_but_more_repeats_reuse_rows(target_dir: Path, tmp_path: Path) -> None:
    messages: list[str] = []
    run = dict(
        names="full-data",
        datasets="mnist",
        out=tmp_path,
        target_dir=target_dir,
        executor=SerialExecutor(threads=1),
        log=messages.append,
    )
    assert run_experiments(params=TINY, **run).ran == 2  # type: ignore[arg-type]
    more = run_experiments(params=TINY.with_repeats(3), **run)  # type: ignore[arg-type]
    assert (more.skipped, more.ran) == (2, 1)
    other_fit = replace(TINY, fit=replace(TINY.fit, epochs=2))
    changed = run_experiments(params=other_fit, **run)  # type: ignore[arg-type]
    assert (changed.skipped, changed.ran) == (0, 2)
    assert any("mnist: settings changed (fit)" in m for m in messages)
    rows = Results.load(tmp_path).all_rows()
    assert rows and {r["fit"]["epochs"] for r in rows} == {2}
