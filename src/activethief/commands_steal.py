"""`activethief steal`: build an oracle for a target file or URL and run the ActiveThief loop."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any

import typer

from activethief.cli import friendly
from activethief.errors import ConfigError


def open_oracle(
    target: str,
    *,
    output_mode: str = "probs",
    budget: int | None = None,
    ledger: Path | None = None,
    api_key_env: str | None = None,
) -> Any:
    """An oracle for a local model file or an HTTP(S) Open Inference Protocol endpoint."""
    if target.startswith(("http://", "https://")):
        try:
            from activethief.oracle.http import HttpOracle
        except ImportError as exc:
            raise ConfigError(
                f"HTTP targets need the serve extra: pip install 'activethief[serve]' ({exc})"
            ) from exc
        key = os.environ.get(api_key_env) if api_key_env else None
        if api_key_env and not key:
            raise ConfigError(f"environment variable {api_key_env} (from --api-key-env) is not set")
        return HttpOracle(target, api_key=key, budget=budget, ledger=ledger)
    from activethief.oracle import ModelOracle

    return ModelOracle(target, mode=output_mode, budget=budget, ledger=ledger)


def register(app: typer.Typer) -> None:
    """Add the `steal` command to the CLI."""

    @app.command("steal")
    @friendly
    def steal_command(
        target: Annotated[
            str, typer.Option(help="Target model file (target.pt) or OIP URL .../v2/models/NAME.")
        ],
        out: Annotated[Path, typer.Option(help="Output folder: history, summary, substitute, ledger.")],
        pool: Annotated[
            str, typer.Option(help="Dataset whose training set is the attacker's pool.")
        ] = "mnist",
        pool_size: Annotated[int | None, typer.Option(help="Use only the first N pool images.")] = None,
        test: Annotated[
            str | None, typer.Option(help="Dataset whose test set measures the substitute.")
        ] = None,
        budget: Annotated[int, typer.Option(help="Most queries to buy.")] = 10_000,
        batch_size: Annotated[int, typer.Option(help="Queries per round.")] = 1000,
        strategy: Annotated[str, typer.Option(help="Selection strategy (see README).")] = "entropy",
        seeding: Annotated[str, typer.Option(help="random, kmeans:N or pca-kmeans:N.")] = "random",
        seed_size: Annotated[int | None, typer.Option(help="Seed round size (default: batch size).")] = None,
        stop: Annotated[
            str, typer.Option(help="budget, entropy:ALPHA or entropy:ALPHA:PATIENCE (see README, Stopping).")
        ] = "budget",
        substitute: Annotated[str, typer.Option(help="Substitute architecture.")] = "cnn2",
        output_mode: Annotated[
            str, typer.Option(help="probs, topk:K, label or round:D (local targets).")
        ] = "probs",
        api_key_env: Annotated[str | None, typer.Option(help="Env var holding the API key (HTTP).")] = None,
        cold_start: Annotated[
            bool, typer.Option("--cold-start", help="Retrain from scratch each round.")
        ] = False,
        seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
        resume: Annotated[
            bool, typer.Option("--resume", help="Continue the interrupted run in --out.")
        ] = False,
        data_dir: Annotated[Path | None, typer.Option(help="Dataset cache folder.")] = None,
        quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")] = False,
    ) -> None:
        """Steal a target with ActiveThief and write the substitute to OUT/substitute.pt."""
        from activethief import data
        from activethief.thief import RoundRecord, steal

        x_pool = data.load(pool, "train", root=data_dir)[0][:pool_size]
        test_set = data.load(test, "test", root=data_dir) if test else None
        # No ledger here: steal() opens OUT/ledger.sqlite itself, refusing to overwrite a run unless resuming.
        oracle = open_oracle(target, output_mode=output_mode, api_key_env=api_key_env)

        def show(r: RoundRecord) -> None:
            acc = "" if r.accuracy is None else f"  acc {r.accuracy:.4f}"
            agr = "" if r.agreement is None else f"  agree {r.agreement:.4f}"
            ent = "" if r.batch_entropy is None else f"  batch H {r.batch_entropy:.4f}"
            typer.echo(
                f"round {r.round:3d}  trained on {r.train_size:6d}{acc}{agr}  bought {r.selected:5d}"
                f"  used {r.queries_used:6d}{ent}  ({r.seconds_train:.1f}+{r.seconds_select:.1f}"
                f"+{r.seconds_query:.1f} s)"
            )

        result = steal(
            oracle,
            x_pool,
            budget=budget,
            batch_size=batch_size,
            strategy=strategy,
            seeding=seeding,
            seed_size=seed_size,
            stop=stop,
            substitute=substitute,
            seed=seed,
            test=test_set,
            out=out,
            resume=resume,
            quiet=quiet,
            warm_start=not cold_start,
            on_round=show,
        )
        summary = result.summary()
        summary.pop("config")
        typer.echo(json.dumps(summary, indent=2))
        typer.echo(f"substitute written to {out / 'substitute.pt'}")
