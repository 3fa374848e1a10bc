"""`activethief steal`: open the target, build one `StealConfig` from the options, run the loop, print."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from activethief.cli import friendly
from activethief.errors import ConfigError
from activethief.files import write_text_atomic
from activethief.steal.records import RoundEvent

if TYPE_CHECKING:
    from activethief.data import Pool
    from activethief.oracle import Oracle
    from activethief.oracle.prada import PradaDetector
    from activethief.steal.config import StealConfig

PRADA_FILE = "prada.json"  # in the run folder, beside summary.json


def read_target_labels(path: Path, count: int) -> np.ndarray:
    """The target's test-set labels from a .npy file of `count` class indices, or a ConfigError."""
    try:
        labels: np.ndarray = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"--target-test-labels {path}: not a readable .npy file ({exc})") from None
    if labels.shape != (count,) or not np.issubdtype(labels.dtype, np.integer):
        raise ConfigError(
            f"--target-test-labels {path}: expected {count} integer class indices (one per test image), "
            f"got shape {list(labels.shape)} of {labels.dtype}"
        )
    return labels


def open_pool_for(source: str, shape: tuple[int, int, int], root: Path | None) -> Pool:
    """`--pool` opened for a target taking (C, H, W) = `shape`, or a ConfigError naming both shapes."""
    from activethief.data import open_pool
    from activethief.errors import DataError

    try:
        return open_pool(source, shape, root=root)
    except DataError as exc:
        raise ConfigError(f"--pool {source}: {exc}") from None


def build_config(
    preset: str,
    *,
    semi: str | None,
    warm_start: bool,
    ema: float | None = None,
    temperature: float | None = None,
    **options: Any,
) -> StealConfig:
    """The run's settings: the preset, then every option the user gave (None: not given)."""
    from activethief.steal import StealConfig
    from activethief.training import parse_semi

    given = {name: value for name, value in options.items() if value is not None}
    config = StealConfig.preset(preset, **given)
    if not warm_start:
        config = replace(config, warm_start=False)
    training: dict[str, Any] = {
        name: value for name, value in (("ema", ema), ("temperature", temperature)) if value is not None
    }
    if semi is not None:
        training["semi"] = parse_semi(semi)
    if training:
        config = replace(config, fit=replace(config.fit, **training))
    return config


def watch_with_prada(oracle: Oracle, delta: float, out: Path, pool: Pool, resume: bool) -> PradaDetector:
    """Put PRADA (Juuti et al., EuroS&P 2019) between the oracle and its target, recording only.

    On `resume` the detector first replays the run's earlier queries from its ledger, in the order they
    were sent, so `flagged_at` counts every query of the run, not just this process's.
    """
    from activethief.oracle import Ledger
    from activethief.oracle.prada import PradaBackend, PradaDetector
    from activethief.steal.rundir import LEDGER

    detector = PradaDetector(delta)
    if resume and (out / LEDGER).exists():
        ledger = Ledger(out / LEDGER)
        try:
            order = ledger.query_order()
            keys, answers, _ = ledger.all_answers()
        finally:
            ledger.close()
        row = {int(k): i for i, k in enumerate(keys)}
        sent = np.array([k for k in order if int(k) in row], dtype=np.int64)
        if len(sent):
            detector.observe(pool[sent], np.array([answers[row[int(k)]].argmax() for k in sent]))
    oracle.backend = PradaBackend(oracle.backend, detector)
    return detector


def announcing(detector: PradaDetector) -> Callable[[RoundEvent], None]:
    """`show_round`, plus one line the first time PRADA flags the run."""
    told = [detector.flagged]

    def show(event: RoundEvent) -> None:
        show_round(event)
        if detector.flagged and not told[0]:
            told[0] = True
            typer.echo(
                f"PRADA (delta {detector.delta:g}) flagged this client after {detector.flagged_at} queries"
            )

    return show


def each_round(detector: PradaDetector | None, keep_in: Path | None) -> Callable[[RoundEvent], None]:
    """What runs after every round: its line (and PRADA's, when watched); with `keep_in`, the round's
    substitute saved to `keep_in/rounds/` too (`attacks.ensemble.keep_rounds`)."""
    show = show_round if detector is None else announcing(detector)
    if keep_in is None:
        return show
    from activethief.attacks.ensemble import keep_rounds

    keep = keep_rounds(keep_in)

    def both(event: RoundEvent) -> None:
        keep(event)
        show(event)

    return both


