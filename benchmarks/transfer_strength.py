"""Stronger transfer: PGD / MI-FGSM / DI-MI-FGSM from one substitute or an ensemble, against a lenet target.

Steals each dataset's `lenet` target once (5,000 queries, entropy+kcenter, cnn2, default settings, seed 0),
keeping every round's substitute (`attacks.ensemble.keep_rounds`), then crafts on the first 1,000 test
images the target classifies correctly and sends them to the target through the oracle
(`evaluate_transfer`: every adversarial image is a counted query; the clean labels are the owner's free
evaluation, used only to pick the images). Ensembles come from the run folder (`ensemble_from_run`)
without a single new query. Prints the success rate per (method, ensemble, ε, goal) and appends rows to
benchmarks/results/transfer_strength.jsonl.

    .venv/bin/python benchmarks/transfer_strength.py --datasets mnist
    .venv/bin/python benchmarks/transfer_strength.py --datasets fashion-mnist --eps 0.1 0.2 --goals untargeted
"""

from __future__ import annotations

import argparse
import functools
import json
import time
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch

from activethief import ModelOracle, data, steal
from activethief.attacks import evaluate_transfer, make_attack
from activethief.attacks.ensemble import Combine, Ensemble, ensemble_from_run, keep_rounds
from activethief.target import cached_target

BUDGET = 5000
N_IMAGES = 1000
RESULTS = Path("benchmarks/results/transfer_strength.jsonl")

# Ensembles by name: (rounds, archs) on top of the final substitute. "archs" avoids lenet, the target's
# architecture (a thief does not know it); "archs+lenet" shows what guessing it right adds.
ENSEMBLES: dict[str, tuple[tuple[int, ...], tuple[str, ...]]] = {
    "single": ((), ()),
    "rounds": ((2, 3, 4), ()),
    "archs": ((), ("cnn2", "cnn2-wide", "mlp", "resnet8")),
    "archs+lenet": ((), ("cnn2", "cnn2-wide", "mlp", "resnet8", "lenet")),
    "rounds+archs": ((2, 3, 4), ("cnn2", "cnn2-wide", "mlp", "resnet8")),
}

# Methods by name: (registry name, hyperparameters, how an ensemble fuses its members).
METHODS: dict[str, tuple[str, dict[str, Any], str]] = {
    "pgd": ("pgd", {"steps": 40, "step_size": 0.01}, "logits"),
    "mi-fgsm": ("mi-fgsm", {"steps": 10}, "logits"),
    "mi-fgsm-20": ("mi-fgsm", {"steps": 20}, "logits"),
    "di-mi-fgsm": ("di-mi-fgsm", {"steps": 20}, "logits"),
    "di-mi-fgsm-s4": ("di-mi-fgsm", {"steps": 20, "samples": 4}, "logits"),
    "ti-di-mi-fgsm": ("ti-di-mi-fgsm", {"steps": 20}, "logits"),
    "ti-di-mi-fgsm-k3": ("ti-di-mi-fgsm", {"steps": 20, "kernel_size": 3}, "logits"),
    "ti-di-mi-fgsm-k7": ("ti-di-mi-fgsm", {"steps": 20, "kernel_size": 7}, "logits"),
    "ti-mi-fgsm": ("ti-di-mi-fgsm", {"steps": 20, "diversity_prob": 0.0}, "logits"),
    "ti-di-mi-fgsm/loss": ("ti-di-mi-fgsm", {"steps": 20}, "loss"),
    "ti-di-mi-fgsm/probs": ("ti-di-mi-fgsm", {"steps": 20}, "probs"),
}


def ensure_run(dataset: str, runs: Path, targets: Path) -> Path:
    """The run folder of the 5,000-query steal, stolen first (with every round kept) if missing."""
    out = runs / f"transfer-{dataset}"
    if (out / "summary.json").exists():
        return out
    started = time.perf_counter()
    result = steal(
        ModelOracle(cached_target(dataset, "lenet", targets)),
        dataset,
        budget=BUDGET,
        strategy="entropy+kcenter",
        seed=0,
        test=data.load(dataset, "test"),
        out=out,
        quiet=True,
        on_round=keep_rounds(out),
    )
    print(
        f"{dataset}: stole {result.queries_used} queries in {time.perf_counter() - started:.0f} s, "
        f"agreement {result.history[-1].agreement}",
        flush=True,
    )
    return out


@functools.cache
def attacked_images(dataset: str, oracle: ModelOracle) -> tuple[np.ndarray, np.ndarray]:
    """The first `N_IMAGES` test images the target classifies correctly (its owner's free evaluation)."""
    images, labels = data.load(dataset, "test")
    predicted = oracle.evaluate(images[:3000])
    assert predicted is not None
    keep = np.flatnonzero(predicted == labels[:3000])[:N_IMAGES]
    return images[keep], labels[keep]


