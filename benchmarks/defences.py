"""What each answer policy (defence) costs the target's honest users, and how much it moves the answers.

For each dataset's `lenet` target and each defence spec, on the dataset's test set (what honest users
send): the defended API's accuracy (`oracle.defence_cost`), the share of test images whose top label
the defence changed, and the mean L1 distance between defended and truthful answers. On the other
dataset's test set (an out-of-domain pool, what a thief without the owner's data sends): the share of
top labels changed and the mean L1 change, which is where Adaptive Misinformation acts. Rows are appended
to benchmarks/results/defences.jsonl. Numpy only after one prediction pass per set: seconds on a CPU.

    .venv/bin/python benchmarks/defences.py
    .venv/bin/python benchmarks/defences.py --datasets mnist --defences reverse-sigmoid:0.7 noise:0.1
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path
from typing import Any

from activethief import data
from activethief.oracle import ModelOracle, defence_cost
from activethief.target import cached_target

DEFENCES = (
    "none",
    "noise:0.02",
    "noise:0.1",
    "reverse-sigmoid:0.3",
    "reverse-sigmoid:0.7",
    "reverse-sigmoid:0.7,0.5",
    "misinformation:0.9",
    "misinformation:0.99",
    "noise:0.05+reverse-sigmoid:0.7",
)
OTHER = {"mnist": "fashion-mnist", "fashion-mnist": "mnist"}


def measure(dataset: str, spec: str, targets: Path) -> dict[str, Any]:
    """One row: the defence's cost on `dataset`'s test set and its effect on the other dataset's."""
    oracle = ModelOracle(cached_target(dataset, "lenet", targets))
    started = time.perf_counter()
    test_x, test_y = data.load(dataset, "test")
    other_x, _ = data.load(OTHER[dataset], "test")
    honest = defence_cost(oracle.backend, spec, test_x, test_y, seed=0)
    own_labels = oracle.backend.answer(other_x, "evaluation").argmax(1)  # no true labels out of domain
    ood = defence_cost(oracle.backend, spec, other_x, own_labels, seed=0)
    oracle.close()
    return {
        "dataset": dataset,
        "target": "lenet",
        "defence": honest.defence,
        "test_images": honest.images,
        "accuracy": round(honest.accuracy, 4),
        "undefended_accuracy": round(honest.undefended_accuracy, 4),
        "accuracy_cost_points": round(100 * (honest.undefended_accuracy - honest.accuracy), 2),
        "label_changed": round(honest.label_changed, 4),
        "mean_l1": round(honest.mean_l1, 4),
        "ood_pool": f"{OTHER[dataset]}:test",
        "ood_label_changed": round(ood.label_changed, 4),
        "ood_mean_l1": round(ood.mean_l1, 4),
        "seconds": round(time.perf_counter() - started, 1),
        "machine": platform.machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--defences", nargs="+", default=list(DEFENCES))
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/defences.jsonl"))
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    print(f"{'dataset':14s} {'defence':34s} {'acc':>7s} {'cost':>6s} {'flip':>6s} {'L1':>6s} "
          f"{'ood flip':>8s} {'ood L1':>6s}")  # fmt: skip
    for dataset in args.datasets:
        for spec in args.defences:
            row = measure(dataset, spec, args.targets)
            with args.results.open("a") as handle:
                handle.write(json.dumps(row) + "\n")
            print(
                f"{dataset:14s} {row['defence']:34s} {row['accuracy']:7.4f} "
                f"{row['accuracy_cost_points']:6.2f} {row['label_changed']:6.4f} {row['mean_l1']:6.4f} "
                f"{row['ood_label_changed']:8.4f} {row['ood_mean_l1']:6.4f}",
                flush=True,
            )


if __name__ == "__main__":
    main()
