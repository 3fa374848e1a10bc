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
    for module in ("fastapi", "uvicorn", "prometheus_client"):
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
        target: Annotated[
            Path,
            typer.Argument(
                help="Model file (train-target or models.save), served in the input shape it records."
            ),
        ],
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
        max_inflight_bytes: Annotated[
            int | None,
            typer.Option(
                "--max-inflight-bytes",
                help="Body bytes read or parsed at once; more wait, then 503 (default: 4 x --max-bytes).",
            ),
        ] = None,
        max_connections: Annotated[
            int,
            typer.Option(
                "--max-connections", help="Open connections at most; the oldest idle one makes room."
            ),
        ] = 512,
        header_timeout: Annotated[
            float,
            typer.Option(
                "--header-timeout", help="Seconds to send a request head (from connect or last answer)."
            ),
        ] = 10.0,
        keep_alive: Annotated[
            float,
            typer.Option("--timeout-keep-alive", help="Seconds an idle keep-alive connection stays open."),
        ] = 5.0,
        body_timeout: Annotated[
            float, typer.Option("--body-timeout", help="Seconds to send a whole request body (more: 408).")
        ] = 60.0,
        write_timeout: Annotated[
            float,
            typer.Option(
                "--write-timeout", help="Seconds a client may leave its answer unread before it is dropped."
            ),
        ] = 30.0,
        metrics_port: Annotated[
            int | None,
            typer.Option(
                "--metrics-port", help="Also serve /metrics without a key on this port (keep it private)."
            ),
        ] = None,
        metrics_host: Annotated[
            str, typer.Option("--metrics-host", help="Address for --metrics-port.")
        ] = "127.0.0.1",
        model_details: Annotated[
            bool,
            typer.Option(
                "--model-details", help="Show the training dataset and architecture in the model metadata."
            ),
        ] = False,
        log_level: Annotated[
            str, typer.Option("--log-level", help="debug, info, warning or error.")
        ] = "info",
        seed: Annotated[
            int,
            typer.Option(
                "--seed", help="Seed of the keys' random defences (noise); keep it private in production."
            ),
        ] = 0,
    ) -> None:
        """Serve a target over HTTP (KServe V2 / Triton REST) with per-key defence, output mode, budget, rate
        limit and PRADA."""
        require_serve_extra()
        from activethief.serve.app import build_service, serve
        from activethief.serve.connections import ConnectionLimits

        if max_batch < 1 or max_bytes < 1024:
            raise ConfigError(
                f"--max-batch must be >= 1 and --max-bytes >= 1024; got {max_batch} and {max_bytes}"
            )
        if log_level not in ("debug", "info", "warning", "error"):
            raise ConfigError(f"--log-level must be debug, info, warning or error; got {log_level!r}")
        try:
            limits = ConnectionLimits(
                header_timeout=header_timeout,
                keep_alive=keep_alive,
                body_timeout=body_timeout,
                write_timeout=write_timeout,
                max_connections=max_connections,
            )
        except ValueError:
            raise ConfigError(
                "--header-timeout, --timeout-keep-alive, --body-timeout and --write-timeout must be > 0, "
                "and --max-connections >= 1"
            ) from None
        logging.basicConfig(level=log_level.upper(), format="%(levelname)s:     %(name)s: %(message)s")
        service = build_service(
            target,
            keys,
            state=state,
            model_name=model_name,
            max_batch=max_batch,
            max_bytes=max_bytes,
            max_inflight_bytes=max_inflight_bytes,
            model_details=model_details,
            seed=seed,
        )
        serve(
            service,
            host=host,
            port=port,
            log_level=log_level,
            limits=limits,
            metrics_host=metrics_host,
            metrics_port=metrics_port,
        )
