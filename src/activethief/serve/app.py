"""The web layer: Open Inference Protocol routes (FastAPI) over an InferenceService, and `serve()`.

Public without a key: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2` and
`GET /v2/models/{name}[/versions/{v}]/ready`. `GET /metrics` needs an admin key (or use the separate
metrics address, `serve(metrics_port=...)`). Everything else needs `Authorization: Bearer KEY`. Every
error is a JSON body `{"error": "..."}` with a 4xx status (503 when the server is saturated).

The access log (`activethief.serve.access`) never shows query strings, keys or unknown paths; a client
that disconnects mid-request is logged and counted as 499, never as a server error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, MutableMapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fastapi import FastAPI, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect
from torch import nn

from activethief import models
from activethief.errors import ConfigError
from activethief.serve.connections import (
    ACCEPT_FLOOD,
    ConnectionGuard,
    ConnectionLimits,
    RateLimitedLog,
    ensure_descriptors,
    guarded_protocol,
)
from activethief.serve.keys import KeyPolicy, KeyRing, load_keys
from activethief.serve.metrics import CONTENT_TYPE, DISCONNECTED
from activethief.serve.service import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BYTES,
    InferenceService,
    ServeConfig,
    ServeError,
)
from activethief.serve.state import UsageStore

log = logging.getLogger("activethief.serve")
access_log = logging.getLogger("activethief.serve.access")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_SCOPE_KEY = "activethief"  # per-request dict in the ASGI scope: key name and endpoint, for metrics
_KEY_PARAMETERS = {"api_key", "apikey", "api-key", "key", "token", "access_token", "auth", "authorization"}


class _ClientGone(Exception):
    """The client closed the connection before its request body arrived."""


def json_error(body: dict[str, Any], status: int, headers: Mapping[str, str] | None = None) -> Response:
    """A JSON error response; ASCII-escaped, so no client-sent text can make encoding it fail."""
    content = json.dumps(body, ensure_ascii=True, separators=(",", ":"), default=str).encode()
    return Response(content, status_code=status, headers=headers, media_type="application/json")


class InflightBytes:
    """Bounds the request bytes being read or parsed at once: a large body waits for room (or gets a
    503), so N large requests at once cost at most `limit` bytes of bodies, whatever N is."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.peak = 0
        self._room: asyncio.Condition | None = None

    @asynccontextmanager
    async def reserve(self, size: int, wait: float) -> AsyncIterator[None]:
        """Hold `size` bytes (at most the limit) for the block; TimeoutError after `wait` seconds."""
        size = min(size, self.limit)
        room = self._room = self._room or asyncio.Condition()
        async with room:
            await asyncio.wait_for(room.wait_for(lambda: self.used + size <= self.limit), wait)
            self.used += size
            self.peak = max(self.peak, self.used)
        try:
            yield
        finally:
            async with room:
                self.used -= size
                room.notify_all()


