"""The ActiveThief rounds (Pal et al., AAAI 2020): seed -> query -> fit -> select -> query ...

State is the ledger (every answer bought, by pool index and round) plus the run folder's checkpoint of
the last finished round, so `resume=True` continues exactly where a run stopped, buying nothing twice.

The pool is a `data.Pool` held in its storage form (uint8, or memory-mapped) and read a batch at a time:
scoring streams it through `predict_outputs`, purchases read `pool[batch]` and training `pool[bought]`,
so a 1,000,000-image RGB pool never becomes a 12 GB float32 array (unless a seeder that clusters the
raw pixels asks for all of them; see `pool_view`).
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, cast

import numpy as np
from torch import nn

from activethief import models
from activethief.data import Pool, PoolSummary, open_pool
from activethief.errors import ConfigError, DataError
from activethief.oracle import Oracle, answers_to_targets
from activethief.progress import Progress
from activethief.selection import Need, PoolView, mean_entropy
from activethief.steal.config import StealConfig
from activethief.steal.records import RoundEvent, RoundRecord, StealResult
from activethief.steal.rundir import open_run
from activethief.training import fit, predict_outputs, predict_proba


def fingerprint(images: np.ndarray) -> str:
    """The identity of an image set: SHA-256 of its bytes (content and order)."""
    return hashlib.sha256(np.ascontiguousarray(images).tobytes()).hexdigest()[:32]


def round_seed(seed: int, round_: int, purpose: int) -> int:
    """The seed of one random choice (1: initial weights, 2: training, 3: selection) of one round."""
    return int(np.random.SeedSequence([seed, round_, purpose]).generate_state(1)[0])


PoolInput = np.ndarray | Pool | str | Path

_FINGERPRINT_ROWS = 4096  # images per block when a pool's legacy fingerprint is streamed


def load_pool(pool: PoolInput, shape: tuple[int, int, int]) -> Pool:
    """The pool for a target taking (C, H, W) = `shape`, as a `data.Pool` (nothing converted yet).

    `pool` is a `data.Pool`, an array (uint8, or float in [0, 1]; [N, C, H, W], [N, H, W, C] or
    [N, H, W]), or anything `data.open_pool` opens: a dataset name (its training set), a folder of
    images (converted to `shape`), an .npy/.npz file. A pool of another shape is a ConfigError naming
    both shapes.
    """
    if isinstance(pool, Pool):
        opened = pool
    else:
        try:
            opened = open_pool(pool, shape)
        except DataError as exc:
            raise ConfigError(f"pool: {exc}") from None
    if opened.shape != tuple(shape):
        raise ConfigError(
            f"pool {opened.summary.source} holds images of shape (C, H, W) = {opened.shape}, but the "
            f"target takes {tuple(shape)}; give a pool of the target's shape (a folder is resized to it)"
        )
    if len(opened) == 0:
        raise ConfigError(f"pool {opened.summary.source} holds no images")
    return opened


def first_images(pool: Pool, count: int | None) -> Pool:
    """The pool's first `count` images (all of them for None), still in their storage form."""
    if count is None or count >= len(pool):
        return pool
    if count < 1:
        raise ConfigError(f"pool size must be at least 1, got {count}")
    summary = PoolSummary(f"{pool.summary.source}[:{count}]", pool.summary.kind, pool.summary.storage, count)
    return Pool(pool.storage[:count], pool.layout, summary)


def pool_fingerprint(pool: Pool) -> str:
    """The pool's identity for resume, bound in the ledger.

    A dataset pool or a pool of float pixels keeps the definition runs have always bound (`fingerprint`
    of its float32 [N, C, H, W] values, streamed a block at a time here), so run folders written before
    pools were read per batch still resume. Any other pool (uint8 arrays, .npy/.npz files, folders) is
    identified by `Pool.fingerprint` (SHA-256 of its stored bytes, content and order).
    """
    if pool.summary.kind != "dataset" and pool.storage.dtype.kind != "f":
        return pool.fingerprint
    digest = hashlib.sha256()
    for batch in pool.batches(_FINGERPRINT_ROWS):
        digest.update(np.ascontiguousarray(batch).data)
    return digest.hexdigest()[:32]


