"""The target as a prediction service: Open Inference Protocol over HTTP, API keys with per-key output
mode, budget and rate limit, idempotent request ids, Prometheus metrics.

The web layer needs the `serve` extra (`pip install 'activethief[serve]'`); it is imported only when
`create_app`, `build_service` or `serve` is used, so the core package works without it.
"""

from __future__ import annotations

from typing import Any

from activethief.serve.keys import KeyPolicy, KeyRing, hash_key, load_keys
from activethief.serve.state import UsageStore

__all__ = [
    "KeyPolicy",
    "KeyRing",
    "UsageStore",
    "build_service",
    "create_app",
    "hash_key",
    "load_keys",
    "serve",
]

_LAZY = {"build_service", "create_app", "serve"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from activethief.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'activethief.serve' has no attribute {name!r}")
