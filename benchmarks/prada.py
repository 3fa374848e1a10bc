"""Would PRADA (Juuti et al., IEEE EuroS&P 2019) notice ActiveThief? Queries until flagged, and honest FPR.

Three parts, each appending rows to benchmarks/results/prada.jsonl (rerunning skips finished rows):

- `steal`: steals of the MNIST lenet target (runs/targets/mnist-lenet.pt) with each strategy, from the
  in-domain pool (MNIST train) and an out-of-domain one (FashionMNIST train), each a seeded subset of
  `--pool-size` images (train[sort(default_rng(seed).permutation(N)[:pool_size])]), to `--budget`
  queries in rounds of `--batch-size`. A PradaBackend watches each steal live at the default delta;
  the row keeps the query stream (indices into that subset, in the order they were sent, from the
  run's ledger) so that any delta can be replayed offline, and the replayed queries-until-flagged.
- `honest`: `--clients` honest clients per dataset, each sending `--queries` test images in its own
  seeded random order to that dataset's lenet target; the false-positive rate per delta.
- `jbda`: a positive control, a JbDA-like stream (10 MNIST seeds, each later query a +-0.1 signed
  perturbation of an earlier one), as the paper's synthetic attacks send.

`table` prints everything as one table. One seed; each part well under 10 minutes on 2 cores.

    .venv/bin/python benchmarks/prada.py steal --pools mnist fashion-mnist
    .venv/bin/python benchmarks/prada.py honest jbda table
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np

from activethief import ModelOracle, data, steal
from activethief.oracle.prada import DEFAULT_DELTA, PradaBackend, PradaDetector, replay
from activethief.target import cached_target
from activethief.training import FitConfig

RESULTS = Path(__file__).parent / "results" / "prada.jsonl"
STRATEGIES = ("random", "entropy", "kcenter", "entropy+kcenter")
# Training per round cut to what keeps the selection sensible (the stream is what PRADA sees, not the
# substitute's last point of accuracy): 400 steps a round, no validation split.
FIT = FitConfig(epochs=1, val_fraction=0.0, min_steps=400, max_steps=400, augment=1)


def target_labels(oracle: ModelOracle, images: np.ndarray) -> np.ndarray:
    """The target's predicted classes, what PRADA groups queries by (free: the model is ours)."""
    labels = oracle.evaluate(images)
    assert labels is not None, "a model file is owned: evaluation is free"
    return labels


def ledger_stream(ledger: Path) -> np.ndarray:
    """Pool indices in the order the run sent them: its requests, in insertion order."""
    db = sqlite3.connect(ledger)
    try:
        rows = db.execute("SELECT pool_indices FROM requests WHERE status = 'done' ORDER BY rowid").fetchall()
    finally:
        db.close()
    return np.array([i for (text,) in rows for i in json.loads(text)], dtype=np.int64)


def run_steal(pool_name: str, strategy: str, args: argparse.Namespace) -> dict[str, Any]:
    target = cached_target("mnist", "lenet", args.targets)
    oracle = ModelOracle(target)
    live = PradaDetector(DEFAULT_DELTA)
    oracle.backend = PradaBackend(oracle.backend, live)
    pool, _ = data.load(pool_name, "train")
    if args.pool_size < len(pool):  # a seeded subset keeps selection cheap; order is what PRADA sees
        pool = pool[np.sort(np.random.default_rng(args.seed).permutation(len(pool))[: args.pool_size])]
    out = args.runs / f"{pool_name}-{strategy}-{args.budget}"
    shutil.rmtree(out, ignore_errors=True)
    started = time.perf_counter()
    result = steal(
        oracle,
        pool,
        budget=args.budget,
        batch_size=args.batch_size,
        strategy=strategy,
        seed=args.seed,
        fit=FIT,
        test=data.load("mnist", "test"),
        quiet=True,
        out=out,
    )
    seconds = time.perf_counter() - started
    stream = ledger_stream(out / "ledger.sqlite")
    flagged = replay(pool[stream], target_labels(oracle, pool[stream]), args.deltas)
    if len(stream) != live.queries or flagged.get(DEFAULT_DELTA, live.flagged_at) != live.flagged_at:
        print(
            f"warning: live PRADA saw {live.queries} queries, flagged at {live.flagged_at}; the ledger's "
            f"stream has {len(stream)}, replay flags at {flagged.get(DEFAULT_DELTA)}"
        )
    return {
        "kind": "steal",
        "target": "mnist-lenet",
        "pool": pool_name,
        "strategy": strategy,
        "budget": args.budget,
        "batch_size": args.batch_size,
        "pool_size": len(pool),
        "seed": args.seed,
        "seconds": round(seconds, 1),
        "agreement": result.history[-1].agreement,
        "live_delta": DEFAULT_DELTA,
        "live_flagged_at": live.flagged_at,
        "final_w": live.statistic,
        "flagged_at": {str(d): q for d, q in flagged.items()},
        "stream": stream.tolist(),
    }


