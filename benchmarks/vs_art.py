"""activethief side by side with ART 1.20's extraction attacks: same target, pool, test set and substitute.

The target is a `lenet` trained by the library on the dataset's training split (runs/targets/<dataset>-
lenet.pt, trained if missing), the pool is that training split, agreement and accuracy are measured on
the test split, and every substitute is a `cnn2` (another architecture than the target's). Our side is
one steal per configuration (`OURS`) to the largest budget; its history gives the smaller budgets.
ART's side (`ART`) is one `extract` per budget: CopycatCNN, KnockoffNets with random and with adaptive
(bandit) sampling, the thieved `cnn2` wrapped in ART's PyTorchClassifier with the optimiser our loop uses
(RMSprop, lr 1e-3) and batches of 128.

Fair training: ART's fit gets at least as many gradient steps as our loop spent up to the same budget (the
most of our configurations measured for that dataset, seed and budget; every warm-started round
counted), so `nb_epochs = ceil(steps / ceil(budget / 128))`. `ART_STEP_FACTORS` adds a plain larger fit
(twice those steps). The epochs are in the table.

Every query counts on both sides: ART's victim is a BlackBoxClassifier whose predict function asks an
activethief Oracle, so the images ART sent (repeats included: KnockoffNets adaptive samples with
replacement) are read from `oracle.used`, and the distinct ones are counted by their bytes.

Rows (one per dataset, method, seed and budget) are appended to benchmarks/results/vs_art.jsonl as they
arrive; `--resume` skips rows already there, so the benchmark can run in pieces:

    .venv/bin/python benchmarks/vs_art.py --dataset mnist --seeds 0 --budgets 250 500   # smoke
    .venv/bin/python benchmarks/vs_art.py --dataset fashion-mnist --seeds 1 --resume
    .venv/bin/python benchmarks/vs_art.py --report-only
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import math
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, is_dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from activethief import ModelOracle, data, models, steal
from activethief.steal import RoundEvent
from activethief.steal import loop as steal_loop
from activethief.target import cached_target
from activethief.training import predict_proba

# Our configurations: name -> `steal` settings. Rounds of 250 after a random seed of 250, so one run to
# 2,000 queries passes every budget (250 is the seed round: every strategy is random there).
OURS: dict[str, dict[str, Any]] = {
    "ours: random": {"strategy": "random", "seed_size": 250, "batch_size": 250},
    "ours: entropy+kcenter": {"strategy": "entropy+kcenter", "seed_size": 250, "batch_size": 250},
}
try:  # the library's low-budget preset, in rounds of 125 (its own 100 would pass 500 but not 250)
    from activethief.steal.config import PRESETS

    OURS["ours: low-budget"] = {**PRESETS["low-budget"], "seed_size": 125, "batch_size": 125}
except (ImportError, KeyError):
    pass
# ART's fit gets at least the steps these spent (the loop's default training); other configurations are
# compared at their own cost, so adding one does not change ART's training budget.
REFERENCE = ("ours: random", "ours: entropy+kcenter")


@dataclass(frozen=True)
class ArtMethod:
    """One ART extraction attack: which class, its sampling, and its steps as a multiple of ours."""

    attack: str  # "copycat" or "knockoff"
    sampling: str = "random"  # KnockoffNets: "random" or "adaptive"
    step_factor: int = 1


ART: dict[str, ArtMethod] = {
    "art: CopycatCNN": ArtMethod("copycat"),
    "art: KnockoffNets random": ArtMethod("knockoff"),
    "art: KnockoffNets adaptive": ArtMethod("knockoff", "adaptive"),
    "art: CopycatCNN 2x steps": ArtMethod("copycat", step_factor=2),
}
METHODS = [*OURS, *ART]
ART_BATCH = 128
ART_LR = 1e-3
DATASETS = ["mnist", "fashion-mnist"]


def library_state() -> str:
    """The installed activethief's identity: a hash of its source files (a shared checkout changes)."""
    root = Path(steal_loop.__file__).resolve().parent.parent
    digest = hashlib.sha256()
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + path.read_bytes())
    return digest.hexdigest()[:12]


@dataclass
class Inputs:
    """What every method of one dataset shares."""

    target: nn.Module
    pool: np.ndarray
    pool_labels: np.ndarray
    test: tuple[np.ndarray, np.ndarray]
    target_test_labels: np.ndarray
    num_classes: int


def load_inputs(dataset: str, targets: Path) -> Inputs:
    target, meta = models.load(cached_target(dataset, "lenet", targets))
    pool, pool_labels = data.load(dataset, "train")
    test = data.load(dataset, "test")
    labels = ModelOracle(target).evaluate(test[0])  # the user's own model: free, not a query
    assert labels is not None
    return Inputs(target, pool, pool_labels, test, labels, int(meta["num_classes"]))


