"""The hybrid attack: transfer first, then a few counted target queries with the substitute as prior.

Per image, query 0 is the transfer example crafted on the substitute (PGD or MI-FGSM, `attacks.base`).
An image the target is not fooled by continues with a query attack that uses the substitute for free
(chosen by measurement, `resolve_continuation`):
- targeted L∞, score answers (probs, topk:K > 1, round:D): Square Attack's random search started from
  the transfer example, small windows, accepted on the target's margin loss (`square.SquareSearch`; it
  can also let the substitute rank several window proposals, or set the window by its gradient signs);
- untargeted, L2, and any label-only answers (label, topk:1): substitute-guided restarts, a fresh
  ODS-diversified PGD example crafted on the substitute per query (`guided.GuidedSearch`).
Both norms work, L∞ and L2 (`norm`); Square's window search is L∞ only.
Each image stops at its first success, within a per-image and a total budget; every query goes through
the oracle (unkeyed, counted, in the ledger). The substitute may be any `nn.Module` giving logits, an
ensemble among them. Suya et al. (USENIX Security 2020) call transfer-then-optimise a hybrid attack;
this one spends its optimisation queries only where transfer failed.

Targeted attacks pick the goal class without a query: a class index, or the least-likely class *per the
substitute* on the clean image (the target's least-likely class would cost one query per image).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from activethief.attacks.base import Attack, check_inputs
from activethief.attacks.guided import GuidedSearch
from activethief.attacks.norms import ball, recorded
from activethief.attacks.query import QueryAttackResult, QueryBudget, Search, TargetQueries, Timer, run_search
from activethief.attacks.registry import make_attack
from activethief.attacks.square import SquareSearch
from activethief.errors import ConfigError
from activethief.oracle.base import Oracle

CONTINUATIONS = ("auto", "square", "guided", "none")


@dataclass(frozen=True, kw_only=True)
class HybridAttack:
    """Transfer, then substitute-guided queries; L∞ or L2.

    Args:
        eps: the ball's radius in [0, 1] pixel units (L∞: per pixel; L2: the perturbation's length).
        target_class: None (untargeted), a class index, or "least-likely" (per the substitute).
        max_queries_per_image: the per-image budget Q (the transfer query included).
        total_queries: the most queries over all images (None: no total limit besides the oracle's).
        transfer: the attack crafting query 0 on the substitute: "pgd", "mi-fgsm" or "fgsm".
        transfer_steps: its iterations (None: the attack's default).
        continuation: "square" (scores, L∞), "guided" (labels suffice), "none" (pure transfer), or
            "auto": square for a targeted L∞ attack on score answers, else guided.
        use_transfer: start from the transfer example (False: Square from its stripes, the ablation
            without the transfer start).
        proposals: Square windows the substitute ranks per query (1, the default: no ranking; ranking
            16 lowered success on MNIST, see the benchmark).
        p_init: Square's initial window share (0.1: better than 0.3 and 0.8 for targeted MNIST).
        guided_steps: PGD steps per guided restart.
        query_batch_size: images per oracle request.
        norm: "inf" (L∞) or "2" (L2), for the transfer attack and the continuation alike.

    Example:
        >>> result = HybridAttack(eps=0.2, max_queries_per_image=20).run(substitute, oracle, x, y)
        >>> result = HybridAttack(eps=2.0, norm="2").run(substitute, oracle, x, y)
    """

    name: ClassVar[str] = "hybrid"

    eps: float = 0.2
    target_class: int | str | None = None
    max_queries_per_image: int = 20
    total_queries: int | None = None
    transfer: str = "pgd"
    transfer_steps: int | None = None
    continuation: str = "auto"
    use_transfer: bool = True
    proposals: int = 1
    p_init: float = 0.1
    gradient_signs: bool = False
    guided_steps: int = 10
    query_batch_size: int = 256
    norm: str = "inf"

    def __post_init__(self) -> None:
        if self.continuation not in CONTINUATIONS:
            raise ConfigError(
                f"continuation must be one of {', '.join(CONTINUATIONS)}; got {self.continuation!r}"
            )
        object.__setattr__(self, "norm", ball(self.norm).name)
        if self.continuation == "square" and self.norm != "inf":
            raise ConfigError(
                "the square continuation searches L∞ windows only; an L2 attack continues with the guided "
                "(or auto) continuation"
            )
        QueryBudget(self.max_queries_per_image, self.total_queries)
        self.transfer_attack()  # validates eps, target_class and the transfer settings
        if self.proposals < 1 or self.guided_steps < 1:
            raise ConfigError(
                f"proposals and guided_steps must be >= 1; got {self.proposals}, {self.guided_steps}"
            )

    @property
    def targeted(self) -> bool:
        return self.target_class is not None

    def transfer_attack(self) -> Attack:
        """The attack that crafts each image's first query on the substitute."""
        return make_attack(
            self.transfer,
            eps=self.eps,
            target_class=self.target_class,
            steps=self.transfer_steps,
            norm=self.norm,
        )

    def config(self) -> dict[str, Any]:
        """Name and settings; the norm only when it is L2 (as `Attack.config`)."""
        return recorded({"method": self.name, **asdict(self)})

    def resolve_continuation(self, oracle: Oracle) -> str:
        """The continuation used against `oracle`; "auto" chose by measurement (benchmarks/attack_budget.py):
        square for a targeted L∞ attack on score answers, guided restarts otherwise (label-only answers,
        L2, and untargeted ones, where a fresh substitute example per query beat Square's refinement)."""
        if self.continuation != "auto":
            return self.continuation
        return "square" if self.targeted and self.norm == "inf" and not oracle.mode.hard else "guided"

    def run(
        self, substitute: nn.Module, oracle: Oracle, images: np.ndarray, labels: np.ndarray, *, seed: int = 0
    ) -> QueryAttackResult:
        """Attack each image until the target is fooled or its budget is spent.

        Args:
            substitute: the prior (logits out); any `nn.Module`, an ensemble too.
            oracle: the target's black box; only its answers cost queries.
            images: float32 [n, C, H, W] in [0, 1], of the target's input shape.
            labels: int [n] true classes (the untargeted goal is to leave them).
            seed: seeds the transfer attack's random start and the search.
        """
        timer = Timer()
        x_t, y = check_inputs(images, labels)
        x = x_t.numpy()
        if tuple(x.shape[1:]) != tuple(oracle.input_shape):
            raise ConfigError(
                f"images have shape {list(x.shape)} but the target takes (C, H, W) = "
                f"{tuple(oracle.input_shape)}; attack images of the target's shape"
            )
        attack = self.transfer_attack()
        goal = attack.goal_classes(substitute, x, y)
        start = attack(substitute, x, y, seed=seed) if self.use_transfer else None
        continuation = self.resolve_continuation(oracle)
        search = self._search(continuation, substitute, x, goal, start, seed)
        per_image = 1 if continuation == "none" else self.max_queries_per_image
        target = TargetQueries(
            oracle,
            len(x),
            QueryBudget(per_image, self.total_queries),
            batch_size=self.query_batch_size,
        )
        success, adversarial = run_search(
            search,
            target,
            goal,
            targeted=self.targeted,
            initial=x if start is None else start,
            send_initial=start is not None,
        )
        transfer_success = success & (target.queries == 1) if start is not None else np.zeros_like(success)
        return QueryAttackResult(
            attack={**self.config(), "continuation_used": continuation, "output_mode": str(oracle.mode)},
            goal=goal,
            targeted=self.targeted,
            success=success,
            queries=target.queries,
            max_queries_per_image=self.max_queries_per_image,
            seconds=timer.seconds(),
            adversarial=adversarial,
            extra={"transfer_success_rate": float(transfer_success.mean()) if len(x) else 0.0},
        )

    def _search(
        self,
        continuation: str,
        substitute: nn.Module,
        x: np.ndarray,
        goal: np.ndarray,
        start: np.ndarray | None,
        seed: int,
    ) -> Search:
        if continuation == "guided":
            return GuidedSearch(
                x,
                goal,
                targeted=self.targeted,
                eps=self.eps,
                substitute=substitute,
                generator=torch.Generator().manual_seed(seed + 1),
                steps=self.guided_steps,
                norm=self.norm,
            )
        if continuation == "square":
            return SquareSearch(
                x,
                goal,
                targeted=self.targeted,
                eps=self.eps,
                rng=np.random.default_rng(seed),
                start=start,
                substitute=substitute if self.proposals > 1 or self.gradient_signs else None,
                proposals=self.proposals,
                p_init=self.p_init,
                gradient_signs=self.gradient_signs,
            )
        return _NoSearch(len(x))


class _NoSearch:
    """Pure transfer: nothing after the first query (an image's budget is then effectively one)."""

    def __init__(self, n: int) -> None:
        self.n = n

    def propose(self, indices: np.ndarray) -> np.ndarray:
        raise AssertionError("pure transfer sends one query per image (its per-image budget is 1)")

    def observe(self, indices: np.ndarray, candidates: np.ndarray, answers: np.ndarray) -> None:
        pass
