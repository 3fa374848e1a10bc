"""The end goal, measured end to end: adversarial examples against the black box for the fewest total queries.

MNIST, the first N test images the `lenet` target (runs/targets/mnist-lenet.pt) classifies correctly, a
`cnn2` substitute stolen once with entropy+kcenter and 5,000 queries (saved under runs/attack-budget/).
Three threats: untargeted L∞ ε = 0.2 on probabilities, least-likely targeted (per the substitute) L∞
ε = 0.3 on probabilities, untargeted L∞ ε = 0.2 on a label-only target. Methods: pure transfer (PGD,
one query), the hybrid attack (transfer, then substitute-guided queries), the hybrid's search without
the substitute (Square from its stripes: the prior's ablation), and ART 1.20's SquareAttack, SimBA and
HopSkipJump run directly on the target through the oracle (on the first `--art-n` of the images: they
cost thousands of queries per image). Every target query goes through the oracle and is counted per
image; each image stops at its first success. Prints success rate against mean queries per image (a
curve over the per-image budget Q), the queries ART's best attack needs for the hybrid's success, and
the total for 1,000 adversarial examples including the 5,000 stealing queries. Rows are appended to
benchmarks/results/attack_budget.jsonl.

    .venv/bin/python benchmarks/attack_budget.py --n 1000 --art-n 100
    .venv/bin/python benchmarks/attack_budget.py --report-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from activethief import ModelOracle, StealConfig, data, models, steal
from activethief.attacks.art_baselines import run_art_baseline
from activethief.attacks.hybrid import HybridAttack
from activethief.attacks.query import QueryAttackResult
from activethief.target import cached_target

STEAL_QUERIES = 5000
SUBSTITUTE = Path(f"runs/attack-budget/mnist-cnn2-entropy+kcenter-{STEAL_QUERIES}")
SETTINGS: dict[str, dict[str, Any]] = {
    "untargeted eps=0.2": {
        "eps": 0.2,
        "target_class": None,
        "mode": "probs",
        "q": 100,
        "art": ["square", "simba"],
    },
    "least-likely eps=0.3": {
        "eps": 0.3,
        "target_class": "least-likely",
        "mode": "probs",
        "q": 300,
        "art": ["square", "simba"],
    },
    "label-only eps=0.2": {
        "eps": 0.2,
        "target_class": None,
        "mode": "label",
        "q": 200,
        "art": ["hopskipjump"],
    },
}
CURVE = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def substitute_model(targets: Path) -> Any:
    """The 5,000-query entropy+kcenter cnn2 substitute, stolen once (about 2 minutes) and reused."""
    path = SUBSTITUTE / "substitute.pt"
    if not path.exists():
        config = StealConfig.preset(
            "default", budget=STEAL_QUERIES, strategy="entropy+kcenter", substitute="cnn2", seed=0
        )
        pool, _ = data.load("mnist", "train")
        oracle = ModelOracle(cached_target("mnist", "lenet", targets))
        steal(oracle, pool, config, test=data.load("mnist", "test"), out=SUBSTITUTE, quiet=True)
    model, _ = models.load(path)
    return model


def correct_images(oracle: ModelOracle, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n test images the target classifies correctly (asked for free: we own this target)."""
    x, y = data.load("mnist", "test")
    predicted = oracle.evaluate(x)
    assert predicted is not None
    keep = np.flatnonzero(predicted == y)[:n]
    return x[keep], y[keep]


def row(setting: str, method: str, result: QueryAttackResult, q: int) -> dict[str, Any]:
    d = result.to_dict()
    return {
        "setting": setting,
        "method": method,
        "n": result.n,
        "max_queries_per_image": q,
        "success_rate": result.success_rate,
        "mean_queries": d["mean_queries"],
        "median_queries_successful": d["median_queries_successful"],
        "transfer_success_rate": d.get("transfer_success_rate"),
        "seconds": result.seconds,
        "curve": result.curve(CURVE),
        "queries": result.queries.tolist(),
        "success": result.success.astype(int).tolist(),
    }