def build_service(
    target: nn.Module | Path | str,
    keys: KeyRing | Path | str,
    *,
    state: UsageStore | Path | str = ":memory:",
    model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_inflight_bytes: int | None = None,
    model_details: bool = False,
    clock: Callable[[], float] = time.monotonic,
    seed: int = 0,
) -> InferenceService:
    """An InferenceService from a model file (or module + metadata), a keys file and a state file.

    The input shape served is the metadata's `input_shape` [C, H, W] (a model file records it; for a
    module, pass it in `metadata`, or the module's `input_shape` attribute, default [1, 28, 28]); the
    model is run once on it at start, so a wrong shape is a ConfigError here, not a 500 per request.

    `max_inflight_bytes` (default 4 x `max_bytes`) bounds the request bodies read or parsed at once;
    `model_details` publishes the training dataset and architecture in the model metadata; `seed` seeds
    the keys' random defences (noise), fresh per request.
    """
    if isinstance(target, nn.Module):
        model, meta = target, dict(metadata or {})
        if "num_classes" not in meta:
            raise ConfigError("serving a module needs metadata with num_classes")
    else:
        model, meta = models.load(target)
        meta.update(metadata or {})
    ring = keys if isinstance(keys, KeyRing) else load_keys(keys)
    store = state if isinstance(state, UsageStore) else UsageStore(state)
    fallback = "model" if isinstance(target, nn.Module) else Path(target).stem
    name = model_name or str(meta.get("dataset") or fallback)
    if max_batch < 1 or max_bytes < 1024:
        raise ConfigError(f"max_batch must be >= 1 and max_bytes >= 1024; got {max_batch} and {max_bytes}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError(f"seed (--seed) must be a non-negative integer, got {seed!r}")
    inflight = 4 * max_bytes if max_inflight_bytes is None else max_inflight_bytes
    if inflight < max_bytes:
        raise ConfigError(f"max_inflight_bytes ({inflight}) must be at least max_bytes ({max_bytes})")
    config = ServeConfig(
        model_name=name,
        max_batch=max_batch,
        max_bytes=max_bytes,
        max_inflight_bytes=inflight,
        model_details=model_details,
    )
    return InferenceService(model, meta, ring, store, config, clock=clock, seed=seed)


def create_app(service: InferenceService, *, limits: ConnectionLimits | None = None) -> FastAPI:
    """The FastAPI application for a service (routes in the module docstring); `limits` time request
    bodies here and, through `uvicorn_config`, connections."""
    limits = limits or ConnectionLimits()
    app = FastAPI(
        title="activethief serve",
        version=service.server_metadata()["version"],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service
    app.state.guard = ConnectionGuard(limits)
    inflight = InflightBytes(service.config.max_inflight_bytes)
    app.state.inflight = inflight

    def tag(request: Request, endpoint: str, key: str | None = None) -> None:
        info = request.scope.setdefault(_SCOPE_KEY, {})
        info["endpoint"] = endpoint
        if key is not None:
            info["key"] = key

    async def authenticate(
        request: Request, endpoint: str, check: Callable[[str | None], KeyPolicy] | None = None
    ) -> KeyPolicy:
        tag(request, endpoint)
        try:
            policy = (check or service.authenticate)(request.headers.get("authorization"))
        except ServeError as exc:
            if exc.status == 401 and _key_in_query(request.scope.get("query_string", b"")):
                exc.message += (
                    "; API keys go in the Authorization header, never in the URL (URLs end up in logs): "
                    "the query string is not read"
                )
            raise
        tag(request, endpoint, policy.name)
        return policy

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> Response:
        return json_error(exc.body(), exc.status, exc.headers)

    @app.exception_handler(_ClientGone)
    async def client_gone(_: Request, exc: _ClientGone) -> Response:
        return Response(status_code=int(DISCONNECTED))  # nobody reads it: it labels the metrics and log

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return json_error({"error": message}, exc.status_code, exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> Response:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return json_error({"error": "internal server error"}, 500)

    @app.get("/v2/health/live")
    async def live(request: Request) -> dict[str, bool]:
        tag(request, "health")
        return {"live": True}

    @app.get("/v2/health/ready")
    async def ready(request: Request) -> dict[str, bool]:
        tag(request, "health")
        return {"ready": True}

    @app.get("/v2")
    async def server_metadata(request: Request) -> dict[str, Any]:
        tag(request, "metadata")
        return service.server_metadata()

    @app.get("/v2/models/{name}/ready")
    @app.get("/v2/models/{name}/versions/{version}/ready")
    async def model_ready(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
        tag(request, "health")
        service.check_model(name, version)
        return {"name": name, "ready": True}

    @app.get("/v2/models/{name}")
    @app.get("/v2/models/{name}/versions/{version}")
    async def model_metadata(request: Request, name: str, version: str | None = None) -> dict[str, Any]:
        policy = await authenticate(request, "metadata")
        service.check_model(name, version)
        return await run_in_threadpool(service.model_metadata, policy)

    @app.post("/v2/repository/index")
    async def repository_index(request: Request) -> list[dict[str, str]]:
        await authenticate(request, "metadata")
        config = service.config
        return [{"name": config.model_name, "version": config.model_version, "state": "READY"}]

    @app.post("/v2/models/{name}/infer")
    @app.post("/v2/models/{name}/versions/{version}/infer")
    async def infer(request: Request, name: str, version: str | None = None) -> Response:
        policy = await authenticate(request, "infer")
        service.check_model(name, version)
        if request.headers.get("content-encoding", "identity").lower() != "identity":
            raise ServeError(415, "compressed request bodies are not supported; send them uncompressed")
        limit = service.config.max_bytes
        declared = _declared_length(request, limit)
        try:
            async with inflight.reserve(declared or limit, wait=limits.body_timeout):
                body = await _read_body(request, limit, limits.body_timeout)
                encoded = await run_in_threadpool(
                    service.infer, policy, body, request.headers.get("inference-header-content-length")
                )
        except TimeoutError:
            raise ServeError(
                503,
                "the server is busy with other large requests; retry in a second",
                headers={"Retry-After": "1"},
            ) from None
        headers = (
            {}
            if encoded.header_length is None
            else {"Inference-Header-Content-Length": str(encoded.header_length)}
        )
        return Response(encoded.body, media_type=encoded.media_type, headers=headers)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        await authenticate(request, "metrics", service.authorize_metrics)
        text = await run_in_threadpool(service.metrics.render)
        return Response(text, media_type=CONTENT_TYPE)

    app.add_middleware(_MetricsMiddleware, service=service)
    return app


def _key_in_query(query: bytes) -> bool:
    """Whether the query string has a parameter that looks like an API key (never logged nor read)."""
    pairs = parse_qsl(query.decode("latin-1"), keep_blank_values=True)
    return any(name.strip().lower() in _KEY_PARAMETERS for name, _ in pairs)


def _too_large(limit: int) -> ServeError:
    return ServeError(
        413,
        f"request body exceeds this server's limit of {limit} bytes; send fewer images "
        "per request (or the binary tensor format)",
    )


def _declared_length(request: Request, limit: int) -> int | None:
    """The Content-Length, refused at once (before any byte is read) when over the limit."""
    declared = request.headers.get("content-length")
    if declared is None or not declared.isdigit():
        return None
    if int(declared) > limit:
        raise _too_large(limit)
    return int(declared)


async def _read_body(request: Request, limit: int, timeout: float) -> bytearray:
    """The body in one growing buffer (no list of chunks to join: one copy, not two), within
    `timeout` seconds (else 408) and `limit` bytes (else 413)."""
    body = bytearray()
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                if len(body) + len(chunk) > limit:
                    raise _too_large(limit)
                body += chunk
    except TimeoutError:
        raise ServeError(
            408,
            f"the request body did not arrive within {timeout:g} s; send it faster or in smaller requests",
            headers={"Connection": "close"},
        ) from None
    except ClientDisconnect:
        raise _ClientGone() from None
    return body


class _MetricsMiddleware:
    """Counts every request by key name, endpoint and status code, and observes its latency."""

    def __init__(self, app: ASGIApp, service: InferenceService) -> None:
        self.app = app
        self.service = service

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        info: dict[str, str] = {"endpoint": "other", "key": "-"}
        scope[_SCOPE_KEY] = info

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - started
            metrics = self.service.metrics
            metrics.count(
                "activethief_requests_total", key=info["key"], endpoint=info["endpoint"], code=str(status)
            )
            metrics.observe_latency(elapsed, endpoint=info["endpoint"])
            _log_access(scope, info, status, elapsed)


def _log_access(scope: Scope, info: dict[str, str], status: int, elapsed: float) -> None:
    """One access-log line: client, method, path (no query string; unknown paths not shown), status,
    key name, milliseconds."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    client = scope.get("client")
    where = f"{client[0]}:{client[1]}" if client else "-"
    path = scope.get("path", "") if info["endpoint"] != "other" else "(unknown path)"
    method = str(scope.get("method", "-"))[:16]
    note = " client disconnected" if str(status) == DISCONNECTED else ""
    access_log.info(
        '%s - "%s %s HTTP/%s" %d key=%s %.1f ms%s',
        where,
        ascii(method)[1:-1],
        ascii(path)[1:-1],
        scope.get("http_version", "1.1"),
        status,
        info["key"],
        elapsed * 1000,
        note,
    )


def uvicorn_config(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
) -> Any:
    """The uvicorn.Config that serves `app` under its connection limits (guarded h11 protocol, keep-alive
    timeout), with uvicorn's own access log off (ours never shows query strings)."""
    import uvicorn

    guard: ConnectionGuard = app.state.guard
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        http=guarded_protocol(guard),
        timeout_keep_alive=max(1, round(guard.limits.keep_alive)),
        access_log=False,
        server_header=False,
        lifespan="off",
        log_config=None,  # the CLI (or the embedding program) configures logging
    )


def start_metrics_server(service: InferenceService, host: str, port: int) -> Any:
    """Serve `/metrics` without a key on a separate address (prometheus_client's own server, in a
    thread), for a network only the monitoring system reaches; returns the WSGI server."""
    from prometheus_client import start_http_server

    server, _thread = start_http_server(port, addr=host, registry=service.metrics.registry)
    return server


def install_log_limits() -> RateLimitedLog:
    """Rate-limit asyncio's accept() flood message (one line per 10 s, no traceback)."""
    flood = RateLimitedLog(ACCEPT_FLOOD)
    logging.getLogger("asyncio").addFilter(flood)
    return flood


def serve(
    service: InferenceService,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
    limits: ConnectionLimits | None = None,
    metrics_host: str = "127.0.0.1",
    metrics_port: int | None = None,
) -> None:
    """Run the service with uvicorn until interrupted (Ctrl-C).

    Args:
        limits: timeouts and the connection cap (the cap is lowered to fit the open-files limit).
        metrics_host, metrics_port: also serve `/metrics` without a key there (None: only with an
            admin key, on the main address).
    """
    import uvicorn

    limits = limits or ConnectionLimits()
    fits = ensure_descriptors(limits.max_connections)
    if fits < limits.max_connections:
        log.warning("only %d connections fit the open-files limit; capping connections there", fits)
        limits = ConnectionLimits(**{**limits.__dict__, "max_connections": fits})
    install_log_limits()

    log.info(
        "serving model %r (%d classes, input %s) to %d keys (%s) on http://%s:%d",
        service.config.model_name,
        service.num_classes,
        "x".join(str(d) for d in service.input_shape),
        len(service.keys),
        ", ".join(service.keys.names),
        host,
        port,
    )
    for policy in service.keys:
        watch = "" if policy.prada is None else f", PRADA delta {policy.prada:g}"
        if watch and policy.prada_refuse:
            watch += " (refused once flagged)"
        if str(policy.defence) != "none" or watch:
            log.info("key %s: defence %s%s", policy.name, policy.defence, watch)
    metrics_server = None
    if metrics_port is not None:
        metrics_server = start_metrics_server(service, metrics_host, metrics_port)
        log.info("metrics on http://%s:%d/metrics (no key: keep this address private)", metrics_host,
                 metrics_port)  # fmt: skip
    app = create_app(service, limits=limits)
    config = uvicorn_config(app, host=host, port=port, log_level=log_level)
    try:
        uvicorn.Server(config).run()
    except KeyboardInterrupt:  # uvicorn re-raises the Ctrl-C it handled: a clean shutdown, exit 0
        pass
    finally:
        if metrics_server is not None:
            metrics_server.shutdown()
        service.store.close()
