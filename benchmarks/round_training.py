"""Per-round training settings: accuracy vs wall time of a steal under different `FitConfig`s.

The experiment grid is thousands of rounds, so what one round costs decides whether it runs in hours or
days. This steals the same target with the same seed under each setting (one after another, never two at
once) and prints accuracy and agreement at a few budgets beside the seconds spent training, scoring the
pool and in total, with each setting's time as a ratio of the first one's (ratios from one run hold on a
noisy machine; absolute seconds do not).

    .venv/bin/python benchmarks/round_training.py --dataset mnist --strategy entropy --budget 10000
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict, replace
from pathlib import Path

from activethief import ModelOracle, data, steal
from activethief.experiments.inputs import ensure_target
from activethief.steal import DEFAULT_FIT
from activethief.training import FitConfig

SETTINGS: dict[str, FitConfig] = {
    "default": DEFAULT_FIT,
    "bf16": replace(DEFAULT_FIT, bf16=True),
    "warm200": replace(DEFAULT_FIT, warm_steps=200),
    "warm100": replace(DEFAULT_FIT, warm_steps=100),
    "bf16-warm200": replace(DEFAULT_FIT, bf16=True, warm_steps=200),
}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", default="mnist")
    parser.add_argument("--strategy", default="entropy")
    parser.add_argument("--budget", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--at", nargs="+", type=int, default=[2000, 5000, 10_000])
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/round_training.jsonl"))
    args = parser.parse_args()

    pool, _ = data.load(args.dataset, "train")
    test = data.load(args.dataset, "test")
    target = ensure_target(args.dataset, args.targets, log=print)
    first_seconds: float | None = None
    print(f"{args.dataset} {args.strategy} to {args.budget:,} queries, seed {args.seed}")
    header = " ".join(f"{'acc/agree@' + str(n):>17}" for n in args.at)
    print(f"{'setting':<14} {header} {'train s':>8} {'select s':>8} {'total s':>8} {'ratio':>6}")
    for name in args.settings:
        started = time.perf_counter()
        result = steal(
            ModelOracle(target),
            pool,
            budget=args.budget,
            strategy=args.strategy,
            seed=args.seed,
            test=test,
            quiet=True,
            fit=SETTINGS[name],
        )
        seconds = time.perf_counter() - started
        first_seconds = first_seconds or seconds
        by_size = {r.train_size: r for r in result.history}
        cells = []
        for n in args.at:
            r = by_size.get(n)
            cells.append(
                f"{'-':>17}"
                if r is None or r.accuracy is None or r.agreement is None
                else f"{100 * r.accuracy:>8.2f}/{100 * r.agreement:<8.2f}"
            )
        train = sum(r.seconds_train for r in result.history)
        select = sum(r.seconds_select for r in result.history)
        print(
            f"{name:<14} {' '.join(cells)} {train:>8.1f} {select:>8.1f} {seconds:>8.1f} "
            f"{seconds / first_seconds:>6.2f}",
            flush=True,
        )
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as handle:
            row = {
                "dataset": args.dataset,
                "strategy": args.strategy,
                "budget": args.budget,
                "seed": args.seed,
                "setting": name,
                "fit": asdict(SETTINGS[name]),
                "seconds": round(seconds, 1),
                "seconds_train": round(train, 1),
                "seconds_select": round(select, 1),
                "history": [asdict(r) for r in result.history],
            }
            handle.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    main()
