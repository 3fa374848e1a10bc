"""Low-budget seeding: agreement of a substitute trained on the seed alone, per seeder, seed size and dataset.

Each run buys one seed of K queries from the dataset's LeNet target (runs/targets/<dataset>-lenet.pt,
trained if missing) through a counting `ModelOracle`, trains a fresh `cnn2` substitute on the answers
with the low-budget preset's training (`LOW_BUDGET_FIT`; the same model, training and selection seeds
as round 1 of `steal(..., seeding=NAME, seed=s)`), and measures test agreement with the target. Seeders
include TypiClust and ProbCover in two representations of the pool (PCA-50 with unit-length rows, the default,
and plain PCA-50 coordinates, `@pca`), to choose the representation by measurement. Rows are appended to
a JSONL file as runs finish; rerunning skips finished runs, so the benchmark can be run in parts. Prints
mean ± std over seeds, the ratio of each seeder's mean to random's, and seconds per seeder call.

    .venv/bin/python benchmarks/seeding_low_budget.py --datasets mnist fashion-mnist --sizes 100 200 \
        --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from activethief import ModelOracle, data, models
from activethief.oracle import answers_to_targets
from activethief.selection import PoolView, Seeder, make_seeder
from activethief.selection.typical import ProbCoverSeeder, TypiClustSeeder
from activethief.steal.config import LOW_BUDGET_FIT
from activethief.steal.loop import round_seed
from activethief.target import cached_target
from activethief.training import fit, predict_proba

SEEDERS: dict[str, Callable[[], Seeder]] = {
    "random": lambda: make_seeder("random"),
    "pca-kmeans:10": lambda: make_seeder("pca-kmeans:10"),
    "typiclust": lambda: make_seeder("typiclust"),
    "typiclust@pca": lambda: TypiClustSeeder(unit_length=False),
    "probcover:10": lambda: make_seeder("probcover:10"),
    "probcover:10@pca": lambda: ProbCoverSeeder(10, unit_length=False),
}


def run(dataset: str, seeder_name: str, size: int, seed: int, target: Path) -> dict[str, Any]:
    """One seed round: select, buy, train, measure."""
    pool, _ = data.load(dataset, "train")
    test_x, test_y = data.load(dataset, "test")
    oracle = ModelOracle(target)
    seeder = SEEDERS[seeder_name]()
    started = time.perf_counter()
    chosen = np.sort(seeder.select(PoolView(size=len(pool), images=pool), size, rng(seed)))
    seconds_select = time.perf_counter() - started
    answers = oracle.query(pool[chosen], keys=chosen, round=0)
    assert oracle.used == size, (oracle.used, size)
    model = models.build("cnn2", oracle.num_classes, seed=round_seed(seed, 1, 1))
    started = time.perf_counter()
    fit(model, pool[chosen], answers_to_targets(answers), config=LOW_BUDGET_FIT, seed=round_seed(seed, 1, 2))
    seconds_train = time.perf_counter() - started
    pred = predict_proba(model, test_x).argmax(1)
    target_labels = oracle.evaluate(test_x)
    assert target_labels is not None  # a model file the user owns: evaluation is free
    return {
        "dataset": dataset,
        "seeder": seeder_name,
        "size": size,
        "seed": seed,
        "agreement": round(float((pred == target_labels).mean()), 4),
        "accuracy": round(float((pred == test_y).mean()), 4),
        "classes_in_seed": int(np.unique(answers.argmax(1)).size),
        "seconds_select": round(seconds_select, 2),
        "seconds_train": round(seconds_train, 1),
        "queries": oracle.used,
    }


def rng(seed: int) -> np.random.Generator:
    """The seed round's selection generator, as the loop derives it."""
    return np.random.default_rng(round_seed(seed, 0, 3))


def table(rows: list[dict[str, Any]]) -> str:
    """Mean ± std agreement per (dataset, size, seeder), its ratio to random's mean, and select seconds."""
    groups: dict[tuple[str, int, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["dataset"], row["size"], row["seeder"]), []).append(row)
    lines = [
        f"{'dataset':14} {'K':>4} {'seeder':18} {'n':>2} {'agreement':>15} {'vs random':>9} {'select s':>8}"
    ]
    for (dataset, size, name), group in sorted(groups.items()):
        agreement = np.array([r["agreement"] for r in group])
        base = groups.get((dataset, size, "random"))
        ratio = agreement.mean() / np.mean([r["agreement"] for r in base]) if base else float("nan")
        select = np.mean([r["seconds_select"] for r in group])
        lines.append(
            f"{dataset:14} {size:>4} {name:18} {len(group):>2} "
            f"{agreement.mean():.4f} ± {agreement.std():.4f} {ratio:>9.3f} {select:>8.2f}"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--seeders", nargs="+", default=list(SEEDERS), choices=list(SEEDERS))
    parser.add_argument("--sizes", nargs="+", type=int, default=[100, 200])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/seeding_low_budget.jsonl"))
    parser.add_argument("--table-only", action="store_true", help="print the table of the rows so far")
    args = parser.parse_args()
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    done = {(r["dataset"], r["seeder"], r["size"], r["seed"]) for r in rows}
    if not args.table_only:
        args.targets.mkdir(parents=True, exist_ok=True)
        args.results.parent.mkdir(parents=True, exist_ok=True)
        for dataset in args.datasets:
            target = cached_target(dataset, "lenet", args.targets)
            for size in args.sizes:
                for name in args.seeders:
                    for seed in args.seeds:
                        if (dataset, name, size, seed) in done:
                            continue
                        row = run(dataset, name, size, seed, target)
                        print(json.dumps(row), flush=True)
                        with args.results.open("a") as out:
                            out.write(json.dumps(row) + "\n")
                        rows.append(row)
    print(table([r for r in rows if r["dataset"] in args.datasets and r["size"] in args.sizes]))


if __name__ == "__main__":
    main()
