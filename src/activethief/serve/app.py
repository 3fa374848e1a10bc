"""The web layer: Open Inference Protocol routes (FastAPI) over an InferenceService, and `serve()`.

Public without a key: `GET /v2/health/live`, `GET /v2/health/ready`, `GET /v2`,
`GET /v2/models/{name}[/versions/{v}]/ready` and `GET /metrics`. Everything else needs
`Authorization: Bearer KEY`. Every error is a JSON body `{"error": "..."}` with a 4xx status.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from torch import nn

from activethief import models
from activethief.errors import ConfigError
from activethief.serve.keys import KeyRing, load_keys
from activethief.serve.metrics import CONTENT_TYPE
from activethief.serve.service import (
    DEFAULT_MAX_BATCH,
    DEFAULT_MAX_BYTES,
    InferenceService,
    ServeConfig,
    ServeError,
)
from activethief.serve.state import UsageStore

log = logging.getLogger("activethief.serve")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_SCOPE_KEY = "activethief"  # per-request dict in the ASGI scope: key name and endpoint, for metrics


def build_service(
    target: nn.Module | Path | str,
    keys: KeyRing | Path | str,
    *,
    state: UsageStore | Path | str = ":memory:",
    model_name: str | None = None,
    metadata: dict[str, Any] | None = None,
    max_batch: int = DEFAULT_MAX_BATCH,
    max_bytes: int = DEFAULT_MAX_BYTES,
    clock: Callable[[], float] = time.monotonic,
) -> InferenceService:
    """An InferenceService from a model file (or module + metadata), a keys file and a state file."""
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
    config = ServeConfig(model_name=name, max_batch=max_batch, max_bytes=max_bytes)
    return InferenceService(model, meta, ring, store, config, clock=clock)


def create_app(service: InferenceService) -> FastAPI:
    """The FastAPI application for a service (routes in the module docstring)."""
    app = FastAPI(
        title="activethief serve",
        version=service.server_metadata()["version"],
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )
    app.state.service = service

    def tag(request: Request, endpoint: str, key: str | None = None) -> None:
        info = request.scope.setdefault(_SCOPE_KEY, {})
        info["endpoint"] = endpoint
        if key is not None:
            info["key"] = key

    async def authenticate(request: Request, endpoint: str) -> Any:
        tag(request, endpoint)
        policy = service.authenticate(request.headers.get("authorization"))
        tag(request, endpoint, policy.name)
        return policy

    @app.exception_handler(ServeError)
    async def serve_error(_: Request, exc: ServeError) -> JSONResponse:
        return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        message = exc.detail if isinstance(exc.detail, str) else "request refused"
        return JSONResponse({"error": message}, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(Exception)
    async def internal_error(_: Request, exc: Exception) -> JSONResponse:
        log.error("internal error: %s: %s", type(exc).__name__, exc)
        return JSONResponse({"error": "internal server error"}, status_code=500)

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
        body = await _read_body(request, service.config.max_bytes)
        encoded = await run_in_threadpool(
            service.infer, policy, body, request.headers.get("inference-header-content-length")
        )
        headers = (
            {}
            if encoded.header_length is None
            else {"Inference-Header-Content-Length": str(encoded.header_length)}
        )
        return Response(encoded.body, media_type=encoded.media_type, headers=headers)

    @app.get("/metrics")
    async def metrics(request: Request) -> Response:
        tag(request, "metrics")
        text = await run_in_threadpool(service.metrics.render)
        return Response(text, media_type=CONTENT_TYPE)

    app.add_middleware(_MetricsMiddleware, service=service)
    return app


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    too_large = ServeError(
        413,
        f"request body exceeds this server's limit of {limit} bytes; send fewer images "
        "per request (or the binary tensor format)",
    )
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise too_large
        chunks.append(chunk)
    return b"".join(chunks)


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
            metrics = self.service.metrics
            metrics.count(
                "activethief_requests_total", key=info["key"], endpoint=info["endpoint"], code=str(status)
            )
            metrics.observe_latency(time.perf_counter() - started, endpoint=info["endpoint"])


def serve(
    service: InferenceService,
    *,
    host: str = "127.0.0.1",
    port: int = 8080,
    log_level: str = "info",
) -> None:
    """Run the service with uvicorn until interrupted (Ctrl-C)."""
    import uvicorn

    log.info(
        "serving model %r (%d classes) to %d keys (%s) on http://%s:%d",
        service.config.model_name,
        service.num_classes,
        len(service.keys),
        ", ".join(service.keys.names),
        host,
        port,
    )
    try:
        uvicorn.run(create_app(service), host=host, port=port, log_level=log_level, server_header=False)
    finally:
        service.store.close()