def scores(model: nn.Module, inputs: Inputs) -> tuple[float, float]:
    """(agreement with the target, accuracy) on the test split."""
    pred = predict_proba(model, inputs.test[0]).argmax(1)
    return float((pred == inputs.target_test_labels).mean()), float((pred == inputs.test[1]).mean())


@contextlib.contextmanager
def counting_fit_steps() -> Iterator[list[int]]:
    """Records `FitResult.steps` of every fit the steal loop runs (its round records keep epochs only)."""
    steps: list[int] = []
    original = steal_loop.fit

    def counted(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        steps.append(int(result.steps))
        return result

    steal_loop.fit = counted  # type: ignore[assignment]
    try:
        yield steps
    finally:
        steal_loop.fit = original  # type: ignore[assignment]


def run_ours(
    dataset: str, method: str, seed: int, budgets: list[int], inputs: Inputs
) -> list[dict[str, Any]]:
    """One steal to the largest budget; a row per budget from its history (time and steps cumulative)."""
    oracle = ModelOracle(inputs.target)
    per_round: list[tuple[int, int]] = []  # (train size, fit steps of that round)
    started = time.perf_counter()
    with counting_fit_steps() as steps:

        def on_round(event: RoundEvent) -> None:
            per_round.append((event.record.train_size, sum(steps)))

        result = steal(
            oracle,
            inputs.pool,
            budget=max(budgets),
            seed=seed,
            test=inputs.test,
            target_test_labels=inputs.target_test_labels,
            quiet=True,
            on_round=on_round,
            **OURS[method],
        )
    total = time.perf_counter() - started
    if len(steps) != sum(1 for r in result.history if r.train_size > 0):
        raise RuntimeError("the steal loop no longer trains through activethief.steal.loop.fit; fix the hook")
    steps_at = dict(per_round)
    rows = []
    for budget in budgets:
        record = next((r for r in result.history if r.train_size == budget), None)
        if record is None:
            print(f"  {method} never trained on exactly {budget} answers (rounds of the config); skipped")
            continue
        assert record.agreement is not None and record.accuracy is not None
        before = [r for r in result.history if r.train_size < budget]
        seconds = sum(r.seconds_train + r.seconds_select + r.seconds_query for r in before)
        rows.append(
            {
                "dataset": dataset,
                "method": method,
                "seed": seed,
                "budget": budget,
                "agreement": record.agreement,
                "accuracy": record.accuracy,
                "seconds": round(seconds + record.seconds_train, 2),
                "answered": budget,  # the ledger's keyed answers: each pool point bought once
                "distinct": budget,
                "steps": steps_at[budget],
                "epochs": None,
                "settings": {k: asdict(v) if is_dataclass(v) else v for k, v in OURS[method].items()},
                "library": library_state(),
                "run_seconds": round(total, 1),
            }
        )
    if oracle.used != result.queries_used:
        raise RuntimeError(f"oracle counted {oracle.used} queries, the loop {result.queries_used}")
    return rows


class CountedVictim:
    """ART's victim's predict function: every image goes through an activethief Oracle, which counts it.

    Unkeyed queries, so a repeated image is paid again (as it would be against a real API: ART keeps no
    cache). Answers are log-probabilities: KnockoffNets assumes the victim outputs logits, and
    softmax(log p) = p, so they are logits up to a constant (CopycatCNN only uses the argmax).
    """

    def __init__(self, target: nn.Module) -> None:
        self.oracle = ModelOracle(target)
        self.seen: set[bytes] = set()

    def __call__(self, x: np.ndarray) -> np.ndarray:
        images = np.ascontiguousarray(x, dtype=np.float32)
        self.seen.update(hashlib.blake2b(image.tobytes(), digest_size=16).digest() for image in images)
        logp: np.ndarray = np.log(np.clip(self.oracle.query(images), 1e-12, None))
        return logp


@contextlib.contextmanager
def art_global_seed(seed: int) -> Iterator[None]:
    """Seed the global state ART draws from, and restore it afterwards.

    ART 1.20's CopycatCNN and KnockoffNets sample from NumPy's global RandomState, and PyTorchClassifier.fit
    shuffles through a DataLoader on torch's global generator: a peer's limitation, not our convention.
    """
    state = np.random.get_state()
    with torch.random.fork_rng(devices=[]):
        np.random.seed(seed)  # global on purpose: see the docstring
        torch.manual_seed(seed)
        try:
            yield
        finally:
            np.random.set_state(state)


def art_epochs(reference_steps: int, budget: int, factor: int) -> int:
    """Epochs giving ART's fit at least `factor` times our steps on `budget` images in batches of 128."""
    return max(1, math.ceil(factor * reference_steps / math.ceil(budget / ART_BATCH)))


def run_art(
    dataset: str, method: str, seed: int, budget: int, inputs: Inputs, reference_steps: int
) -> dict[str, Any]:
    """One ART extraction to `budget` queries; the thieved cnn2 is measured like ours."""
    from art.attacks.extraction import CopycatCNN, KnockoffNets
    from art.estimators.classification import BlackBoxClassifier, PyTorchClassifier

    spec = ART[method]
    epochs = art_epochs(reference_steps, budget, spec.step_factor)
    victim_fn = CountedVictim(inputs.target)
    victim = BlackBoxClassifier(
        victim_fn, input_shape=(1, 28, 28), nb_classes=inputs.num_classes, clip_values=(0.0, 1.0)
    )
    model = models.build("cnn2", inputs.num_classes, seed=seed)
    thieved = PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.RMSprop(model.parameters(), lr=ART_LR),
        input_shape=(1, 28, 28),
        nb_classes=inputs.num_classes,
        clip_values=(0.0, 1.0),
        device_type="cpu",
    )
    common = {
        "batch_size_fit": ART_BATCH,
        "batch_size_query": ART_BATCH,
        "nb_epochs": epochs,
        "nb_stolen": budget,
    }
    attack: Any
    if spec.attack == "copycat":
        attack = CopycatCNN(victim, **common)
    else:
        attack = KnockoffNets(victim, sampling_strategy=spec.sampling, reward="all", verbose=False, **common)
    # KnockoffNets adaptive draws its actions from the pool's class labels (ART requires `y`): it knows
    # the pool's true classes, which our side never sees.
    y = inputs.pool_labels if spec.sampling == "adaptive" else None
    with art_global_seed(seed):
        started = time.perf_counter()
        attack.extract(inputs.pool, y, thieved_classifier=thieved)
        seconds = time.perf_counter() - started
    agreement, accuracy = scores(model, inputs)
    answered = victim_fn.oracle.used
    # Gradient steps ART spent: the fit's epochs, plus one per image for adaptive's online updates.
    steps = epochs * math.ceil(answered / ART_BATCH) + (answered if spec.sampling == "adaptive" else 0)
    return {
        "dataset": dataset,
        "method": method,
        "seed": seed,
        "budget": budget,
        "agreement": agreement,
        "accuracy": accuracy,
        "seconds": round(seconds, 2),
        "answered": answered,
        "distinct": len(victim_fn.seen),
        "steps": steps,
        "epochs": epochs,
        "reference_steps": reference_steps,
        "settings": {"attack": spec.attack, "sampling": spec.sampling, "step_factor": spec.step_factor},
        "library": library_state(),
    }