def bind_pool(oracle: Oracle, pool: Pool) -> None:
    """Bind the pool's fingerprint in the ledger, refusing a resumed run whose pool changed."""
    ledger, value = oracle.ledger, pool_fingerprint(pool)
    recorded, source = ledger.get_meta("pool"), ledger.get_meta("pool_source")
    if recorded is not None and recorded != value:
        was = f" ({source})" if source else ""
        raise ConfigError(
            f"the pool {pool.summary.source} is not the pool this run bought its answers for{was}: its "
            f"content or order changed (fingerprint {value[:16]}, recorded {recorded[:16]}). The ledger's "
            "pool indices would point at other images; resume with the same pool, or start a new run"
        )
    ledger.bind("pool", value, "pool fingerprint")
    if source is None:
        ledger.set_meta("pool_source", pool.summary.source)


class Evaluator:
    """Test accuracy (true labels) and agreement (the target's labels) of a substitute.

    The target's labels come from the user, from a model the user owns (free), or are bought through
    the oracle when `buy` is set (counted as evaluation queries, kept in the ledger); else agreement is
    None.
    """

    def __init__(
        self,
        oracle: Oracle,
        test: tuple[np.ndarray, np.ndarray] | None,
        target_labels: np.ndarray | None,
        buy: bool,
    ) -> None:
        self.test = test
        if test is not None and target_labels is None:
            if oracle.free_evaluation:
                target_labels = oracle.evaluate(test[0])
            elif buy:
                set_id = f"test:{fingerprint(np.asarray(test[0], dtype=np.float32))}"
                target_labels = oracle.buy_evaluation(test[0], set_id=set_id).argmax(1)
        self.target_labels = target_labels

    def __call__(self, model: nn.Module) -> tuple[float | None, float | None]:
        if self.test is None:
            return None, None
        pred = predict_proba(model, self.test[0]).argmax(1)
        accuracy = float((pred == self.test[1]).mean())
        agreement = None if self.target_labels is None else float((pred == self.target_labels).mean())
        return accuracy, agreement


@dataclass
class _Bought:
    """The ledger as one round sees it: answers bought before it, and what it bought itself already."""

    keys: np.ndarray
    answers: np.ndarray
    all_keys: np.ndarray
    this_round: np.ndarray  # non-empty only when resuming a round whose batch was bought before a crash


