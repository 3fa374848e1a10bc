"""The low-budget regime: agreement at a few hundred to a few thousand queries, and what each part earns.

Steals each dataset's `lenet` target with a `cnn2` substitute (another architecture) in each variant of
`activethief.experiments.low_budget.VARIANTS` (the `low-budget` preset, it with random selection or
semi-supervised training, the default settings in rounds of 100), one run per (variant, seed) up to the
largest budget; the history gives every smaller budget. Prints agreement and accuracy mean ± std over
seeds, the seconds to 1,000 queries, and each variant's gap to the default settings in points. Rows are
appended to a JSONL file as runs finish; rerunning skips finished runs.

    .venv/bin/python benchmarks/low_budget.py --datasets mnist fashion-mnist --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from activethief import ModelOracle, data, steal
from activethief.experiments.low_budget import VARIANTS, variant_config
from activethief.target import cached_target

BUDGETS = (200, 500, 1000, 2000)


def run(dataset: str, name: str, seed: int, budget: int, targets: Path) -> dict[str, Any]:
    """One steal to `budget`; its history row per round."""
    config = variant_config(name, budget=budget, seed=seed)
    pool, _ = data.load(dataset, "train")
    started = time.perf_counter()
    result = steal(
        ModelOracle(cached_target(dataset, "lenet", targets)),
        pool,
        config,
        test=data.load(dataset, "test"),
        quiet=True,
    )
    return {
        "dataset": dataset,
        "config": name,
        "seed": seed,
        "budget": budget,
        "seconds": round(time.perf_counter() - started, 1),
        "rounds": [
            {
                "queries": r.train_size,
                "accuracy": r.accuracy,
                "agreement": r.agreement,
                "steps": r.train_steps,
                "seconds": round(r.seconds_train + r.seconds_select + r.seconds_query, 2),
            }
            for r in result.history
            if r.train_size > 0
        ],
    }


def _at(runs: list[dict[str, Any]], queries: int, key: str) -> list[float]:
    return [x[key] for r in runs for x in r["rounds"] if x["queries"] == queries and x[key] is not None]


def seconds_to(run_row: dict[str, Any], queries: int) -> float:
    """Wall seconds of the rounds up to and including the one trained on `queries` answers."""
    return float(sum(x["seconds"] for x in run_row["rounds"] if x["queries"] <= queries))


def table(rows: list[dict[str, Any]], budgets: tuple[int, ...]) -> str:
    """Markdown: agreement (accuracy) mean ± std per budget, seconds to 1k, gap to the default settings."""
    lines = [
        "| dataset | configuration | seeds | "
        + " | ".join(f"{b}: agree (acc) %" for b in budgets)
        + " | s to 1k | vs default @500/1k |",
        "|---|---|---|" + "---|" * (len(budgets) + 2),
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        base = [r for r in rows if r["dataset"] == dataset and r["config"] == "default, rounds of 100"]
        for name in VARIANTS:
            runs = [r for r in rows if r["dataset"] == dataset and r["config"] == name]
            if not runs:
                continue
            cells = []
            for b in budgets:
                agree, acc = _at(runs, b, "agreement"), _at(runs, b, "accuracy")
                cells.append(
                    f"{100 * np.mean(agree):.2f} ± {100 * np.std(agree):.2f} ({100 * np.mean(acc):.1f})"
                    if agree
                    else "-"
                )
            gaps = []
            for b in (500, 1000):
                mine, theirs = _at(runs, b, "agreement"), _at(base, b, "agreement")
                gaps.append(f"{100 * (np.mean(mine) - np.mean(theirs)):+.2f}" if mine and theirs else "-")
            secs = np.mean([seconds_to(r, 1000) for r in runs])
            row = [dataset, name, str(len(runs)), *cells, f"{secs:.0f}", " / ".join(gaps)]
            lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--configs", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=max(BUDGETS))
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/low_budget.jsonl"))
    parser.add_argument("--report-only", action="store_true", help="Print the table from saved rows.")
    args = parser.parse_args()

    args.results.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    if not args.report_only:
        for dataset in args.datasets:
            for seed in args.seeds:
                for name in args.configs:
                    key = (dataset, name, seed, args.budget)
                    if any((r["dataset"], r["config"], r["seed"], r["budget"]) == key for r in rows):
                        continue
                    row = run(dataset, name, seed, args.budget, args.targets)
                    rows.append(row)
                    with args.results.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    at = {x["queries"]: x["agreement"] for x in row["rounds"]}
                    shown = "  ".join(f"{b}: {at[b]:.4f}" for b in BUDGETS if b in at)
                    print(f"{dataset} {name} seed {seed}: agree {shown}  ({row['seconds']} s)", flush=True)
    budgets = tuple(b for b in BUDGETS if b <= args.budget)
    print(table([r for r in rows if r["budget"] == args.budget], budgets))


if __name__ == "__main__":
    main()
