"""The end goal, measured end to end: adversarial examples against the black box for the fewest total queries.

MNIST or FashionMNIST (`--dataset`), the first N test images the `lenet` target
(runs/targets/<dataset>-lenet.pt) classifies correctly, a `cnn2` substitute stolen once with
entropy+kcenter and 5,000 queries (saved under runs/attack-budget/). `--substitute ensemble` crafts on
that substitute plus cnn2, cnn2-wide, mlp and resnet8 trained on the same 5,000 answers (no further
query) with TI-DI-MI-FGSM (20 steps) as the transfer attack; `single` crafts on the substitute alone
with PGD. Five threats: untargeted L∞ ε = 0.2 on probabilities, least-likely targeted (per the
substitute) L∞ ε = 0.3 on probabilities, untargeted L∞ ε = 0.2 on a label-only target, and untargeted
L2 ε = 2.0 on probabilities and on labels. Methods: pure transfer (one query), the hybrid attack
(transfer, then substitute-guided queries), the hybrid's search without the substitute (Square from
its stripes: the prior's ablation, L∞ only), and ART 1.20's SquareAttack, SimBA and HopSkipJump run
directly on the target through the oracle (on the first `--art-n` of the images). Every target query
goes through the oracle and is counted per image; each image stops at its first success. Prints
success rate against mean queries per image (a curve over the per-image budget Q), the queries ART's
attacks need for the hybrid's success, and the total for 1,000 adversarial examples including the
5,000 stealing queries. Rows are appended to benchmarks/results/attack_budget.jsonl.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/attack_budget.py --n 1000 --art-n 100
    flock /tmp/heavy.lock .venv/bin/python benchmarks/attack_budget.py --substitute ensemble
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
from activethief.attacks.ensemble import ensemble_from_run
from activethief.attacks.hybrid import HybridAttack
from activethief.attacks.query import QueryAttackResult
from activethief.target import cached_target

STEAL_QUERIES = 5000
RUNS = Path("runs/attack-budget")
ENSEMBLE_ARCHS = ("cnn2", "cnn2-wide", "mlp", "resnet8")  # the transfer benchmark's best ensemble
TRANSFER = {"single": ("pgd", None), "ensemble": ("ti-di-mi-fgsm", 20)}  # attack, steps
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
    "untargeted L2 eps=2.0": {
        "eps": 2.0,
        "norm": "2",
        "target_class": None,
        "mode": "probs",
        "q": 100,
        "art": ["square", "simba"],
    },
    "label-only L2 eps=2.0": {
        "eps": 2.0,
        "norm": "2",
        "target_class": None,
        "mode": "label",
        "q": 200,
        "art": ["hopskipjump"],
    },
}
CURVE = (1, 2, 3, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def substitute_model(dataset: str, kind: str, targets: Path) -> Any:
    """The 5,000-query entropy+kcenter cnn2 substitute, stolen once (about 2 minutes) and reused; or the
    ensemble built on its answers (trained once, cached in the run folder)."""
    run = RUNS / f"{dataset}-cnn2-entropy+kcenter-{STEAL_QUERIES}"
    pool, _ = data.load(dataset, "train")
    if not (run / "substitute.pt").exists():
        config = StealConfig.preset(
            "default", budget=STEAL_QUERIES, strategy="entropy+kcenter", substitute="cnn2", seed=0
        )
        oracle = ModelOracle(cached_target(dataset, "lenet", targets))
        steal(oracle, pool, config, test=data.load(dataset, "test"), out=run, quiet=True)
    if kind == "ensemble":
        return ensemble_from_run(run, archs=ENSEMBLE_ARCHS, pool=pool)
    model, _ = models.load(run / "substitute.pt")
    return model


def correct_images(dataset: str, oracle: ModelOracle, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The first n test images the target classifies correctly (asked for free: we own this target)."""
    x, y = data.load(dataset, "test")
    predicted = oracle.evaluate(x)
    assert predicted is not None
    keep = np.flatnonzero(predicted == y)[:n]
    return x[keep], y[keep]