class _Rounds:
    """The loop's state (history, last substitute, entropies) and the steps of one round; `steal` calls
    `round` until a round buys nothing (budget, pool or stopping rule)."""

    def __init__(
        self,
        oracle: Oracle,
        pool: Pool,
        config: StealConfig,
        evaluate: Evaluator,
        history: list[RoundRecord],
        model: nn.Module | None,
    ) -> None:
        self.oracle, self.pool, self.config, self.evaluate = oracle, pool, config, evaluate
        self.history, self.model = history, model
        self.selector, self.seeder, self.rule = config.selector(), config.seeder(), config.stop_rule()
        self.num_classes = oracle.num_classes
        # The substitute for the target's input shape (`auto`: cnn2 for 28x28 grayscale, a residual net
        # otherwise), trained and scored on `config.device`.
        self.arch = models.resolve_arch(config.substitute, oracle.input_shape)
        self.device = models.resolve_device(config.device)
        self.entropies = [r.batch_entropy for r in history if r.batch_entropy is not None]
        self.stopped_by = "budget"

    def spent(self) -> int:
        """Queries bought for stealing: everything the oracle was paid for but evaluation answers."""
        return self.oracle.used - self.oracle.evaluation_used

    def left(self) -> int:
        """Queries this run may still buy (its own budget and the oracle's)."""
        left = self.config.budget - self.spent()
        if self.oracle.remaining is not None:
            left = min(left, self.oracle.remaining)
        return max(0, left)

    def bought(self, round_: int) -> _Bought:
        keys, answers, rounds = self.oracle.ledger.all_answers()
        answers = answers.reshape(len(keys), self.num_classes)
        prior = rounds < round_
        return _Bought(keys[prior], answers[prior], keys, keys[rounds == round_])

    def train(self, round_: int, bought: _Bought) -> tuple[nn.Module, int, int]:
        """Round 0's untrained substitute, or one trained on every answer bought before `round_`, with
        its training's epochs and steps. Semi-supervised training draws from the whole pool."""
        config = self.config
        model = models.build(
            self.arch,
            self.num_classes,
            input_shape=self.oracle.input_shape,
            seed=round_seed(config.seed, round_, 1),
            device=self.device,
        )
        if round_ == 0:
            return model, 0, 0
        warm = self.model is not None and config.warm_start
        init_state = self.model.state_dict() if warm and self.model is not None else None
        fit_config = config.fit
        if init_state is not None and round_ > 1 and fit_config.warm_steps:
            steps = fit_config.warm_steps
            fit_config = replace(fit_config, min_steps=steps, max_steps=steps)
        result = fit(
            model,
            self.pool[bought.keys],
            answers_to_targets(bought.answers),
            config=fit_config,
            seed=round_seed(config.seed, round_, 2),
            init_state=init_state,
            unlabelled=self.pool if fit_config.semi is not None else None,
        )
        return model, result.epochs, result.steps

    def batch_size(self, round_: int, bought: _Bought) -> int:
        """How many points this round buys (0 ends the run, with `stopped_by` saying why)."""
        resumed = len(bought.this_round)
        k = min(self.config.first_batch if round_ == 0 else self.config.batch_size, self.left() + resumed)
        k = min(k, len(self.pool) - len(bought.all_keys) + resumed)
        if self.rule.should_stop(self.entropies):
            self.stopped_by = self.rule.name
            return 0
        if k <= 0:
            self.stopped_by = "budget" if self.left() == 0 else "pool"
        return max(0, k)

    def select(
        self, round_: int, model: nn.Module, bought: _Bought, k: int
    ) -> tuple[np.ndarray, float | None]:
        """The batch to buy (ascending pool index) and its mean entropy under `model` (stopping signal)."""
        needs = self.seeder.needs if round_ == 0 else self.selector.needs
        view = pool_view(model, self.pool, needs, bf16=self.config.fit.bf16, whole_images=round_ == 0)
        rng = np.random.default_rng(round_seed(self.config.seed, round_, 3))
        if len(bought.this_round):  # resuming a round whose batch was already bought
            batch = bought.this_round[:k]
        elif round_ == 0:
            batch = self.seeder.select(view, k, rng)
        else:
            candidates = np.setdiff1d(np.arange(len(self.pool)), bought.all_keys)
            batch = self.selector.select(view, bought.keys, candidates, k, rng)
        # One canonical order, ascending pool index: the ledger returns a bought batch in that order,
        # so a round resumed after its batch was bought sums the batch's entropies in the same order
        # as the uninterrupted run (selection order differed, and the float sums with it).
        batch = np.sort(batch)
        if round_ == 0:  # an untrained model's entropy means nothing
            return batch, None
        if view.probs is not None:
            batch_probs = view.probs[batch]
        else:
            batch_probs = predict_proba(model, self.pool[batch], bf16=self.config.fit.bf16)
        return batch, mean_entropy(batch_probs)

    def round(self, round_: int) -> tuple[RoundRecord, nn.Module]:
        """Train, measure, select and buy one round's batch; returns its record and substitute."""
        bought = self.bought(round_)
        t0 = time.perf_counter()
        model, epochs, steps = self.train(round_, bought)
        t1 = time.perf_counter()
        accuracy, agreement = self.evaluate(model)
        k = self.batch_size(round_, bought)
        batch, batch_entropy = (
            self.select(round_, model, bought, k) if k > 0 else (np.zeros(0, np.int64), None)
        )
        t2 = time.perf_counter()
        if len(batch):
            self.oracle.query(self.pool[batch], keys=batch, round=round_)
        t3 = time.perf_counter()
        if batch_entropy is not None:
            self.entropies.append(batch_entropy)
        record = RoundRecord(
            round=round_,
            train_size=len(bought.keys),
            queries_used=self.spent(),
            selected=len(batch),
            batch_entropy=batch_entropy,
            accuracy=accuracy,
            agreement=agreement,
            train_epochs=epochs,
            seconds_train=round(t1 - t0, 3),
            seconds_select=round(t2 - t1, 3),
            seconds_query=round(t3 - t2, 3),
            evaluation_queries=self.oracle.evaluation_used,
            train_steps=steps,
        )
        return record, model


def pool_view(
    model: nn.Module, pool: Pool, needs: frozenset[Need], *, bf16: bool = False, whole_images: bool = False
) -> PoolView:
    """What a strategy needs of the pool, computed in one streaming pass (nothing when it needs nothing).

    `Need.IMAGES` hands a selection strategy the pool itself (it reads `images[candidates]`, a batch
    converted at a time); a seeder that clusters the raw pixels (`whole_images`: pca-kmeans, typiclust,
    probcover) gets them as one float32 array, so it converts the whole pool once (4 bytes a value: 12 GB
    for a 1,000,000-image 32x32 RGB pool). Only those seeders do; no other strategy converts the pool.
    """
    want_probs, want_features = Need.PROBS in needs, Need.FEATURES in needs
    outputs = (
        predict_outputs(model, pool, probs=want_probs, features=want_features, bf16=bf16)
        if want_probs or want_features
        else None
    )
    images: Any = None
    if Need.IMAGES in needs:
        images = pool.to_array() if whole_images else pool
    return PoolView(
        size=len(pool),
        images=images,
        probs=None if outputs is None else outputs.probs,
        features=None if outputs is None else outputs.features,
        model=model if Need.MODEL in needs else None,
    )