def key(row: dict[str, Any]) -> tuple[str, str, int, int]:
    return row["dataset"], row["method"], row["seed"], row["budget"]


def latest(rows: list[dict[str, Any]]) -> dict[tuple[str, str, int, int], dict[str, Any]]:
    """The last row per (dataset, method, seed, budget)."""
    return {key(r): r for r in rows}


def reference_steps(
    rows: dict[tuple[str, str, int, int], dict[str, Any]], dataset: str, seed: int, budget: int
) -> int:
    """The most steps any of our configurations spent up to `budget` (what ART's fit must at least match)."""
    ours = [
        r["steps"] for (d, m, s, b), r in rows.items() if (d, s, b) == (dataset, seed, budget) and m in OURS
    ]
    if not ours:
        raise SystemExit(
            f"no row of {' or '.join(REFERENCE)} for {dataset}, seed {seed}, {budget} queries: ART's "
            "training budget is set from their steps, so run one first (or with --resume after one)"
        )
    return max(ours)


def mean_std(values: list[float]) -> str:
    return f"{100 * np.mean(values):.2f} ± {100 * np.std(values):.2f}" if values else "-"


def table(rows: list[dict[str, Any]], budgets: list[int]) -> str:
    """Markdown: one line per dataset, method and budget (mean ± std over seeds), then the ratios."""
    lines = [
        "| dataset | method | queries | seeds | agreement % | accuracy % | wall s | answered / distinct "
        "| steps | ART epochs |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    cells: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in rows:
        cells.setdefault((r["dataset"], r["method"], r["budget"]), []).append(r)
    datasets = [d for d in DATASETS if any(r["dataset"] == d for r in rows)]
    for dataset in datasets:
        for budget in budgets:
            for method in METHODS:
                runs = cells.get((dataset, method, budget))
                if not runs:
                    continue
                epochs = sorted({r["epochs"] for r in runs if r["epochs"] is not None})
                agreement = mean_std([r["agreement"] for r in runs])
                accuracy = mean_std([r["accuracy"] for r in runs])
                answered = np.mean([r["answered"] for r in runs])
                distinct = np.mean([r["distinct"] for r in runs])
                lines.append(
                    f"| {dataset} | {method} | {budget:,} | {len(runs)} | {agreement} | {accuracy} "
                    f"| {np.mean([r['seconds'] for r in runs]):.1f} | {answered:,.0f} / {distinct:,.0f} "
                    f"| {np.mean([r['steps'] for r in runs]):,.0f} | {'/'.join(map(str, epochs)) or '-'} |"
                )
    lines += [
        "",
        "| dataset | queries | our best | ART's best | agreement gap (points) | time ratio (ours / ART) "
        "| ours: random - ART's best random (points) |",
        "|---|---|---|---|---|---|---|",
    ]

    def best(dataset: str, budget: int, names: list[str]) -> tuple[str, float, float] | None:
        """(method, mean agreement, mean seconds) of the named method with the highest mean agreement."""
        found = [
            (m, float(np.mean([r["agreement"] for r in runs])), float(np.mean([r["seconds"] for r in runs])))
            for m in names
            if (runs := cells.get((dataset, m, budget)))
        ]
        return max(found, key=lambda f: f[1]) if found else None

    art_random = [m for m, spec in ART.items() if spec.sampling == "random"]
    for dataset in datasets:
        for budget in budgets:
            ours, theirs = best(dataset, budget, list(OURS)), best(dataset, budget, list(ART))
            if ours is None or theirs is None:
                continue
            ours_random, theirs_random = (
                best(dataset, budget, ["ours: random"]),
                best(dataset, budget, art_random),
            )
            random_gap = (
                f"{100 * (ours_random[1] - theirs_random[1]):+.2f} ({theirs_random[0]})"
                if ours_random and theirs_random
                else "-"
            )
            lines.append(
                f"| {dataset} | {budget:,} | {ours[0]} {100 * ours[1]:.2f} "
                f"| {theirs[0]} {100 * theirs[1]:.2f} "
                f"| {100 * (ours[1] - theirs[1]):+.2f} | {ours[2] / theirs[2]:.2f} | {random_gap} |"
            )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dataset", nargs="+", default=DATASETS, choices=DATASETS)
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--budgets", nargs="+", type=int, default=[250, 500, 1000, 2000])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=METHODS,
        choices=METHODS,
        metavar="METHOD",
        help=f"a subset of: {'; '.join(METHODS)}",
    )
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/vs_art.jsonl"))
    parser.add_argument("--resume", action="store_true", help="Skip rows already in the results file.")
    parser.add_argument("--report-only", action="store_true", help="Print the table from saved rows.")
    args = parser.parse_args()
    budgets = sorted(args.budgets)

    args.results.parent.mkdir(parents=True, exist_ok=True)
    saved = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    done = latest(saved)

    def record(row: dict[str, Any]) -> None:
        done[key(row)] = row
        with args.results.open("a") as handle:
            handle.write(json.dumps(row) + "\n")
        print(
            f"{row['dataset']} {row['method']} seed {row['seed']} {row['budget']:,} queries: agreement "
            f"{100 * row['agreement']:.2f} accuracy {100 * row['accuracy']:.2f} in {row['seconds']:.1f} s "
            f"({row['answered']:,} answered, {row['distinct']:,} distinct, {row['steps']:,} steps)",
            flush=True,
        )

    def todo(dataset: str, method: str, seed: int, budget: int) -> bool:
        return not (args.resume and (dataset, method, seed, budget) in done)

    if not args.report_only:
        for dataset in args.dataset:
            inputs: Inputs | None = None
            for seed in args.seeds:
                for method in [m for m in args.methods if m in OURS]:
                    missing = [b for b in budgets if todo(dataset, method, seed, b)]
                    if missing:
                        inputs = inputs or load_inputs(dataset, args.targets)
                        for row in run_ours(dataset, method, seed, missing, inputs):
                            record(row)
                for method in [m for m in args.methods if m in ART]:
                    for budget in budgets:
                        if todo(dataset, method, seed, budget):
                            inputs = inputs or load_inputs(dataset, args.targets)
                            steps = reference_steps(done, dataset, seed, budget)
                            record(run_art(dataset, method, seed, budget, inputs, steps))
    shown = [
        r
        for r in done.values()
        if r["budget"] in budgets
        and (args.report_only or (r["dataset"] in args.dataset and r["seed"] in args.seeds))
    ]
    print(table(shown, budgets))


if __name__ == "__main__":
    main()