def row(
    where: tuple[str, str], setting: str, method: str, result: QueryAttackResult, q: int
) -> dict[str, Any]:
    d = result.to_dict()
    return {
        "dataset": where[0],
        "substitute": where[1],
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
    where: tuple[str, str],
    setting: str,
    methods: list[str],
    n: int,
    art_n: int,
    art_q: int,
    targets: Path,
    results: Path,
) -> list[dict[str, Any]]:
    """Every method on one setting of (dataset, substitute kind); each row is appended to `results` as
    soon as it is measured."""
    dataset, kind = where
    spec = SETTINGS[setting]
    norm = spec.get("norm", "inf")
    transfer, transfer_steps = TRANSFER[kind]
    target_path = cached_target(dataset, "lenet", targets)
    substitute = substitute_model(dataset, kind, targets)
    x, y = correct_images(dataset, ModelOracle(target_path), n)
    rows = []
    hybrids = {
        "transfer": {"continuation": "none"},
        "hybrid": {},
        "no prior (square from stripes)": {"use_transfer": False, "continuation": "square"},
    }
    for method in methods:
        oracle = ModelOracle(target_path, mode=spec["mode"])
        if method.startswith("no prior") and (spec["mode"] == "label" or norm != "inf"):
            continue  # Square climbs a score (one-hot answers give it none) in L∞ windows
        if method.startswith("art-") and kind != "single":
            continue  # no substitute: the same numbers as in the single-substitute rows
        if method in hybrids:
            attack = HybridAttack(
                eps=spec["eps"],
                target_class=spec["target_class"],
                max_queries_per_image=spec["q"],
                transfer=transfer,
                transfer_steps=transfer_steps,
                norm=norm,
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
                norm=norm,
            )
            q = art_q
        assert oracle.used == result.total_queries, (oracle.used, result.total_queries)
        rows.append(row(where, setting, method, result, q))
        with results.open("a") as f:
            f.write(json.dumps(rows[-1]) + "\n")
        print(
            f"  {dataset} {kind} {setting} {method}: {100 * result.success_rate:.1f}% with "
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


def label(r: dict[str, Any]) -> str:
    """A row's method, naming the ensemble when it crafted on one."""
    return r["method"] + (" (ensemble)" if r.get("substitute", "single") == "ensemble" else "")


def report(rows: list[dict[str, Any]]) -> str:
    lines = []
    for dataset in sorted({r.get("dataset", "mnist") for r in rows}):
        for setting in SETTINGS:
            mine = [r for r in rows if r["setting"] == setting and r.get("dataset", "mnist") == dataset]
            if mine:
                lines += setting_report(f"{dataset}, {setting}", mine)
    return "\n".join(lines)


def setting_report(title: str, mine: list[dict[str, Any]]) -> list[str]:
    lines = [
        f"\n### {title}",
        "| method | images | Q | success | mean queries/image | median (fooled) | total for 1,000 AEs |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in mine:
        total = total_for(r)
        lines.append(
            f"| {label(r)} | {r['n']} | {r['max_queries_per_image']} | "
            f"{100 * r['success_rate']:.1f}% | {r['mean_queries']:.2f} | "
            f"{r['median_queries_successful']} | {'-' if total is None else f'{total:,.0f}'} |"
        )
    lines.append("\ncurve (success % @ mean queries/image) by per-image budget Q:")
    for r in mine:
        points = ", ".join(
            f"Q={c['queries_per_image']}: {100 * c['success_rate']:.1f}% @ {c['mean_queries']:.1f}"
            for c in r["curve"]
        )
        lines.append(f"- {label(r)}: {points}")
    arts = [r for r in mine if r["method"].startswith("art-")]
    for hybrid in (r for r in mine if r["method"] == "hybrid"):
        if not arts:
            break
        for rate in sorted({0.9, 0.95, hybrid["success_rate"]}):
            hq, hmean = reach(hybrid, rate)
            parts = []
            for a in arts:
                aq, amean = reach(a, rate)
                ratio = f"{amean / hmean:.1f}x" if aq is not None and hq is not None else "n/a"
                parts.append(
                    f"{a['method']} {'needs' if aq else 'never reaches it; spent'} {amean:.1f}/image"
                    + (f" ({ratio} the hybrid's)" if aq else "")
                )
            lines.append(
                f"- at {100 * rate:.1f}% success: {label(hybrid)} "
                + (f"{hmean:.2f}/image (Q={hq})" if hq is not None else "never")
                + "; "
                + "; ".join(parts)
            )
    return lines


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
    parser.add_argument("--dataset", default="mnist", choices=["mnist", "fashion-mnist"])
    parser.add_argument("--substitute", default="single", choices=list(TRANSFER))
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
                (args.dataset, args.substitute),
                setting,
                args.methods,
                args.n,
                args.art_n,
                args.art_queries,
                args.targets,
                args.results,
            )
        print(f"measured in {time.perf_counter() - started:.0f} s")
    rows = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    latest: dict[tuple[str, ...], dict[str, Any]] = {}
    for r in rows:
        latest[(r.get("dataset", "mnist"), r.get("substitute", "single"), r["setting"], r["method"])] = r
    print(report(list(latest.values())))


if __name__ == "__main__":
    main()
