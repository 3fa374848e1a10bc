"""The prediction service without the web framework: authenticate a key, then answer an infer request
within the key's policy (defence, output mode, rate limit, budget, PRADA), billing each image once.

Order of checks for an infer request: key (401) -> body size (413) -> valid request (400/413) -> a key
PRADA flagged, with `prada_refuse` (403) -> an id answered before is replayed from the record, free (409
if its images differ) -> rate limit (429) -> budget (402) -> predict -> the key's defence, then its
output mode -> bill and record atomically (402 if a racing request spent the budget first) -> PRADA
observes the answered images.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from activethief import __version__
from activethief.errors import ConfigError
from activethief.oracle.defences import SeededDefence
from activethief.serve.keys import KeyPolicy, KeyRing
from activethief.serve.metrics import Metrics
from activethief.serve.monitors import PradaRefused, PradaWatch
from activethief.serve.protocol import (
    DEFAULT_INPUT_SHAPE,
    INPUT_NAME,
    LABEL,
    PROBABILITIES,
    EncodedResponse,
    ProtocolError,
    encode_infer_response,
    input_shape_of,
    parse_infer_request,
)
from activethief.serve.ratelimit import TokenBucket
from activethief.serve.state import BudgetRefused, UsageStore
from activethief.training import predict_proba

log = logging.getLogger("activethief.serve")

DEFAULT_MAX_BATCH = 1000
DEFAULT_MAX_BYTES = 32 * 1024 * 1024
INPUT_DATATYPES = ("FP32", "UINT8")  # FP32 in [0, 1] is the published one; UINT8 0..255 is accepted too


class ServeError(Exception):
    """A refusal: HTTP status, a message for the client, extra JSON fields and headers."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> None:
        self.status, self.message = status, message
        self.headers = headers or {}
        self.extra = extra or {}
        super().__init__(message)

    def body(self) -> dict[str, Any]:
        return {"error": self.message, **self.extra}


PREDICT_BATCH = 128  # images per forward pass: bounds the activations' memory of a 1,000-image request


@dataclass(frozen=True)
class ServeConfig:
    """Server limits and names. `max_batch`: images per request; `max_bytes`: request body size;
    `max_inflight_bytes`: request bodies read or parsed at once; `model_details`: publish the training
    dataset and architecture in the model metadata (off: only what the protocol needs)."""

    model_name: str
    model_version: str = "1"
    max_batch: int = DEFAULT_MAX_BATCH
    max_bytes: int = DEFAULT_MAX_BYTES
    max_inflight_bytes: int = 4 * DEFAULT_MAX_BYTES
    model_details: bool = False