def steal(
    oracle: Oracle,
    pool: PoolInput,
    config: StealConfig | None = None,
    *,
    test: tuple[np.ndarray, np.ndarray] | None = None,
    out: Path | str | None = None,
    resume: bool = False,
    quiet: bool = False,
    on_round: Callable[[RoundEvent], None] | None = None,
    target_test_labels: np.ndarray | None = None,
    buy_test_labels: bool = False,
    **settings: Any,
) -> StealResult:
    """Steal the oracle's target: train a substitute on as few, as well chosen queries as possible.

    The canonical call is `steal(oracle, pool, StealConfig(budget=..., ...))`; keyword settings
    (`steal(oracle, pool, budget=500, strategy="entropy+kcenter")`) are a shorthand for the same
    config (and override `config`'s fields when both are given).

    Args:
        oracle: any Oracle (local model, callable, HTTP). Its ledger is replaced by `out/ledger.sqlite`
            when `out` is given and the oracle's own ledger is in memory and empty.
        pool: the unlabelled images, of the target's input shape `oracle.input_shape` (C, H, W): a
            `data.Pool`, an array (float32 in [0, 1] or uint8; [N, C, H, W], [N, H, W, C] or [N, H, W]),
            or anything `data.open_pool` opens (a dataset name: its training set; a folder of images,
            resized to the target's shape; an .npy/.npz file). It is kept in its storage form (uint8 or
            memory-mapped) and read a batch at a time.
        config: the run's settings (`StealConfig`).
        test: (images, labels) to report accuracy; agreement needs the target's labels on them: from
            `target_test_labels`, computed for free when the target is a model the user owns
            (`oracle.free_evaluation`), or bought with `buy_test_labels`; else agreement is None.
        out: the run folder (`activethief.steal.rundir`): history, summary, substitute, checkpoint, ledger.
        resume: continue an interrupted run in `out` (same settings) without buying anything twice.
        quiet: no progress bar.
        on_round: called after every round with a `RoundEvent` (the record and the round's substitute).
        target_test_labels: the target's labels on the test images, when the user already has them.
        buy_test_labels: buy the target's answers on the test images through the oracle: counted, kept
            in the ledger (never bought twice on resume), reported as `evaluation_queries`, apart from
            the stealing budget.
        **settings: `StealConfig` fields.
    """
    config = StealConfig.build(config, settings)
    images = load_pool(pool, oracle.input_shape)
    run = open_run(out, resume=resume)
    run.attach(oracle)
    restored = run.restore(config)
    bind_pool(oracle, images)
    # recover only reads pool[indices]: a Pool does that a batch at a time (Oracle.recover's annotation
    # says ndarray, which subclasses such as HttpOracle repeat; any ImageRows works).
    oracle.recover(cast(np.ndarray, images))
    evaluate = Evaluator(oracle, test, target_test_labels, buy_test_labels)
    rounds = _Rounds(oracle, images, config, evaluate, restored.history, restored.model)
    progress = Progress(not quiet, config.budget, "stealing", unit="query", leave=False)
    round_ = rounds.history[-1].round + 1 if rounds.history else 0
    # A resumed run that had already bought all it may (its last round selected nothing and there is
    # still nothing to buy) is finished: training another round would only add a duplicate row.
    finished = bool(rounds.history) and not rounds.history[-1].selected
    finished = finished and rounds.batch_size(round_, rounds.bought(round_)) == 0
    while not finished:
        record, rounds.model = rounds.round(round_)
        rounds.history.append(record)
        acc = "-" if record.accuracy is None else f"{record.accuracy:.4f}"
        progress.set(record.queries_used, round=record.round, acc=acc)
        if on_round is not None:
            on_round(RoundEvent(record, rounds.model))
        run.checkpoint(config, rounds.history, rounds.model, rounds.num_classes)
        if not record.selected:
            break
        round_ += 1
    progress.close()
    assert rounds.model is not None
    result = StealResult(
        rounds.model,
        rounds.history,
        rounds.spent(),
        rounds.stopped_by,
        rounds.history[-1].round,
        config,
        oracle.evaluation_used,
    )
    run.finish(result, rounds.num_classes)
    return result
