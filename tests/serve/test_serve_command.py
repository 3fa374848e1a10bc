"""`activethief serve` from the command line: options, clean errors, the missing extra."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from serve_helpers import KEYS
from typer.testing import CliRunner

from activethief.serve.command import register

app = typer.Typer()  # a private app: the serve command alone, the global CLI untouched
register(app)
app.command("noop")(lambda: None)  # with two commands, typer keeps the `serve` subcommand name


def test_serve_command_builds_the_service_from_its_options(
    target_file: Path, keys_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The options reach the service; a real `activethief serve` process runs in the kill-and-resume test."""
    from activethief.serve import app as web

    started: dict[str, Any] = {}
    monkeypatch.setattr(web, "serve", lambda service, **options: started.update(service=service, **options))
    state = tmp_path / "state.sqlite"
    options = ["--state", str(state), "--max-batch", "30", "--max-bytes", "65536", "--model-name", "digits",
               "--max-connections", "40", "--header-timeout", "3", "--body-timeout", "7", "--metrics-port",
               "9123", "--model-details", "--max-inflight-bytes", "131072"]  # fmt: skip
    result = CliRunner().invoke(
        app, ["serve", str(target_file), "--keys", str(keys_file), "--port", "8123", *options]
    )
    assert result.exit_code == 0, result.output
    service = started["service"]
    assert (started["host"], started["port"], started["log_level"]) == ("127.0.0.1", 8123, "info")
    assert (service.config.model_name, service.config.max_batch, service.config.max_bytes) == (
        "digits",
        30,
        65536,
    )
    assert service.store.path == str(state) and len(service.keys) == len(KEYS)
    limits = started["limits"]
    assert (limits.max_connections, limits.header_timeout, limits.body_timeout) == (40, 3.0, 7.0)
    assert (started["metrics_host"], started["metrics_port"]) == ("127.0.0.1", 9123)
    assert service.config.model_details and service.config.max_inflight_bytes == 131072
    service.store.close()


def test_serve_command_errors_are_one_clean_line(target_file: Path, keys_file: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    missing_keys = runner.invoke(app, ["serve", str(target_file), "--keys", str(tmp_path / "none.toml")])
    assert (
        missing_keys.exit_code == 1
        and "keys file" in missing_keys.output
        and "Traceback" not in missing_keys.output
    )
    missing_target = runner.invoke(app, ["serve", str(tmp_path / "none.pt"), "--keys", str(keys_file)])
    assert missing_target.exit_code == 1 and "does not exist" in missing_target.output
    bad_limit = runner.invoke(app, ["serve", str(target_file), "--keys", str(keys_file), "--max-batch", "0"])
    assert bad_limit.exit_code == 1 and "--max-batch" in bad_limit.output
    bad_timeout = runner.invoke(
        app, ["serve", str(target_file), "--keys", str(keys_file), "--body-timeout", "0"]
    )
    assert bad_timeout.exit_code == 1 and "--body-timeout" in bad_timeout.output


def test_serve_command_names_the_extra_when_fastapi_is_missing(
    target_file: Path, keys_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "fastapi", None)  # makes `import fastapi` fail
    result = CliRunner().invoke(app, ["serve", str(target_file), "--keys", str(keys_file)])
    assert result.exit_code == 1
    assert "pip install 'activethief[serve]'" in result.output and "fastapi" in result.output
