"""`activethief serve`: put a saved target behind an Open Inference Protocol HTTP API with API keys."""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Annotated

import typer

from activethief.errors import ConfigError

EXTRA_HINT = "pip install 'activethief[serve]'"


def require_serve_extra() -> None:
    """Raise a ConfigError naming the install command when the web stack is missing."""
    for module in ("fastapi", "uvicorn"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"`activethief serve` needs the serve extra ({module} is not installed): {EXTRA_HINT}"
            ) from None


def register(app: typer.Typer) -> None:
    """Add the `serve` command to the CLI."""
    from activethief.cli import friendly

    @app.command("serve")
    @friendly
    def serve_command(
        target: Annotated[Path, typer.Argument(help="Model file written by train-target (or models.save).")],
        keys: Annotated[Path, typer.Option("--keys", help="TOML keys file: API keys and their policies.")],
        host: Annotated[
            str, typer.Option(help="Address to bind; keep 127.0.0.1 unless you mean to expose it.")
        ] = "127.0.0.1",
        port: Annotated[int, typer.Option(help="TCP port.")] = 8080,
        model_name: Annotated[
            str | None,
            typer.Option("--model-name", help="Name in /v2/models/NAME (default: the dataset name)."),
        ] = None,
        state: Annotated[
            Path,
            typer.Option("--state", help="SQLite file keeping each key's usage and answered request ids."),
        ] = Path("serve-state.sqlite"),
        max_batch: Annotated[
            int, typer.Option("--max-batch", help="Most images in one request (more: 413).")
        ] = 1000,
        max_bytes: Annotated[
            int, typer.Option("--max-bytes", help="Largest request body in bytes (more: 413).")
        ] = 32 * 1024 * 1024,
        log_level: Annotated[
            str, typer.Option("--log-level", help="debug, info, warning or error.")
        ] = "info",
    ) -> None:
        """Serve a target over HTTP (KServe V2 / Triton REST) with per-key output mode, budget, rate limit."""
        require_serve_extra()
        from activethief.serve.app import build_service, serve

        if max_batch < 1 or max_bytes < 1024:
            raise ConfigError(
                f"--max-batch must be >= 1 and --max-bytes >= 1024; got {max_batch} and {max_bytes}"
            )
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"--log-level must be debug, info, warning or error; got {log_level!r}")
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
        service = build_service(
            target, keys, state=state, model_name=model_name, max_batch=max_batch, max_bytes=max_bytes
        )
        serve(service, host=host, port=port, log_level=log_level)