@functools.cache
def build_ensemble(run: Path, name: str, combine: Combine) -> Ensemble:
    rounds, archs = ENSEMBLES[name]
    return ensemble_from_run(run, rounds=rounds, archs=archs, combine=combine)


def measure(
    dataset: str, run: Path, oracle: ModelOracle, ensemble: str, method: str, eps: float, goal: str
) -> dict[str, Any]:
    """One transfer measurement: craft on the ensemble, send the 1,000 adversarial images to the target."""
    images, labels = attacked_images(dataset, oracle)
    name, settings, combine = METHODS[method]
    target_class = "least-likely" if goal == "least-likely" else None
    attack = make_attack(name, eps=eps, target_class=target_class, **settings)
    model = build_ensemble(run, ensemble, cast(Combine, combine))
    used = oracle.used
    result = evaluate_transfer(model, oracle, images, labels, attack, target_clean=labels, seed=0)
    rate = result.targeted_transfer_success_rate if attack.targeted else result.transfer_success_rate
    return {
        "dataset": dataset,
        "method": method,
        "ensemble": ensemble,
        "members": list(model.names),
        "combine": model.combine,
        "eps": eps,
        "goal": goal,
        "success": rate,
        "untargeted_success": result.transfer_success_rate,
        "whitebox_success": (
            result.targeted_whitebox_success_rate if attack.targeted else result.whitebox_success_rate
        ),
        "queries": oracle.used - used,
        "n": result.n,
        "attack": result.attack,
        "seconds": result.seconds,
        "torch_threads": torch.get_num_threads(),
    }


def table(rows: list[dict[str, Any]]) -> str:
    """Markdown: success % per (method, ensemble) and (ε, goal)."""
    columns = sorted({(r["goal"] != "untargeted", r["eps"], r["goal"]) for r in rows})
    head = " | ".join(f"ε={eps:g} {'LL' if g == 'least-likely' else 'untargeted'}" for _, eps, g in columns)
    lines = [f"| dataset | method | ensemble | {head} |", "|---|---|---|" + "---|" * len(columns)]
    keys = sorted({(r["dataset"], r["method"], r["ensemble"]) for r in rows})
    for dataset, method, ensemble in keys:
        cells = []
        for _, eps, goal in columns:
            hit = [
                r
                for r in rows
                if (r["dataset"], r["method"], r["ensemble"], r["eps"], r["goal"])
                == (dataset, method, ensemble, eps, goal)
            ]
            cells.append("-" if not hit or hit[-1]["success"] is None else f"{100 * hit[-1]['success']:.1f}")
        lines.append(f"| {dataset} | {method} | {ensemble} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["mnist"])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--ensembles", nargs="+", default=list(ENSEMBLES), choices=list(ENSEMBLES))
    parser.add_argument("--eps", nargs="+", type=float, default=[0.1, 0.2, 0.3])
    parser.add_argument("--goals", nargs="+", default=["untargeted", "least-likely"])
    parser.add_argument("--targeted-eps", type=float, default=0.3, help="the ε of the least-likely attacks")
    parser.add_argument("--runs", type=Path, default=Path("runs"))
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--steal-only", action="store_true")
    parser.add_argument("--table-only", action="store_true", help="print the table of the rows so far")
    args = parser.parse_args()
    if args.table_only:
        print(table([json.loads(line) for line in RESULTS.read_text().splitlines()]))
        return
    rows: list[dict[str, Any]] = []
    for dataset in args.datasets:
        run = ensure_run(dataset, args.runs, args.targets)
        if args.steal_only:
            continue
        oracle = ModelOracle(cached_target(dataset, "lenet", args.targets))
        settings = [(e, "untargeted") for e in args.eps if "untargeted" in args.goals]
        settings += [(args.targeted_eps, "least-likely")] if "least-likely" in args.goals else []
        for ensemble in args.ensembles:
            for method in args.methods:
                for eps, goal in settings:
                    row = measure(dataset, run, oracle, ensemble, method, eps, goal)
                    rows.append(row)
                    RESULTS.parent.mkdir(parents=True, exist_ok=True)
                    with RESULTS.open("a") as handle:
                        handle.write(json.dumps(row) + "\n")
                    print(
                        f"{dataset} {method:16s} {ensemble:12s} eps={eps:g} {goal:12s} "
                        f"success {100 * (row['success'] or 0):5.1f}% (white-box "
                        f"{100 * (row['whitebox_success'] or 0):5.1f}%) {row['seconds']:.1f} s",
                        flush=True,
                    )
    if rows:
        print(table(rows))


if __name__ == "__main__":
    main()