def run_setting(
    setting: str, methods: list[str], n: int, art_n: int, art_q: int, targets: Path, results: Path
) -> list[dict[str, Any]]:
    """Every method on one setting; each row is appended to `results` as soon as it is measured."""
    spec = SETTINGS[setting]
    target_path = cached_target("mnist", "lenet", targets)
    substitute = substitute_model(targets)
    x, y = correct_images(ModelOracle(target_path), n)
    rows = []
    hybrids = {
        "transfer": {"continuation": "none"},
        "hybrid": {},
        "no prior (square from stripes)": {"use_transfer": False, "continuation": "square"},
    }
    for method in methods:
        oracle = ModelOracle(target_path, mode=spec["mode"])
        if method.startswith("no prior") and spec["mode"] == "label":
            continue  # Square climbs a score; one-hot answers give it none
        if method in hybrids:
            attack = HybridAttack(
                eps=spec["eps"],
                target_class=spec["target_class"],
                max_queries_per_image=spec["q"],
                **hybrids[method],
            )
            result = attack.run(substitute, oracle, x, y, seed=0)
            q = spec["q"] if method != "transfer" else 1
        else:
            name = method.removeprefix("art-")
            if name not in spec["art"]:
                continue
            goal = None
            if spec["target_class"] is not None:
                goal = (
                    HybridAttack(eps=spec["eps"], target_class=spec["target_class"])
                    .transfer_attack()
                    .goal_classes(substitute, x[:art_n], y[:art_n])
                )
            result = run_art_baseline(
                name,
                oracle,
                x[:art_n],
                y[:art_n],
                eps=spec["eps"],
                max_queries_per_image=art_q,
                goal=goal,
                seed=0,
            )
            q = art_q
        assert oracle.used == result.total_queries, (oracle.used, result.total_queries)
        rows.append(row(setting, method, result, q))
        with results.open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        print(
            f"  {setting} {method}: {100 * result.success_rate:.1f}% with "
            f"{rows[-1]['mean_queries']:.2f} queries per image ({result.seconds:.0f} s)",
            flush=True,
        )
    return rows


def reach(r: dict[str, Any], rate: float) -> tuple[int | None, float]:
    """The smallest per-image budget Q at which `r` reaches success `rate`, and its mean queries per image
    then (None and the mean at its largest budget when it never does)."""
    q, s = np.asarray(r["queries"]), np.asarray(r["success"]).astype(bool)
    for budget in sorted(set(q[s].tolist())):
        if (s & (q <= budget)).mean() >= rate - 1e-12:
            return budget, float(np.minimum(q, budget).mean())
    return None, float(q.mean())


def total_for(r: dict[str, Any], examples: int = 1000) -> float | None:
    """Target queries for `examples` adversarial examples at this method's rate, the stealing included."""
    if not r["success_rate"]:
        return None
    steal_cost = 0 if r["method"].startswith("art-") or r["method"].startswith("no prior") else STEAL_QUERIES
    return steal_cost + examples * r["mean_queries"] / r["success_rate"]


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    for setting in SETTINGS:
        mine = [r for r in rows if r["setting"] == setting]
        if not mine:
            continue
        lines += [
            f"\n### {setting}",
            "| method | images | Q | success | mean queries/image | median (fooled) | total for 1,000 AEs |",
            "|---|---|---|---|---|---|---|",
        ]
        for r in mine:
            total = total_for(r)
            lines.append(
                f"| {r['method']} | {r['n']} | {r['max_queries_per_image']} | "
                f"{100 * r['success_rate']:.1f}% | {r['mean_queries']:.2f} | "
                f"{r['median_queries_successful']} | {'-' if total is None else f'{total:,.0f}'} |"
            )
        lines.append("\ncurve (success % @ mean queries/image) by per-image budget Q:")
        for r in mine:
            points = ", ".join(
                f"Q={c['queries_per_image']}: {100 * c['success_rate']:.1f}% @ {c['mean_queries']:.1f}"
                for c in r["curve"]
            )
            lines.append(f"- {r['method']}: {points}")
        hybrid = next((r for r in mine if r["method"] == "hybrid"), None)
        arts = [r for r in mine if r["method"].startswith("art-")]
        if hybrid and arts:
            for rate in sorted({0.9, 0.95, hybrid["success_rate"]}):
                hq, hmean = reach(hybrid, rate)
                parts = []
                for a in arts:
                    aq, amean = reach(a, rate)
                    ratio = f"{amean / hmean:.0f}x" if aq is not None and hq is not None else "n/a"
                    parts.append(
                        f"{a['method']} {'needs' if aq else 'never reaches it; spent'} {amean:.0f}/image"
                        + (f" ({ratio} the hybrid's)" if aq else "")
                    )
                lines.append(
                    f"- at {100 * rate:.1f}% success: hybrid "
                    + (f"{hmean:.2f}/image (Q={hq})" if hq is not None else "never")
                    + "; "
                    + "; ".join(parts)
                )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    methods = [
        "transfer",
        "hybrid",
        "no prior (square from stripes)",
        "art-square",
        "art-simba",
        "art-hopskipjump",
    ]
    parser.add_argument("--methods", nargs="+", default=methods, choices=methods)
    parser.add_argument("--n", type=int, default=1000)
    parser.add_argument("--art-n", type=int, default=100)
    parser.add_argument("--art-queries", type=int, default=2000, help="ART's per-image budget")
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/attack_budget.jsonl"))
    parser.add_argument("--report-only", action="store_true")
    args = parser.parse_args()
    args.results.parent.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        started = time.perf_counter()
        for setting in args.settings:
            run_setting(
                setting, args.methods, args.n, args.art_n, args.art_queries, args.targets, args.results
            )
        print(f"measured in {time.perf_counter() - started:.0f} s")
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    latest: dict[tuple[str, str], dict[str, Any]] = {}
    for r in rows:
        latest[(r["setting"], r["method"])] = r
    print(report(list(latest.values())))


if __name__ == "__main__":
    main()