class InferenceService:
    """One model behind API keys. Thread-safe: the web layer calls `infer` from a thread pool.

    Args:
        model: the target (logits out), evaluated in-process.
        metadata: the model file's metadata: `num_classes` required; `input_shape` [C, H, W] (C = 1 or 3,
            H, W >= 8; default: the module's own `input_shape` attribute, else [1, 28, 28]) is what
            requests must send and what the metadata publishes;
            `dataset`, `arch`, `class_names` shown.
        keys: the accepted keys and their policies.
        store: persistent usage and idempotency records.
        config: model name and request limits.
        clock: monotonic seconds for the rate limiter (injectable for tests).
        seed: the server's seed for random defences (noise): each key draws from its own generator,
            seeded by it and the key's name, fresh for every request.
    """

    def __init__(
        self,
        model: nn.Module,
        metadata: dict[str, Any],
        keys: KeyRing,
        store: UsageStore,
        config: ServeConfig,
        *,
        clock: Callable[[], float] = time.monotonic,
        seed: int = 0,
    ) -> None:
        self.model = model.eval()
        self.metadata = metadata
        self.keys = keys
        self.store = store
        self.config = config
        self.num_classes = int(metadata["num_classes"])
        self.input_shape = _input_shape(metadata, model)
        _check_model_runs(self.model, self.input_shape, self.num_classes)
        self.metrics = Metrics(gauges=self._gauges)
        self.defences = {p.name: SeededDefence(p.defence, key_generator(seed, p.name)) for p in keys}
        self.prada = PradaWatch(keys, self.metrics)
        self._buckets: dict[str, TokenBucket] = {}
        for policy in keys:
            capacity = policy.bucket_size(config.max_batch)
            if policy.rate is not None and capacity is not None:
                self._buckets[policy.name] = TokenBucket(policy.rate, capacity, clock=clock)

    # --- auth -----------------------------------------------------------------------------------
    def authenticate(self, authorization: str | None) -> KeyPolicy:
        """The key's policy from an `Authorization: Bearer KEY` header, or a 401."""
        challenge = {"WWW-Authenticate": 'Bearer realm="activethief"'}
        if not authorization:
            raise ServeError(
                401, "missing API key: send the header 'Authorization: Bearer YOUR_KEY'", headers=challenge
            )
        scheme, _, secret = authorization.strip().partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ServeError(
                401, "malformed Authorization header: use 'Authorization: Bearer YOUR_KEY'", headers=challenge
            )
        policy = self.keys.identify(secret.strip())
        if policy is None:
            raise ServeError(401, "invalid API key", headers=challenge)
        return policy

    def authorize_metrics(self, authorization: str | None) -> KeyPolicy:
        """The policy of an admin key (may read /metrics), or a 401/403."""
        policy = self.authenticate(authorization)
        if not policy.admin:
            raise ServeError(
                403,
                f"key {policy.name!r} may not read /metrics (it shows every key's usage); use a key with "
                "`admin = true`, or the server's separate metrics address (--metrics-port)",
            )
        return policy

    # --- metadata -------------------------------------------------------------------------------
    def check_model(self, name: str, version: str | None = None) -> None:
        if name != self.config.model_name or version not in (None, self.config.model_version):
            wanted = name if version is None else f"{name} version {version}"
            raise ServeError(
                404,
                f"unknown model {wanted!r}; this server serves {self.config.model_name!r} "
                f"version {self.config.model_version}",
            )

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": "activethief",
            "version": __version__,
            "extensions": ["binary_tensor_data", "classification"],
        }

    def model_metadata(self, policy: KeyPolicy) -> dict[str, Any]:
        """OIP model metadata: the protocol's fields, class names, and in `parameters` this key's own
        output mode, budget, usage and limits (never another key's). The training dataset, architecture
        and framework are shown only with `model_details`."""
        used = self.store.used(policy.name)
        params: dict[str, Any] = {
            "output_mode": str(policy.mode),
            "hard_labels": policy.mode.hard,
            "num_classes": self.num_classes,
            "max_batch_size": self.config.max_batch,
            "max_request_bytes": self.config.max_bytes,
            "budget_used": used,
            "input_datatypes": ",".join(INPUT_DATATYPES),
        }
        if policy.budget is not None:
            params.update(budget=policy.budget, budget_left=max(0, policy.budget - used))
        if policy.rate is not None:
            params.update(rate_limit=policy.rate, rate_burst=policy.bucket_size(self.config.max_batch))
        if self.config.model_details:
            for name in ("dataset", "arch"):
                if isinstance(self.metadata.get(name), str):
                    params[name] = self.metadata[name]
        names = self.metadata.get("class_names")
        if isinstance(names, list):
            params["class_names"] = ",".join(str(n) for n in names)
        return {
            "name": self.config.model_name,
            "versions": [self.config.model_version],
            "platform": "pytorch" if self.config.model_details else "",
            "inputs": [{"name": INPUT_NAME, "datatype": "FP32", "shape": [-1, *self.input_shape]}],
            "outputs": [
                {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, self.num_classes]},
                {"name": LABEL, "datatype": "INT64", "shape": [-1]},
            ],
            "parameters": params,
        }

    # --- inference ------------------------------------------------------------------------------
    def infer(
        self, policy: KeyPolicy, body: bytes | bytearray, header_length: str | None = None
    ) -> EncodedResponse:
        """Answer one infer request for `policy`'s key, or raise a ServeError saying why not."""
        try:
            request = parse_infer_request(
                body,
                header_length=header_length,
                max_images=self.config.max_batch,
                num_classes=self.num_classes,
                input_shape=self.input_shape,
            )
        except ProtocolError as exc:
            self.metrics.count(
                "activethief_images_refused_total",
                key=policy.name,
                reason="too_large" if exc.status == 413 else "invalid",
            )
            raise ServeError(exc.status, exc.message) from None
        count = len(request.images)
        try:
            self.prada.check(policy, count)
        except PradaRefused as exc:
            raise ServeError(403, exc.message, extra={"flagged_by": "prada"}) from None
        fingerprint = request.fingerprint() if request.request_id is not None else ""
        if request.request_id is not None:
            earlier = self.store.lookup(policy.name, request.request_id)
            if earlier is not None:
                return self._replay(
                    policy,
                    request.request_id,
                    fingerprint,
                    earlier.fingerprint,
                    earlier.answers,
                    request.outputs,
                )
        self._check_rate(policy, count)
        used = self.store.used(policy.name)
        if policy.budget is not None and used + count > policy.budget:  # refuse before computing
            raise self._budget_refusal(policy, count, used)
        probs = self.defences[policy.name](
            predict_proba(self.model, request.images, batch_size=PREDICT_BATCH)
        )
        answers = policy.mode.apply(probs)
        try:
            earlier = self.store.charge(
                policy.name,
                count,
                budget=policy.budget,
                answers=answers,
                request_id=request.request_id,
                fingerprint=fingerprint,
            )
        except BudgetRefused as exc:  # a racing request spent the budget while we computed
            raise self._budget_refusal(policy, count, exc.used) from None
        if earlier is not None and request.request_id is not None:  # a racing duplicate of this id won
            return self._replay(
                policy, request.request_id, fingerprint, earlier.fingerprint, earlier.answers, request.outputs
            )
        self.metrics.count("activethief_images_served_total", count, key=policy.name)
        self.prada.observe(policy, request.images, probs.argmax(1))
        return encode_infer_response(
            answers,
            request.outputs,
            model_name=self.config.model_name,
            model_version=self.config.model_version,
            request_id=request.request_id,
        )

    def _replay(
        self,
        policy: KeyPolicy,
        request_id: str,
        fingerprint: str,
        recorded: str,
        answers: np.ndarray,
        outputs: list[Any],
    ) -> EncodedResponse:
        if fingerprint != recorded:
            self.metrics.count(
                "activethief_images_refused_total", len(answers), key=policy.name, reason="invalid"
            )
            raise ServeError(
                409,
                f"request id {request_id!r} was already used for different images; "
                "use a new id for a new request",
            )
        self.metrics.count("activethief_images_replayed_total", len(answers), key=policy.name)
        return encode_infer_response(
            answers,
            outputs,
            model_name=self.config.model_name,
            model_version=self.config.model_version,
            request_id=request_id,
        )

    def _check_rate(self, policy: KeyPolicy, count: int) -> None:
        bucket = self._buckets.get(policy.name)
        if bucket is None:
            return
        if count > bucket.capacity:
            self.metrics.count("activethief_images_refused_total", count, key=policy.name, reason="too_large")
            raise ServeError(
                413,
                f"{count} images in one request exceed this key's rate-limit burst of "
                f"{bucket.capacity:g} images; send at most {int(bucket.capacity)} per request",
            )
        wait = bucket.take(count)
        if wait > 0:
            self.metrics.count("activethief_images_refused_total", count, key=policy.name, reason="rate")
            retry = TokenBucket.retry_after(wait)
            raise ServeError(
                429,
                f"rate limit of {policy.rate:g} images/s exceeded; retry after {retry} s",
                headers={"Retry-After": str(retry)},
                extra={"retry_after": retry},
            )

    def _budget_refusal(self, policy: KeyPolicy, count: int, used: int) -> ServeError:
        budget = policy.budget or 0
        self.metrics.count("activethief_images_refused_total", count, key=policy.name, reason="budget")
        log.info(
            "key %s: refused %d images, budget exhausted (%d of %d used)", policy.name, count, used, budget
        )
        return ServeError(
            402,
            f"query budget exceeded: this key has used {used} of its {budget} images and the request "
            f"asks for {count} ({max(0, budget - used)} left); nothing was billed",
            extra={"budget": budget, "used": used, "requested": count},
        )

    def _gauges(self) -> dict[str, dict[str, float]]:
        usage = self.store.usage()
        return {
            "activethief_budget_used_images": {p.name: float(usage.get(p.name, 0)) for p in self.keys},
            "activethief_budget_images": {p.name: float(p.budget) for p in self.keys if p.budget is not None},
            **self.prada.gauges(),
        }


