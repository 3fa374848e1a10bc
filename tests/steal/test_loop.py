"""The ActiveThief loop on a small slice: history, outputs, stopping, accounting and resume after a crash."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest
import torch

from activethief import CallableOracle, models, steal
from activethief.errors import ActiveThiefError, ConfigError
from activethief.oracle import ModelOracle
from activethief.steal import RoundEvent, RoundRecord
from activethief.steal import loop as steal_loop  # `activethief.steal` is also the function
from activethief.training import FitConfig, FitResult, Outputs, fit, predict_outputs, predict_proba

FAST = FitConfig(epochs=3, patience=2, min_steps=60)
QUICK = FitConfig(epochs=1, patience=1, batch_size=100, warmup_steps=2)  # where accuracy does not matter


@pytest.fixture(scope="module")
def target(mnist_small: tuple[np.ndarray, ...]) -> torch.nn.Module:
    x, y = mnist_small[0], mnist_small[1]
    model = models.build("cnn2", seed=0)
    fit(model, x, y, config=FitConfig(epochs=3), seed=0)
    return model


class Crash(Exception):
    pass


class CountingFn:
    """Wraps a target; records which images were asked, and can crash after some calls."""

    def __init__(self, model: torch.nn.Module, crash_after: int | None = None) -> None:
        self.model, self.crash_after, self.calls, self.images = model, crash_after, 0, 0

    def __call__(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.crash_after is not None and self.calls > self.crash_after:
            raise Crash("simulated crash")
        self.images += len(x)
        return predict_proba(self.model, x)


def test_steal_writes_history_summary_and_substitute(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    oracle = CallableOracle(CountingFn(target), 10, free_evaluation=True)  # the user's own model
    result = steal(
        oracle,
        x[:1500],
        budget=450,
        batch_size=150,
        strategy="entropy+kcenter",
        seed=1,
        test=(xt, yt),
        out=tmp_path / "run",
        quiet=True,
        fit=FAST,
    )
    assert result.queries_used == 450 and result.stopped_by == "budget"
    assert [r.train_size for r in result.history] == [0, 150, 300, 450]
    assert [r.selected for r in result.history] == [150, 150, 150, 0]
    last = result.history[-1]
    assert last.accuracy is not None and last.accuracy > 0.6
    assert last.agreement is not None and last.agreement > 0.6
    rows = [json.loads(line) for line in (tmp_path / "run" / "history.jsonl").read_text().splitlines()]
    assert [r["round"] for r in rows] == [0, 1, 2, 3]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["queries_used"] == 450 and summary["stopped_by"] == "budget"
    substitute, meta = models.load(tmp_path / "run" / "substitute.pt")
    assert meta["queries"] == 450
    assert np.allclose(predict_proba(substitute, xt[:5]), predict_proba(result.substitute, xt[:5]), atol=1e-6)


def test_same_seed_same_run(target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]) -> None:
    x = mnist_small[0][:800]
    runs = [
        steal(
            CallableOracle(CountingFn(target), 10),
            x,
            budget=200,
            batch_size=100,
            strategy="entropy",
            seed=3,
            quiet=True,
            fit=FAST,
        )
        for _ in range(2)
    ]
    a, b = (run.substitute.state_dict() for run in runs)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert runs[0].history[-1].batch_entropy == runs[1].history[-1].batch_entropy


@pytest.mark.parametrize(
    ("stop", "queries", "stopped_at"), [("entropy:10", 300, 3), ("entropy:10:3", 500, 5)]
)
def test_entropy_stopping_rule(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...], stop: str, queries: int, stopped_at: int
) -> None:
    x = mnist_small[0][:1000]
    result = steal(
        CallableOracle(CountingFn(target), 10),
        x,
        budget=1000,
        batch_size=100,
        stop=stop,
        quiet=True,
        fit=FAST,
    )
    # alpha=10 nats is larger than any change, so the run stops as soon as patience + 1 batch entropies
    # (rounds 1..patience+1) exist.
    assert result.stopped_by == stop
    assert result.queries_used == queries and result.stopped_at_round == stopped_at


def test_pool_exhaustion(target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]) -> None:
    x = mnist_small[0][:250]
    result = steal(
        CallableOracle(CountingFn(target), 10), x, budget=10_000, batch_size=100, quiet=True, fit=FAST
    )
    assert result.queries_used == 250 and result.stopped_by == "pool"


def test_resume_after_crash_pays_nothing_twice(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:1000]
    kwargs = dict(budget=500, batch_size=100, strategy="entropy+uniform", seed=2, quiet=True, fit=FAST)
    reference = steal(CallableOracle(CountingFn(target), 10), x, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "run"
    crashing = CountingFn(target, crash_after=2)
    with pytest.raises(Crash):
        steal(CallableOracle(crashing, 10), x, out=out, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="resume"):
        steal(CallableOracle(CountingFn(target), 10), x, out=out, **kwargs)  # type: ignore[arg-type]
    resumed_fn = CountingFn(target)
    resumed = steal(CallableOracle(resumed_fn, 10), x, out=out, resume=True, **kwargs)  # type: ignore[arg-type]

    assert crashing.images + resumed_fn.images == 500  # every point bought exactly once
    assert resumed.queries_used == reference.queries_used == 500
    assert [r.train_size for r in resumed.history] == [r.train_size for r in reference.history]
    rows = (out / "history.jsonl").read_text().splitlines()
    assert len(rows) == len(resumed.history)


def test_resume_with_other_settings_is_refused(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:300]
    steal(
        CallableOracle(CountingFn(target), 10),
        x,
        budget=100,
        batch_size=100,
        out=tmp_path,
        quiet=True,
        fit=FAST,
    )
    with pytest.raises(ConfigError, match="different settings"):
        steal(
            CallableOracle(CountingFn(target), 10),
            x,
            budget=200,
            batch_size=100,
            out=tmp_path,
            resume=True,
            quiet=True,
            fit=FAST,
        )


def test_bad_arguments(target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]) -> None:
    x = mnist_small[0][:100]
    oracle = CallableOracle(CountingFn(target), 10)
    for kwargs in (
        {"strategy": "best"},
        {"stop": "entropy:x"},
        {"stop": "entropy:0.1:0"},
        {"seeding": "kmeans:0"},
        {"substitute": "vgg"},
        {"budget": 0},
    ):
        with pytest.raises(ActiveThiefError):
            steal(oracle, x, **{"budget": 10, **kwargs}, quiet=True)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"pool .*\(1, 20, 28\).*\(1, 28, 28\)"):
        steal(oracle, x[:, :, :20], budget=10, quiet=True)  # not the target's input shape


def test_hard_label_oracle_and_seeding(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    oracle = ModelOracle(target, mode="label")
    result = steal(
        oracle,
        x[:1200],
        budget=400,
        batch_size=200,
        seeding="kmeans:10",
        strategy="margin",
        test=(xt, yt),
        quiet=True,
        fit=FAST,
    )
    assert result.queries_used == 400
    assert result.history[-1].accuracy is not None and result.history[-1].accuracy > 0.5


def test_warm_steps_train_later_rounds_exactly_that_long(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:800]
    config = FitConfig(epochs=3, patience=2, min_steps=60, warm_steps=7)
    steps: list[int] = []

    def counting_fit(*args: object, **kwargs: object) -> FitResult:
        result = fit(*args, **kwargs)  # type: ignore[arg-type]
        steps.append(result.steps)
        return result

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steal_loop, "fit", counting_fit)
        steal(
            CallableOracle(CountingFn(target), 10),
            x,
            budget=300,
            batch_size=100,
            quiet=True,
            fit=config,
        )
    assert steps[0] >= 60 and steps[1:] == [7, 7]  # the first round trains cold, later ones warm


def test_random_strategy_never_scores_the_pool(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:800]
    sizes: list[int] = []

    def spying_predict(model: torch.nn.Module, images: np.ndarray, **kwargs: object) -> np.ndarray:
        sizes.append(len(images))
        return predict_proba(model, images, **kwargs)  # type: ignore[arg-type]

    def spying_outputs(model: torch.nn.Module, images: np.ndarray, **kwargs: object) -> Outputs:
        sizes.append(len(images))
        return predict_outputs(model, images, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steal_loop, "predict_proba", spying_predict)
        patch.setattr(steal_loop, "predict_outputs", spying_outputs)
        result = steal(
            CallableOracle(CountingFn(target), 10),
            x,
            budget=300,
            batch_size=100,
            strategy="random",
            quiet=True,
            fit=FAST,
        )
    assert sizes == [100, 100]  # only each selected batch, for its entropy (the stopping rule's signal)
    assert all(r.batch_entropy is not None for r in result.history[1:-1])


def comparable(history: list[RoundRecord]) -> list[dict[str, object]]:
    """A history without its timings: what two runs of the same trajectory must agree on exactly."""
    return [{k: v for k, v in asdict(r).items() if not k.startswith("seconds_")} for r in history]


class Interrupt(Exception):
    pass


def die_in_round(round_: int) -> Callable[[RoundEvent], None]:
    """An `on_round` hook that interrupts the run after round `round_` bought its batch, before its
    checkpoint is written (what a kill at that moment leaves)."""

    def hook(event: RoundEvent) -> None:
        if event.record.round == round_:
            raise Interrupt

    return hook


@pytest.mark.parametrize("strategy", ["random", "entropy+kcenter"])
def test_resumed_run_is_identical_to_an_uninterrupted_one(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...], strategy: str
) -> None:
    """The README's guarantee: same machine and thread count, the same rows and weights bit for bit,
    also when the run died after buying a round's batch and before checkpointing it."""
    x, _, xt, yt = mnist_small
    kwargs = dict(
        budget=400, batch_size=100, strategy=strategy, seed=4, test=(xt[:300], yt[:300]), quiet=True
    )
    reference = steal(ModelOracle(target), x[:900], fit=QUICK, **kwargs)  # type: ignore[arg-type]

    out = tmp_path / "run"
    with pytest.raises(Interrupt):
        steal(ModelOracle(target), x[:900], fit=QUICK, out=out, on_round=die_in_round(2), **kwargs)  # type: ignore[arg-type]
    resumed = steal(ModelOracle(target), x[:900], fit=QUICK, out=out, resume=True, **kwargs)  # type: ignore[arg-type]
    assert comparable(resumed.history) == comparable(reference.history)
    a, b = reference.substitute.state_dict(), resumed.substitute.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_a_callable_target_answers_exactly_the_budget(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    fn = CountingFn(target)
    result = steal(
        CallableOracle(fn, 10),
        x[:800],
        budget=300,
        batch_size=100,
        test=(xt[:200], yt[:200]),
        quiet=True,
        fit=QUICK,
    )
    assert fn.images == result.queries_used == 300  # the test set was not asked for free
    assert result.evaluation_queries == 0 and result.history[-1].agreement is None
    assert result.history[-1].accuracy is not None  # true labels are the user's own: no query needed

    owned = CountingFn(target)
    result = steal(
        CallableOracle(owned, 10, free_evaluation=True),
        x[:800],
        budget=300,
        batch_size=100,
        test=(xt[:200], yt[:200]),
        quiet=True,
        fit=QUICK,
    )
    assert owned.images == 500 and result.queries_used == 300 and result.evaluation_queries == 0
    assert result.history[-1].agreement is not None


def test_bought_test_labels_are_counted_reported_and_never_bought_twice(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    kwargs = dict(budget=300, batch_size=100, test=(xt[:200], yt[:200]), buy_test_labels=True, quiet=True)
    out = tmp_path / "run"
    first = CountingFn(target)

    with pytest.raises(Interrupt):
        steal(CallableOracle(first, 10), x[:800], fit=QUICK, out=out, on_round=die_in_round(2), **kwargs)  # type: ignore[arg-type]
    assert first.images == 200 + 300  # the test set, then the seed round and two batches
    again = CountingFn(target)
    result = steal(CallableOracle(again, 10), x[:800], fit=QUICK, out=out, resume=True, **kwargs)  # type: ignore[arg-type]
    assert again.images == 0  # the run had bought everything before it died; nothing is bought twice
    assert result.queries_used == 300 and result.evaluation_queries == 200
    assert result.history[-1].agreement is not None
    assert all(r.evaluation_queries == 200 for r in result.history)
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["queries_used"], summary["evaluation_queries"]) == (300, 200)
    rows = [json.loads(line) for line in (out / "history.jsonl").read_text().splitlines()]
    assert {r["evaluation_queries"] for r in rows} == {200}
    labels = predict_proba(target, xt[:200]).argmax(1)
    expected = float((predict_proba(result.substitute, xt[:200]).argmax(1) == labels).mean())
    assert result.history[-1].agreement == pytest.approx(expected)


def test_bought_test_labels_count_against_the_oracle_budget(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x, _, xt, yt = mnist_small
    oracle = CallableOracle(CountingFn(target), 10, budget=250)
    result = steal(
        oracle,
        x[:800],
        budget=300,
        batch_size=100,
        test=(xt[:200], yt[:200]),
        buy_test_labels=True,
        quiet=True,
        fit=QUICK,
    )
    assert (result.evaluation_queries, result.queries_used, oracle.used) == (200, 50, 250)


def test_resuming_with_another_thread_count_warns(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:400]
    kwargs = dict(budget=200, batch_size=100, quiet=True, fit=QUICK, out=tmp_path)

    before = torch.get_num_threads()
    with pytest.raises(Interrupt):
        steal(ModelOracle(target), x, on_round=die_in_round(1), **kwargs)  # type: ignore[arg-type]
    torch.set_num_threads(before + 1)
    try:
        with pytest.warns(UserWarning, match="torch threads"):
            steal(ModelOracle(target), x, resume=True, **kwargs)  # type: ignore[arg-type]
    finally:
        torch.set_num_threads(before)


def test_the_loop_computes_only_what_the_strategy_needs(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    asked: list[dict[str, object]] = []

    def spying_outputs(model: torch.nn.Module, images: np.ndarray, **kwargs: object) -> Outputs:
        asked.append({"n": len(images), **kwargs})
        return predict_outputs(model, images, **kwargs)  # type: ignore[arg-type]

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(steal_loop, "predict_outputs", spying_outputs)
        result = steal(
            ModelOracle(target),
            mnist_small[0][:500],
            budget=300,
            batch_size=100,
            strategy="kcenter@features",
            quiet=True,
            fit=QUICK,
        )
    assert result.queries_used == 300 and [r.selected for r in result.history] == [100, 100, 100, 0]
    # one streaming pass over the pool per selecting round, features only (the seed round reads nothing)
    assert [(a["n"], a["probs"], a["features"]) for a in asked] == [(500, False, True)] * 2


def test_a_strategy_that_needs_the_model_gets_it(
    target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    result = steal(
        ModelOracle(target),
        mnist_small[0][:400],
        budget=200,
        batch_size=100,
        strategy="dfal+kcenter",
        quiet=True,
        fit=QUICK,
    )
    assert result.queries_used == 200 and [r.selected for r in result.history] == [100, 100, 0]


def test_resuming_a_finished_run_trains_and_buys_nothing(
    tmp_path: Path, target: torch.nn.Module, mnist_small: tuple[np.ndarray, ...]
) -> None:
    x = mnist_small[0][:600]
    kwargs = dict(budget=200, batch_size=100, quiet=True, fit=QUICK)
    out = tmp_path / "run"
    first = steal(CallableOracle(CountingFn(target), 10), x, out=out, **kwargs)  # type: ignore[arg-type]
    again_fn = CountingFn(target)
    again = steal(CallableOracle(again_fn, 10), x, out=out, resume=True, **kwargs)  # type: ignore[arg-type]
    assert again_fn.images == 0
    assert [asdict(r) for r in again.history] == [asdict(r) for r in first.history]
    rows = (out / "history.jsonl").read_text().splitlines()
    assert len(rows) == len(first.history)  # no duplicate row for a round trained again
    weights = zip(first.substitute.state_dict().values(), again.substitute.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in weights)  # the checkpoint loaded back, not retrained
    assert again.queries_used == 200 and again.stopped_by == first.stopped_by
