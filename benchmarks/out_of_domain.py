"""Stealing with thief data from another distribution: the agreement curve per pool, strategy and preset.

Each run steals a LeNet target (runs/targets/<target>-lenet.pt, trained if missing) with a `cnn2`
substitute through a counting `ModelOracle`, from a pool spec `open_pool` knows (`fashion-mnist`,
`sklearn-digits`, `mix:mnist@1000+fashion-mnist@59000`, `noise:uniform:60000`, `aug:...:fashion-mnist`,
or the target's own data as the in-domain reference), and records agreement with the target and
accuracy on the target's test set after every round (1,000 queries a round, as ActiveThief's rounds).
A pool smaller than the budget (sklearn-digits: 1,797) is stolen to its size. Rows are appended to a
JSONL file as runs finish; rerunning skips finished runs, so the benchmark runs in parts. Prints the
curve per (target, pool, strategy, preset) and each pool's ratio to uniform noise at every budget
(ActiveThief, Pal et al., AAAI 2020, reports 4.70x over noise at 30,000 queries).

    .venv/bin/python benchmarks/out_of_domain.py --target mnist \
        --pools fashion-mnist sklearn-digits noise:uniform:60000 mnist --strategies random entropy+kcenter
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from activethief import ModelOracle, data, steal
from activethief.steal import StealConfig
from activethief.target import cached_target
from activethief.training import parse_semi

NOISE_PREFIX = "noise:uniform:"


def run(
    target: str,
    pool: str,
    strategy: str,
    preset: str,
    budget: int,
    seed: int,
    targets: Path,
    fit: dict[str, Any],
    substitute: str = "cnn2",
) -> dict[str, Any]:
    """One steal of `target`'s LeNet from `pool` to `budget` (or the pool's size) with a `substitute`,
    the preset's training settings changed by `fit` (FitConfig fields); its rounds."""
    oracle = ModelOracle(cached_target(target, "lenet", targets))
    opened = data.open_pool(pool, oracle.input_shape)
    budget = min(budget, len(opened))
    config = StealConfig.preset(
        preset, budget=budget, batch_size=1000, strategy=strategy, seed=seed, substitute=substitute
    )
    changes = {**fit, **({"semi": parse_semi(fit["semi"])} if "semi" in fit else {})}
    config = replace(config, fit=replace(config.fit, **changes))
    started = time.perf_counter()
    result = steal(oracle, opened, config, test=data.load(target, "test"), quiet=True)
    return {
        "target": target,
        "pool": pool,
        "strategy": strategy,
        "preset": preset,
        **({"fit": fit} if fit else {}),
        **({"substitute": substitute} if substitute != "cnn2" else {}),
        "seed": seed,
        "budget": budget,
        "seconds": round(time.perf_counter() - started, 1),
        "queries_paid": oracle.used,
        "rounds": [
            {
                "queries": r.train_size,
                "agreement": r.agreement,
                "accuracy": r.accuracy,
                "steps": r.train_steps,
            }
            for r in result.history
            if r.train_size > 0
        ],
    }


def variant(row: dict[str, Any]) -> str:
    """The training a row used: its preset, the FitConfig fields it changed, its substitute if not cnn2."""
    changed = ",".join(f"{name}={value}" for name, value in sorted(row.get("fit", {}).items()))
    substitute = row.get("substitute", "cnn2")
    return " ".join(
        part for part in (row["preset"], changed, "" if substitute == "cnn2" else substitute) if part
    )


def parse_fit(pairs: list[str]) -> dict[str, Any]:
    """`NAME=VALUE` pairs (FitConfig fields; values read as JSON where they parse, e.g. ema=0.99 or
    epochs=30, else kept as text: semi=fixmatch, as `--semi` takes it)."""
    fit: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--fit takes NAME=VALUE pairs, got {pair!r}")
        try:
            fit[name] = json.loads(value)
        except json.JSONDecodeError:
            fit[name] = value
    return fit


def curve(row: dict[str, Any]) -> dict[int, float]:
    return {r["queries"]: r["agreement"] for r in row["rounds"] if r["agreement"] is not None}


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: agreement % per budget for each run, and its ratio to the uniform-noise pool's."""
    budgets = sorted({q for row in rows for q in curve(row)})
    shown = [b for b in budgets if b % 1000 == 0 or b == max(budgets)]
    lines = [
        "| target | pool | strategy | preset | "
        + " | ".join(f"{b // 1000}k" for b in shown)
        + " | at the end | x noise |",
        "|---|---|---|---|" + "---|" * (len(shown) + 2),
    ]
    for row in sorted(rows, key=lambda r: (r["target"], r["pool"], r["strategy"], variant(r))):
        points = curve(row)
        noise = [
            curve(r)
            for r in rows
            if r["target"] == row["target"]
            and r["pool"].startswith(NOISE_PREFIX)
            and r["strategy"] == row["strategy"]
        ]
        common = sorted(set(points) & set(noise[0])) if noise else []
        ratio = f"{points[common[-1]] / noise[0][common[-1]]:.2f} @{common[-1] // 1000}k" if common else "-"
        cells = [f"{100 * points[b]:.1f}" if b in points else "" for b in shown]
        lines.append(
            f"| {row['target']} | {row['pool']} | {row['strategy']} | {variant(row)} | "
            + " | ".join(cells)
            + f" | {100 * points[max(points)]:.1f} @{max(points)} | {ratio} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--target", default="mnist", help="mnist or fashion-mnist (its LeNet target)")
    parser.add_argument(
        "--pools", nargs="+", default=["fashion-mnist", "sklearn-digits", "noise:uniform:60000"]
    )
    parser.add_argument("--strategies", nargs="+", default=["random", "entropy+kcenter"])
    parser.add_argument("--presets", nargs="+", default=["default"])
    parser.add_argument(
        "--fit", nargs="*", default=[], help="training changes, NAME=VALUE (FitConfig fields), e.g. ema=0.99"
    )
    parser.add_argument("--substitute", default="cnn2", help="the substitute's architecture")
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/out_of_domain.jsonl"))
    parser.add_argument("--table-only", action="store_true", help="print the table of the rows so far")
    args = parser.parse_args()
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    fit = parse_fit(args.fit)
    label = variant({"preset": "", "fit": fit, "substitute": args.substitute})
    done = {(r["target"], r["pool"], r["strategy"], variant(r), r["seed"], r["budget"]) for r in rows}
    if not args.table_only:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for pool in args.pools:
            for strategy in args.strategies:
                for preset in args.presets:
                    for seed in args.seeds:
                        budget = args.budget if pool != "sklearn-digits" else min(args.budget, 1797)
                        key = (args.target, pool, strategy, f"{preset} {label}".strip(), seed, budget)
                        if key in done:
                            continue
                        row = run(
                            args.target,
                            pool,
                            strategy,
                            preset,
                            budget,
                            seed,
                            args.targets,
                            fit,
                            args.substitute,
                        )
                        print(json.dumps(row), flush=True)
                        with args.results.open("a") as out:
                            out.write(json.dumps(row) + "\n")
                        rows.append(row)
    print(table(rows))


if __name__ == "__main__":
    main()
