"""`open_oracle`: the one place a command turns a target argument (model file or URL) into an oracle."""

from __future__ import annotations

import os
from pathlib import Path

from activethief.errors import ConfigError
from activethief.oracle.base import Oracle
from activethief.oracle.ledger import Ledger


def is_remote(target: str) -> bool:
    """Whether a target argument names an HTTP(S) endpoint rather than a model file."""
    return target.startswith(("http://", "https://"))


def open_oracle(
    target: str,
    *,
    output_mode: str = "probs",
    budget: int | None = None,
    ledger: Ledger | Path | str | None = None,
    api_key_env: str | None = None,
    retry_for: float | None = None,
) -> Oracle:
    """An oracle for a local model file (`ModelOracle`) or an HTTP(S) Open Inference Protocol endpoint.

    Args:
        target: a model file written by `activethief.models.save`, or `http(s)://.../v2/models/NAME`.
        output_mode: what a local target reveals (`probs`, `topk:K`, `label`, `round:D`); an HTTP
            target applies its own policy.
        budget: the most queries the oracle answers (None: no limit of ours).
        ledger: where answers are recorded (None: in memory, until `steal` swaps in its run's ledger).
        api_key_env: the environment variable holding an HTTP target's API key.
        retry_for: seconds an HTTP target is retried while it is down (None: `HttpOracle`'s default).

    Raises:
        ConfigError: for a missing extra, an unset key variable, or a key given for a model file.
    """
    if is_remote(target):
        try:
            from activethief.oracle.http import HttpOracle
        except ModuleNotFoundError as exc:
            raise ConfigError(
                f"HTTP targets need the serve extra (missing module {exc.name}); "
                "install it with: pip install 'activethief[serve]'"
            ) from None
        api_key = None
        if api_key_env is not None:
            api_key = os.environ.get(api_key_env)
            if not api_key:
                raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is not set")
        if retry_for is None:
            return HttpOracle(target, api_key=api_key, budget=budget, ledger=ledger)
        return HttpOracle(target, api_key=api_key, budget=budget, ledger=ledger, retry_for=retry_for)
    if api_key_env is not None:
        raise ConfigError("--api-key-env is only for HTTP targets (a URL), not for a model file")
    from activethief.oracle.local import ModelOracle

    return ModelOracle(target, mode=output_mode, budget=budget, ledger=ledger)
