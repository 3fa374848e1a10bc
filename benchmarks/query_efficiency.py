"""Query efficiency: substitute accuracy and agreement vs queries, per dataset and strategy, over seeds.

Each run steals the dataset's `cnn2` target (runs/targets/<dataset>-cnn2.pt, trained if missing) with
batches of 1,000 up to the largest budget, so one run gives every smaller budget too (the substitute of
round r is trained on r * 1,000 answers). Rows are appended to a JSONL file as runs finish; rerunning skips
finished runs, so the benchmark can be run in parts. Prints mean ± std over seeds and wall time.

    .venv/bin/python benchmarks/query_efficiency.py --datasets mnist fashion-mnist \
        --strategies entropy random --seeds 0 1 2 --budget 10000
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from activethief import ModelOracle, data, steal
from activethief.target import train_target

TARGET_FILES = {"mnist": "mnist-cnn2.pt", "fashion-mnist": "fashion-cnn2.pt"}


def target_path(dataset: str, folder: Path) -> Path:
    path = folder / TARGET_FILES.get(dataset, f"{dataset}-cnn2.pt")
    if not path.exists():
        print(f"training the {dataset} target into {path} ...", flush=True)
        train_target(dataset, arch="cnn2", out=path)
    return path


def run(dataset: str, strategy: str, seed: int, budget: int, targets: Path, runs: Path) -> dict[str, Any]:
    """One steal; its substitute and history are kept in runs/<dataset>-<strategy>-<budget>-s<seed>."""
    pool, _ = data.load(dataset, "train")
    test = data.load(dataset, "test")
    out = runs / f"{dataset}-{strategy}-{budget}-s{seed}"
    shutil.rmtree(out, ignore_errors=True)  # an unfinished earlier attempt; its row was never written
    started = time.perf_counter()
    result = steal(
        ModelOracle(target_path(dataset, targets)),
        pool,
        budget=budget,
        batch_size=1000,
        strategy=strategy,
        seed=seed,
        test=test,
        quiet=True,
        out=out,
    )
    return {
        "dataset": dataset,
        "strategy": strategy,
        "seed": seed,
        "budget": budget,
        "seconds": round(time.perf_counter() - started, 1),
        "rounds": [
            {
                "queries": r.train_size,
                "accuracy": r.accuracy,
                "agreement": r.agreement,
                "seconds_train": r.seconds_train,
                "seconds_select": r.seconds_select,
            }
            for r in result.history
            if r.train_size > 0
        ],
    }


def mean_std(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}" if values else "-"


def table(rows: list[dict[str, Any]], budgets: list[int]) -> str:
    """Markdown: per dataset and strategy, accuracy / agreement (%) mean ± std over seeds per budget."""
    header = " | ".join(f"{b // 1000}k: acc / agree" for b in budgets)
    lines = [
        f"| dataset | strategy | seeds | {header} | s/run |",
        "|---|---|---|" + "---|" * (len(budgets) + 1),
    ]
    for dataset, strategy in sorted({(r["dataset"], r["strategy"]) for r in rows}):
        runs = [r for r in rows if r["dataset"] == dataset and r["strategy"] == strategy]
        cells = []
        for budget in budgets:
            at_budget = [x for r in runs for x in r["rounds"] if x["queries"] == budget]
            acc = mean_std([x["accuracy"] for x in at_budget])
            agree = mean_std([x["agreement"] for x in at_budget])
            cells.append(f"{acc} / {agree}")
        seconds = np.mean([r["seconds"] for r in runs])
        lines.append(f"| {dataset} | {strategy} | {len(runs)} | {' | '.join(cells)} | {seconds:.0f} |")
    return "\n".join(lines)


def beats_random(rows: list[dict[str, Any]], budgets: range) -> str:
    """Per dataset and strategy: the budgets at which its mean accuracy is not above random sampling's."""

    def mean_at(dataset: str, strategy: str, budget: int) -> float | None:
        values = [
            x["accuracy"]
            for r in rows
            if (r["dataset"], r["strategy"]) == (dataset, strategy)
            for x in r["rounds"]
            if x["queries"] == budget
        ]
        return float(np.mean(values)) if values else None

    lines = []
    for dataset, strategy in sorted({(r["dataset"], r["strategy"]) for r in rows}):
        if strategy == "random":
            continue
        pairs = [(b, mean_at(dataset, strategy, b), mean_at(dataset, "random", b)) for b in budgets]
        measured = [(b, s, r) for b, s, r in pairs if s is not None and r is not None]
        losing = [f"{b // 1000}k" for b, s, r in measured if s <= r]
        verdict = (
            "beats random at every budget" if not losing else f"does not beat random at {', '.join(losing)}"
        )
        lines.append(
            f"{dataset} {strategy}: {verdict} measured from {budgets.start // 1000}k to "
            f"{budgets.stop // 1000 - 1}k ({len(measured)} budgets)"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--strategies", nargs="+", default=["entropy", "random"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--runs", type=Path, default=Path("runs/bench"), help="Where substitutes are kept.")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/query_efficiency.jsonl"))
    parser.add_argument("--report-only", action="store_true", help="Print the table from saved rows.")
    args = parser.parse_args()

    args.results.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    if args.results.exists():
        rows = [json.loads(line) for line in args.results.read_text().splitlines()]
    if not args.report_only:
        for dataset in args.datasets:
            for seed in args.seeds:
                for strategy in args.strategies:
                    key = (dataset, strategy, seed, args.budget)
                    if any((r["dataset"], r["strategy"], r["seed"], r["budget"]) == key for r in rows):
                        continue
                    row = run(dataset, strategy, seed, args.budget, args.targets, args.runs)
                    rows.append(row)
                    with args.results.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    last = row["rounds"][-1]
                    print(
                        f"{dataset} {strategy} seed {seed}: acc {last['accuracy']:.4f} "
                        f"agree {last['agreement']:.4f} in {row['seconds']} s",
                        flush=True,
                    )
    budgets = [b for b in (1000, 2000, 3000, 5000, 7000, 10_000) if b <= args.budget]
    current = [r for r in rows if r["budget"] == args.budget]
    print(table(current, budgets))
    print(beats_random(current, range(2000, args.budget + 1000, 1000)))


if __name__ == "__main__":
    main()
