"""`activethief attack --method hybrid|art-square|art-simba|art-hopskipjump`: a query attack, each image's
target queries counted and listed in result.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from activethief.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from activethief.attacks.query import QueryAttackResult
    from activethief.oracle import Oracle

QUERY_METHODS = ("hybrid", "art-square", "art-simba", "art-hopskipjump")
CURVE = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)


@dataclass(frozen=True)
class QueryOptions:
    """The command-line settings of a query attack."""

    method: str
    eps: float
    targeted: str | None
    max_queries_per_image: int
    total_queries: int | None
    continuation: str
    transfer: str
    transfer_steps: int | None
    only_correct: bool
    norm: str = "inf"


def select_images(
    oracle: Oracle, images: np.ndarray, labels: np.ndarray, n: int, only_correct: bool
) -> tuple[np.ndarray, np.ndarray]:
    """The first `n` images, or the first `n` the target classifies correctly (asked for free: owned only)."""
    if not only_correct:
        return images[:n], labels[:n]
    chosen: list[np.ndarray] = []
    found = 0
    for start in range(0, len(images), 1024):
        predicted = oracle.evaluate(images[start : start + 1024])
        if predicted is None:
            raise ConfigError(
                "--only-correct asks the target for free, which only a model file you own allows; "
                "use --all-images for this target"
            )
        rows = start + np.flatnonzero(predicted == labels[start : start + 1024])
        chosen.append(rows[: n - found])
        found += len(chosen[-1])
        if found >= n:
            break
    keep = np.concatenate(chosen)
    return images[keep], labels[keep]


def run_query_attack(
    options: QueryOptions,
    substitute: nn.Module | None,
    substitute_name: str | None,
    oracle: Oracle,
    target: str,
    dataset: str,
    n: int,
    seed: int,
    out: Path,
    data_dir: Path | None,
) -> list[str]:
    """Run the query attack, write `out/result.json`, return the summary lines to print."""
    from activethief import data

    if n < 1:
        raise ConfigError(f"--n must be >= 1; got {n}")
    spec = data.get_spec(dataset)
    images, labels = data.load(spec.name, "test", root=data_dir)
    x, y = select_images(oracle, images, labels, n, options.only_correct)
    result = _run(options, substitute, oracle, x, y, seed)
    record: dict[str, Any] = {
        "substitute": substitute_name,
        "target": target,
        "dataset": spec.name,
        "output_mode": str(oracle.mode),
        "oracle_used": oracle.used,
        "curve": result.curve(CURVE),
        **result.to_dict(),
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    return [
        f"{options.method} eps={options.eps:g}{'' if options.norm == 'inf' else ' (L2)'}"
        f"{' targeted=' + options.targeted if options.targeted else ''} on "
        f"{result.n} images ({record['output_mode']} answers): success {100 * result.success_rate:.1f}%, "
        f"{record['mean_queries']:.2f} target queries per image on average, {result.total_queries} in all",
        f"wrote {out / 'result.json'}",
    ]


def _run(
    options: QueryOptions,
    substitute: nn.Module | None,
    oracle: Oracle,
    x: np.ndarray,
    y: np.ndarray,
    seed: int,
) -> QueryAttackResult:
    from activethief.attacks.registry import parse_target_class

    target_class = parse_target_class(options.targeted)
    if options.method == "hybrid":
        from activethief.attacks.hybrid import HybridAttack

        if substitute is None:
            raise ConfigError(
                "--method hybrid crafts on a substitute: pass --substitute MODEL.pt or --ensemble-from RUN"
            )
        attack = HybridAttack(
            eps=options.eps,
            target_class=target_class,
            max_queries_per_image=options.max_queries_per_image,
            total_queries=options.total_queries,
            continuation=options.continuation,
            transfer=options.transfer,
            transfer_steps=options.transfer_steps,
            norm=options.norm,
        )
        return attack.run(substitute, oracle, x, y, seed=seed)
    from activethief.attacks.art_baselines import run_art_baseline

    goal = _art_goal(target_class, substitute, x, y)
    return run_art_baseline(
        options.method.removeprefix("art-"),
        oracle,
        x,
        y,
        eps=options.eps,
        max_queries_per_image=options.max_queries_per_image,
        goal=goal,
        total_queries=options.total_queries,
        seed=seed,
        norm=options.norm,
    )


def _art_goal(
    target_class: int | str | None, substitute: nn.Module | None, x: np.ndarray, y: np.ndarray
) -> np.ndarray | None:
    """Goal classes of a targeted ART baseline: a fixed class, or the substitute's least-likely class."""
    if target_class is None:
        return None
    if isinstance(target_class, int):
        return np.full(len(y), target_class, np.int64)
    if substitute is None:
        raise ConfigError(
            "a least-likely targeted ART baseline takes its goal classes from the substitute (no query): "
            "pass --substitute MODEL.pt, or a class index to --targeted"
        )
    import torch

    from activethief.attacks.base import predict_classes

    return predict_classes(substitute, torch.from_numpy(np.ascontiguousarray(x)), 256, least=True)