def run_honest(dataset: str, args: argparse.Namespace) -> dict[str, Any]:
    oracle = ModelOracle(cached_target(dataset, "lenet", args.targets))
    images, _ = data.load(dataset, "test")
    labels = target_labels(oracle, images)
    started = time.perf_counter()
    per_client: dict[float, list[int | None]] = {d: [] for d in args.deltas}
    for client in range(args.clients):
        order = np.random.default_rng(client).permutation(len(images))[: args.queries]
        for delta, at in replay(images[order], labels[order], args.deltas).items():
            per_client[delta].append(at)
    return {
        "kind": "honest",
        "dataset": dataset,
        "target": f"{dataset}-lenet",
        "clients": args.clients,
        "queries": args.queries,
        "seconds": round(time.perf_counter() - started, 1),
        "fpr": {str(d): float(np.mean([a is not None for a in v])) for d, v in per_client.items()},
        "flagged_at": {str(d): v for d, v in per_client.items()},
    }


def run_jbda(args: argparse.Namespace) -> dict[str, Any]:
    oracle = ModelOracle(cached_target("mnist", "lenet", args.targets))
    images, _ = data.load("mnist", "test")
    rng = np.random.default_rng(args.seed)
    stream = list(images[rng.choice(len(images), 10, replace=False)])
    while len(stream) < args.queries:
        parent = stream[int(rng.integers(len(stream)))]
        stream.append(np.clip(parent + 0.1 * np.sign(rng.standard_normal(parent.shape)), 0, 1))
    x = np.stack(stream).astype(np.float32)
    flagged = replay(x, target_labels(oracle, x), args.deltas)
    return {
        "kind": "jbda-like",
        "target": "mnist-lenet",
        "queries": args.queries,
        "seed": args.seed,
        "flagged_at": {str(d): q for d, q in flagged.items()},
    }


def rows() -> list[dict[str, Any]]:
    if not RESULTS.exists():
        return []
    return [json.loads(line) for line in RESULTS.read_text().splitlines() if line.strip()]


def append(row: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    with RESULTS.open("a") as f:
        f.write(json.dumps(row) + "\n")


def done(**match: Any) -> bool:
    return any(all(r.get(k) == v for k, v in match.items()) for r in rows())


def print_table(deltas: list[float]) -> None:
    head = " | ".join(f"d={d:g}" for d in deltas)
    print(f"{'client':<42} | {head}")
    for r in rows():
        if r["kind"] == "steal":
            name = f"steal {r['strategy']}, {r['pool']} pool (agr {r['agreement']:.3f})"
            cells = [r["flagged_at"].get(str(d), "?") for d in deltas]
            shown = [f"{c}" if c is not None else f"> {r['budget']}" for c in cells]
        elif r["kind"] == "honest":
            name = f"honest {r['dataset']}: {r['clients']} x {r['queries']} (FPR)"
            shown = [f"{100 * r['fpr'][str(d)]:.0f}%" if str(d) in r["fpr"] else "?" for d in deltas]
        else:
            name = f"JbDA-like, 10 MNIST seeds, {r['queries']} queries"
            cells = [r["flagged_at"].get(str(d), "?") for d in deltas]
            shown = [f"{c}" if c is not None else f"> {r['queries']}" for c in cells]
        print(
            f"{name:<42} | "
            + " | ".join(f"{s:>{len(f'd={d:g}')}}" for s, d in zip(shown, deltas, strict=True))
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("parts", nargs="+", choices=["steal", "honest", "jbda", "table"])
    parser.add_argument("--pools", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--strategies", nargs="+", default=list(STRATEGIES))
    parser.add_argument("--datasets", nargs="+", default=["mnist", "fashion-mnist"])
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--batch-size", type=int, default=1000)
    parser.add_argument("--pool-size", type=int, default=20000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--deltas", type=float, nargs="+", default=[0.8, 0.85, 0.9, 0.95])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--runs", type=Path, default=Path("runs/prada"))
    args = parser.parse_args()
    for part in args.parts:
        if part == "steal":
            for pool in args.pools:
                for strategy in args.strategies:
                    if not done(kind="steal", pool=pool, strategy=strategy, budget=args.budget):
                        row = run_steal(pool, strategy, args)
                        append(row)
                        print(f"{pool} {strategy}: flagged at {row['flagged_at']} ({row['seconds']} s)")
        elif part == "honest":
            for dataset in args.datasets:
                if not done(kind="honest", dataset=dataset, clients=args.clients, queries=args.queries):
                    row = run_honest(dataset, args)
                    append(row)
                    print(f"honest {dataset}: FPR {row['fpr']} ({row['seconds']} s)")
        elif part == "jbda":
            if not done(kind="jbda-like", queries=args.queries):
                row = run_jbda(args)
                append(row)
                print(f"JbDA-like: flagged at {row['flagged_at']}")
        else:
            print_table(args.deltas)


if __name__ == "__main__":
    main()
