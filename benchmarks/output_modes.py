"""Stealing through every output mode: what a label-only, top-k or rounding API costs the thief.

Steals each dataset's `lenet` target with a `cnn2` substitute (another architecture) through an oracle
in each output mode (`probs`, `label`, `topk:1`, `topk:3`, `round:1`, `round:2`), entropy+kcenter in
rounds of 1,000 with the default training, one run per (dataset, mode, training variant, seed) up to
the largest budget; the history gives every smaller budget. Answers become targets through
`oracle.answers_to_targets` (the missing mass of top-k and rounded rows spread over the classes shown
as zero) and `fit` (one-hot answers label-smoothed by default), as in every steal.

A training variant is `default` or comma-separated changes to the default training: `smooth:X`
(`FitConfig.label_smoothing = X`; `smooth:0` is the unsmoothed training of hard answers), `ema:D`
(weight averaging with decay D: `FitConfig.ema`) and `pseudo[:THRESHOLD]` (pseudo-labels over the pool:
`FitConfig.semi`). Prints agreement (accuracy) per budget and each row's gap to `probs` with the default
training, in points. Rows are appended to a
JSONL file as runs finish; rerunning skips finished runs.

    .venv/bin/python benchmarks/output_modes.py --datasets mnist --modes label --variants default smooth:0
    .venv/bin/python benchmarks/output_modes.py --datasets mnist --report-only
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from activethief import ModelOracle, data, steal
from activethief.steal.config import DEFAULT_FIT, StealConfig
from activethief.target import cached_target
from activethief.training import FitConfig, SemiConfig

BUDGETS = (1000, 2000, 5000, 10_000)
MODES = ("probs", "label", "topk:1", "topk:3", "round:1", "round:2")


def variant_fit(variant: str) -> FitConfig:
    """The default training with a variant's changes (see the module docstring)."""
    fit = DEFAULT_FIT
    if variant == "default":
        return fit
    for change in variant.split(","):
        name, _, value = change.partition(":")
        if name == "smooth":
            fit = replace(fit, label_smoothing=float(value))
        elif name == "ema":
            fit = replace(fit, ema=float(value))
        elif name == "pseudo":
            fit = replace(fit, semi=SemiConfig(method="pseudo", threshold=float(value or 0.95)))
        else:
            raise SystemExit(
                f"unknown training variant {change!r}: use default, smooth:X, ema:D or pseudo[:T]"
            )
    return fit


def run(dataset: str, mode: str, variant: str, seed: int, budget: int, targets: Path) -> dict[str, Any]:
    """One steal to `budget`; its history row per round."""
    config = StealConfig(
        budget=budget, batch_size=1000, strategy="entropy+kcenter", seed=seed, fit=variant_fit(variant)
    )
    pool, _ = data.load(dataset, "train")
    started = time.perf_counter()
    result = steal(
        ModelOracle(cached_target(dataset, "lenet", targets), mode=mode),
        pool,
        config,
        test=data.load(dataset, "test"),
        quiet=True,
    )
    return {
        "dataset": dataset,
        "mode": mode,
        "variant": variant,
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


def _at(row: dict[str, Any], queries: int, key: str) -> float | None:
    return next((x[key] for x in row["rounds"] if x["queries"] == queries), None)


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: agreement (accuracy) % per budget, and the gap to `probs` (default training) in points."""
    lines = [
        "| dataset | mode | training | "
        + " | ".join(f"{b:,}: agree (acc)" for b in BUDGETS)
        + " | vs probs @"
        + "/".join(f"{b // 1000}k" for b in BUDGETS)
        + " |",
        "|---|---|---|" + "---|" * (len(BUDGETS) + 1),
    ]
    for dataset in sorted({r["dataset"] for r in rows}):
        mine = [r for r in rows if r["dataset"] == dataset]
        base = next((r for r in mine if r["mode"] == "probs" and r["variant"] == "default"), None)
        order = {m: i for i, m in enumerate(MODES)}
        for r in sorted(mine, key=lambda r: (order.get(r["mode"], 99), r["variant"], r["seed"])):
            cells, gaps = [], []
            for b in BUDGETS:
                agree, acc = _at(r, b, "agreement"), _at(r, b, "accuracy")
                cells.append(f"{100 * agree:.2f} ({100 * acc:.2f})" if agree is not None and acc else "-")
                theirs = None if base is None else _at(base, b, "agreement")
                gaps.append(f"{100 * (agree - theirs):+.2f}" if agree is not None and theirs else "-")
            variant = r["variant"] + ("" if r["seed"] == 0 else f", seed {r['seed']}")
            lines.append("| " + " | ".join([dataset, r["mode"], variant, *cells, " / ".join(gaps)]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument("--modes", nargs="+", default=list(MODES))
    parser.add_argument("--variants", nargs="+", default=["default"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--budget", type=int, default=max(BUDGETS))
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/output_modes.jsonl"))
    parser.add_argument("--report-only", action="store_true", help="Print the table from saved rows.")
    args = parser.parse_args()

    args.results.parent.mkdir(parents=True, exist_ok=True)
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    if not args.report_only:
        for dataset in args.datasets:
            for seed in args.seeds:
                for variant in args.variants:
                    for mode in args.modes:
                        key = (dataset, mode, variant, seed)
                        # a longer run already holds this one's rounds
                        if any(
                            (r["dataset"], r["mode"], r["variant"], r["seed"]) == key
                            and r["budget"] >= args.budget
                            for r in rows
                        ):
                            continue
                        row = run(dataset, mode, variant, seed, args.budget, args.targets)
                        rows.append(row)
                        with args.results.open("a") as handle:
                            handle.write(json.dumps(row) + "\n")
                        shown = "  ".join(
                            f"{b}: {_at(row, b, 'agreement'):.4f}"
                            for b in BUDGETS
                            if _at(row, b, "agreement") is not None
                        )
                        print(
                            f"{dataset} {mode} {variant} seed {seed}: {shown}  ({row['seconds']} s)",
                            flush=True,
                        )
    # the longest run of each (dataset, mode, variant, seed)
    longest: dict[tuple[Any, ...], dict[str, Any]] = {}
    for r in rows:
        key = (r["dataset"], r["mode"], r["variant"], r["seed"])
        if key not in longest or r["budget"] > longest[key]["budget"]:
            longest[key] = r
    print(table([r for r in longest.values() if r["dataset"] in args.datasets]))


if __name__ == "__main__":
    main()