def prada_report(detector: PradaDetector) -> dict[str, Any]:
    """What the run's `prada.json` (and the printed summary) say about the detector."""
    return {
        "delta": detector.delta,
        "flagged": detector.flagged,
        "flagged_at": detector.flagged_at,
        "queries": detector.queries,
        "statistic": detector.statistic,
    }


def show_round(event: RoundEvent) -> None:
    """One line per round: answers trained on, accuracy, agreement, queries, batch entropy, seconds."""
    r = event.record
    acc = "" if r.accuracy is None else f"  acc {r.accuracy:.4f}"
    agr = "" if r.agreement is None else f"  agree {r.agreement:.4f}"
    ent = "" if r.batch_entropy is None else f"  batch H {r.batch_entropy:.4f}"
    typer.echo(
        f"round {r.round:3d}  trained on {r.train_size:6d}{acc}{agr}  bought {r.selected:5d}"
        f"  used {r.queries_used:6d}{ent}  ({r.seconds_train:.1f}+{r.seconds_select:.1f}"
        f"+{r.seconds_query:.1f} s)"
    )


def register(app: typer.Typer) -> None:
    """Add the `steal` command to the CLI."""
    app.command("steal")(steal_command)


@friendly
def steal_command(
    target: Annotated[str, typer.Option(help="Target model file (target.pt) or OIP URL .../v2/models/NAME.")],
    out: Annotated[Path, typer.Option(help="Output folder: history, summary, substitute, ledger.")],
    pool: Annotated[
        str,
        typer.Option(
            help="The attacker's pool: a dataset name (its training set; NAME:SPLIT for another split), "
            "a folder of images (resized to the target's input shape), an .npy/.npz file, or a pool "
            "from elsewhere: sklearn-digits, noise:uniform|gaussian:N[:SEED], mix:A@N+B@M[:SEED], "
            "aug:VIEWS:SPEC (see README)."
        ),
    ] = "mnist",
    pool_size: Annotated[int | None, typer.Option(help="Use only the first N pool images.")] = None,
    test: Annotated[str | None, typer.Option(help="Dataset whose test set measures the substitute.")] = None,
    target_test_labels: Annotated[
        Path | None, typer.Option(help="The target's labels on the --test set (.npy of class indices).")
    ] = None,
    buy_test_labels: Annotated[
        bool,
        typer.Option(
            "--buy-test-labels",
            help="Buy the target's answers on the --test set (counted apart from --budget).",
        ),
    ] = False,
    preset: Annotated[
        str, typer.Option(help="Settings to start from: default or low-budget (see README, Presets).")
    ] = "default",
    budget: Annotated[int, typer.Option(help="Most queries to buy.")] = 10_000,
    batch_size: Annotated[int | None, typer.Option(help="Queries per round (default 1000).")] = None,
    strategy: Annotated[
        str | None, typer.Option(help="Selection strategy (see README; default entropy).")
    ] = None,
    seeding: Annotated[
        str | None, typer.Option(help="random, kmeans:N, pca-kmeans:N, ... (default random).")
    ] = None,
    seed_size: Annotated[int | None, typer.Option(help="Seed round size (default: batch size).")] = None,
    stop: Annotated[
        str | None,
        typer.Option(help="budget, entropy:ALPHA or entropy:ALPHA:PATIENCE (see README, Stopping)."),
    ] = None,
    substitute: Annotated[
        str | None,
        typer.Option(
            help="cnn2 (default), resnet8, ..., auto (by the target's input shape) or module:function."
        ),
    ] = None,
    device: Annotated[
        str | None, typer.Option(help="Where the substitute trains: auto (a GPU when present), cpu or cuda.")
    ] = None,
    semi: Annotated[
        str | None,
        typer.Option(help="Semi-supervised training over the pool: off, fixmatch or pseudo (see README)."),
    ] = None,
    ema: Annotated[
        float | None,
        typer.Option(
            help="Average the substitute's weights along training with this EMA decay, e.g. 0.99 "
            "(default 0: off; see README, Training)."
        ),
    ] = None,
    temperature: Annotated[
        float | None,
        typer.Option(
            help="Distil the answers at this temperature, e.g. 2 (default 1: off; see README, "
            "Distillation temperature)."
        ),
    ] = None,
    output_mode: Annotated[
        str, typer.Option(help="probs, topk:K, label or round:D (local targets).")
    ] = "probs",
    defence: Annotated[
        str | None,
        typer.Option(
            help="The owner's answer policy on a local target, before --output-mode: noise:S, "
            "reverse-sigmoid:BETA[,GAMMA], misinformation:TAU[,NU], chained with + (see README)."
        ),
    ] = None,
    prada: Annotated[
        float | None,
        typer.Option(help="Watch the run with PRADA at this delta (e.g. 0.95); reports when it would flag."),
    ] = None,
    input_shape: Annotated[
        str | None, typer.Option(help="C,H,W of one image, for a TorchScript/ONNX file that does not say.")
    ] = None,
    returns: Annotated[
        str | None,
        typer.Option(help="logits or probs: what a TorchScript/ONNX target outputs (default: read)."),
    ] = None,
    normalise: Annotated[
        str | None,
        typer.Option(help="The target's per-channel normalisation, MEAN,...:STD,... or imagenet (files)."),
    ] = None,
    api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key (HTTP).")] = None,
    retry_for: Annotated[
        float | None, typer.Option(help="Seconds to keep retrying an HTTP target that is down (default 120).")
    ] = None,
    cold_start: Annotated[
        bool, typer.Option("--cold-start", help="Retrain from scratch each round.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
    keep_rounds: Annotated[
        bool,
        typer.Option(
            "--keep-rounds",
            help="Keep every round's substitute in OUT/rounds/ (members for --ensemble-from).",
        ),
    ] = False,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the interrupted run in --out.")] = False,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset cache folder.")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
) -> None:
    """Steal a target with ActiveThief and write the substitute to OUT/substitute.pt."""
    from activethief import data
    from activethief.oracle import open_oracle, parse_input_shape
    from activethief.steal import steal
    from activethief.steal.loop import first_images

    config = build_config(
        preset,
        budget=budget,
        seed=seed,
        warm_start=not cold_start,
        semi=semi,
        ema=ema,
        temperature=temperature,
        batch_size=batch_size,
        strategy=strategy,
        seeding=seeding,
        seed_size=seed_size,
        stop=stop,
        substitute=substitute,
        device=device,
        defence=defence,
    )
    if (target_test_labels is not None or buy_test_labels) and test is None:
        raise ConfigError("--target-test-labels and --buy-test-labels need --test (the test set)")
    if target_test_labels is not None and buy_test_labels:
        raise ConfigError("give either --target-test-labels or --buy-test-labels, not both")
    if pool_size is not None and pool_size < 1:
        raise ConfigError(f"--pool-size must be at least 1, got {pool_size}")
    test_set = data.load(test, "test", root=data_dir) if test else None
    labels = None
    if target_test_labels is not None and test_set is not None:
        labels = read_target_labels(target_test_labels, len(test_set[1]))
    # No ledger here: steal() opens OUT/ledger.sqlite itself, refusing to overwrite a run unless resuming.
    oracle = open_oracle(
        target,
        output_mode=output_mode,
        api_key_env=api_key_env,
        retry_for=retry_for,
        input_shape=None if input_shape is None else parse_input_shape(input_shape),
        returns=returns,
        normalise=normalise,
        defence=config.defence,
        defence_seed=config.seed,
    )
    detector = None
    try:
        # The pool is opened in the target's input shape and kept as stored (uint8, memory-mapped).
        images = first_images(open_pool_for(pool, oracle.input_shape, data_dir), pool_size)
        if prada is not None:
            detector = watch_with_prada(oracle, prada, out, images, resume)
        result = steal(
            oracle,
            images,
            config,
            test=test_set,
            out=out,
            resume=resume,
            quiet=quiet,
            on_round=each_round(detector, out if keep_rounds else None),
            target_test_labels=labels,
            buy_test_labels=buy_test_labels,
        )
    finally:
        oracle.close()
    summary: dict[str, Any] = result.summary()
    summary.pop("config")
    if config.defence != "none":
        summary["defence"] = config.defence
    if detector is not None:
        summary["prada"] = prada_report(detector)
        write_text_atomic(out / PRADA_FILE, json.dumps(summary["prada"], indent=2))
    typer.echo(json.dumps(summary, indent=2))
    if result.evaluation_queries:
        typer.echo(
            f"queries: {result.queries_used} for stealing + {result.evaluation_queries} test-set answers "
            "bought for agreement"
        )
    elif test_set is not None and summary["agreement"] is None:
        typer.echo(
            "agreement not measured: the target is not a model file you own; pass "
            "--target-test-labels FILE or --buy-test-labels"
        )
    typer.echo(f"substitute written to {out / 'substitute.pt'}")