def key_generator(seed: int, name: str) -> np.random.Generator:
    """A key's own generator for random defences: the server's seed and the key's name, so one key's
    traffic never shifts another key's noise."""
    words = np.frombuffer(hashlib.sha256(name.encode("utf-8")).digest()[:8], dtype=np.uint32).tolist()
    return np.random.default_rng([seed, *words])


def _input_shape(metadata: dict[str, Any], model: nn.Module) -> tuple[int, int, int]:
    """The served model's (C, H, W) from its metadata, else the module's own `input_shape` (every model
    `models.build` makes has one), else MNIST's 1x28x28; a ConfigError if it cannot be served."""
    value = metadata.get("input_shape", getattr(model, "input_shape", None))
    if value is None:
        return DEFAULT_INPUT_SHAPE
    shape = input_shape_of(list(value) if isinstance(value, list | tuple) else value)
    if shape is None:
        raise ConfigError(
            f"the model's input_shape {value!r} cannot be served: give [C, H, W] with C = 1 or 3 "
            "(grayscale or RGB) and H, W at least 8"
        )
    return shape


def _check_model_runs(model: nn.Module, input_shape: tuple[int, int, int], num_classes: int) -> None:
    """Refuse to start (ConfigError) when the model cannot take its declared input shape, or answers the
    wrong number of classes: found here, not as a 500 on every request."""
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    try:
        with torch.no_grad():
            out = model(torch.zeros((1, *input_shape), dtype=torch.float32, device=device))
    except Exception as exc:  # a shape mismatch raises RuntimeError, a custom module anything
        raise ConfigError(
            f"the model fails on one image of its declared input shape {list(input_shape)} "
            f"({type(exc).__name__}: {exc}); set the metadata's input_shape to the shape it takes"
        ) from None
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (1, num_classes):
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ConfigError(
            f"the model answers {got} for one image of shape {list(input_shape)}; expected logits "
            f"[1, {num_classes}] (num_classes {num_classes})"
        )
