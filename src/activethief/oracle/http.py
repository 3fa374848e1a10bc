"""An oracle over a prediction API that speaks the Open Inference Protocol (KServe V2 / Triton REST),
such as `activethief serve`: batched requests, retries with backoff, idempotent request ids.

Nothing is paid twice: each request carries the ledger's request id as the protocol's `id`; the ledger
records it before sending, so after a crash `Oracle.recover` replays it with the same id, and the server
answers from its record without billing again. Retries after timeouts reuse the id the same way.

The input tensor's name, shape [-1, C, H, W] and datatype (FP32, FP64, FP16, or UINT8, sent as
round(255 * x)) are read from the model metadata when the oracle opens. A server whose metadata lists no
input shape is taken to serve MNIST's 1x28x28 (with a warning) unless `input_shape=` says otherwise; a
published shape that is not [-1, C, H, W] with C = 1 or 3 and H, W >= 8, or that differs from
`input_shape=`, is an OracleError.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from activethief.errors import BudgetExceededError, OracleError
from activethief.oracle.base import Oracle
from activethief.oracle.ledger import Ledger
from activethief.oracle.modes import OutputMode

API_KEY_ENV = "ACTIVETHIEF_API_KEY"
INPUT_NAME = "images"
OUTPUT_NAME = "probabilities"
DEFAULT_INPUT_SHAPE = (1, 28, 28)
# Datatypes we can send images in: the wire dtype, and whether values are 0..255 integers.
_INPUT_DTYPES: dict[str, tuple[str, bool]] = {
    "FP32": ("<f4", False),
    "FP64": ("<f8", False),
    "FP16": ("<f2", False),
    "UINT8": ("u1", True),
}
DEFAULT_REQUEST_SIZE = 1000
DEFAULT_RETRY_FOR = 120.0  # seconds: rides out an ordinary server restart
DEFAULT_MAX_BACKOFF = 10.0


class RemoteRefusalError(OracleError):
    """The server refused a request (a 4xx other than 402 and 429); it billed nothing for it.

    `nothing_billed` is True when no part of the oracle's request was billed (the refused part was the
    first), so the request need not be replayed.
    """

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.nothing_billed = True


class RemoteBudgetExceededError(BudgetExceededError):
    """The server refused a request because the API key's budget would be exceeded (HTTP 402).

    `nothing_billed` is True when no part of the oracle's request was billed (the refused part was the
    first), so the request need not be replayed.
    """

    def __init__(self, used: int, asked: int, budget: int, detail: str) -> None:
        OracleError.__init__(
            self,
            f"the server refused the query: budget exhausted for this API key ({detail}). Ask the service "
            "operator for more budget, or set a client budget at most the key's budget.",
        )
        self.used, self.asked, self.budget = used, asked, budget
        self.nothing_billed = True


class HttpBackend:
    """Answers from an Open Inference Protocol endpoint; see `HttpOracle` for the arguments."""

    replayable = True  # the server treats request ids as idempotency keys

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        mode: str | OutputMode | None = None,
        input_shape: tuple[int, int, int] | None = None,
        timeout: float = 30.0,
        retry_for: float = DEFAULT_RETRY_FOR,
        max_retries: int | None = None,
        batch_size: int | None = None,
        binary: bool = True,
        backoff: float = 0.5,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        max_rate_wait: float = 3600.0,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if (
            (max_retries is not None and max_retries < 0)
            or timeout <= 0
            or retry_for < 0
            or backoff < 0
            or max_backoff < backoff
            or (batch_size is not None and batch_size < 1)
        ):
            raise OracleError(
                "need timeout > 0, retry_for >= 0, 0 <= backoff <= max_backoff, max_retries >= 0 (or None) "
                "and batch_size >= 1 (or None)"
            )
        base, url_model, self.version = _split_url(url)
        api_key = api_key if api_key is not None else os.environ.get(API_KEY_ENV)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.url = base
        self.binary = binary
        self.retry_for = retry_for
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_rate_wait = max_rate_wait
        self._sleep = sleep
        self._clock = clock
        self._jitter = random.Random()  # its own generator: jitter de-correlates clients, so not seeded
        self._client = httpx.Client(base_url=base, headers=headers, timeout=timeout, transport=transport)
        try:
            self.model = model or url_model or self._only_model()
            self.metadata: dict[str, Any] = self._get_json("GET", self._model_path())
            if not isinstance(self.metadata, dict):
                raise OracleError(
                    f"{self.url}{self._model_path()} did not answer model metadata (a JSON object)"
                )
            params = self.metadata.get("parameters") or {}
            self.num_classes = self._num_classes(params)
            self.remote_mode: OutputMode | None = self._discover_mode(params, mode)
            self.input_name, self.input_shape, self.input_datatype = self._discover_input(input_shape)
        except BaseException:
            self._client.close()
            raise
        server_max = params.get("max_batch_size")
        limit = server_max if isinstance(server_max, int) and server_max > 0 else None
        if batch_size is not None and limit is not None and batch_size > limit:
            self._client.close()
            raise OracleError(
                f"batch_size {batch_size} exceeds the server's limit of {limit} images per request"
            )
        self.request_size = batch_size or limit or DEFAULT_REQUEST_SIZE

    # --- the Backend protocol -------------------------------------------------------------------
    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        """Probabilities (the server's output mode applied) [n, C], sent in requests of `request_size`.

        A request larger than `request_size` goes out in parts with ids `{request_id}.{part}`, the same on
        every replay.
        """
        x = np.ascontiguousarray(images, dtype=np.float32)
        per_image = int(np.prod(self.input_shape))
        if x.ndim < 2 or x[0].size != per_image:
            raise OracleError(
                f"images of shape {list(x.shape)} do not fit this model's input "
                f"[n, {', '.join(str(d) for d in self.input_shape)}]"
            )
        x = x.reshape(len(x), *self.input_shape)
        if len(x) <= self.request_size:
            return self._infer(x, request_id)
        parts = []
        for part, start in enumerate(range(0, len(x), self.request_size)):
            try:
                parts.append(self._infer(x[start : start + self.request_size], f"{request_id}.{part}"))
            except (RemoteRefusalError, RemoteBudgetExceededError) as exc:
                exc.nothing_billed = part == 0
                raise
        return np.concatenate(parts)

    def close(self) -> None:
        self._client.close()

    # --- requests -------------------------------------------------------------------------------
    def _model_path(self) -> str:
        path = f"/v2/models/{self.model}"
        return path if self.version is None else f"{path}/versions/{self.version}"

    def _infer(self, x: np.ndarray, request_id: str) -> np.ndarray:
        output = {"name": OUTPUT_NAME, "parameters": {"binary_data": self.binary}}
        tensor: dict[str, Any] = {
            "name": self.input_name,
            "datatype": self.input_datatype,
            "shape": [len(x), *self.input_shape],
        }
        headers: dict[str, str] = {}
        wire, integral = _INPUT_DTYPES[self.input_datatype]
        values = (np.rint(x * 255.0) if integral else x).astype(wire)
        if self.binary:
            raw = values.tobytes()
            tensor["parameters"] = {"binary_data_size": len(raw)}
            header = json.dumps({"id": request_id, "inputs": [tensor], "outputs": [output]}).encode()
            content = header + raw
            headers["Inference-Header-Content-Length"] = str(len(header))
            headers["Content-Type"] = "application/octet-stream"
        else:
            tensor["data"] = values.reshape(-1).tolist()
            content = json.dumps({"id": request_id, "inputs": [tensor], "outputs": [output]}).encode()
            headers["Content-Type"] = "application/json"
        response = self._request("POST", f"{self._model_path()}/infer", content=content, headers=headers)
        return self._probabilities(response, len(x), request_id)

    def _probabilities(self, response: httpx.Response, count: int, request_id: str) -> np.ndarray:
        body = response.content
        length_header = response.headers.get("inference-header-content-length")
        try:
            length = int(length_header) if length_header is not None else len(body)
            doc = json.loads(body[:length])
            if doc.get("id", request_id) != request_id:
                raise OracleError(f"the server answered request {doc.get('id')!r} to request {request_id!r}")
            offset = length
            for tensor in doc["outputs"]:
                size = (tensor.get("parameters") or {}).get("binary_data_size")
                if tensor["name"] == OUTPUT_NAME:
                    if tensor["datatype"] != "FP32":
                        raise OracleError(
                            f"output {OUTPUT_NAME!r} has datatype {tensor['datatype']}, expected FP32"
                        )
                    if size is None:
                        values = np.asarray(tensor["data"], dtype=np.float32)
                    else:
                        values = np.frombuffer(body[offset : offset + int(size)], dtype="<f4")
                    return values.reshape(count, self.num_classes).astype(np.float32)
                offset += int(size or 0)
        except OracleError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise OracleError(
                f"{self.url} sent an infer response we cannot read ({type(exc).__name__}: {exc}); "
                f"expected output {OUTPUT_NAME!r} with {count}x{self.num_classes} FP32 values"
            ) from None
        raise OracleError(f"{self.url} sent no {OUTPUT_NAME!r} output")

    def _get_json(self, method: str, path: str) -> Any:
        response = self._request(method, path)
        try:
            return response.json()
        except ValueError:
            raise OracleError(
                f"{self.url}{path} did not answer JSON; is this an Open Inference Protocol server?"
            ) from None

    def _only_model(self) -> str:
        index = self._get_json("POST", "/v2/repository/index")
        names = [m.get("name") for m in index if isinstance(m, dict)] if isinstance(index, list) else []
        if len(names) != 1 or not isinstance(names[0], str):
            raise OracleError(
                f"{self.url} serves models {names}; name one in the URL, e.g. {self.url}/v2/models/NAME"
            )
        return names[0]

    def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        """Send with retries: 429 waits for Retry-After; 5xx and connection errors back off exponentially
        (capped at `max_backoff`, with jitter) for up to `retry_for` seconds from the first failure."""
        attempt, rate_waited = 0, 0.0
        first_failure: float | None = None
        while True:
            try:
                response = self._client.request(method, path, **kwargs)
            except httpx.TransportError as exc:  # refused, reset, timed out: the same id is safe to resend
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code == 429:
                    wait = _retry_after(response.headers.get("retry-after"))
                    if rate_waited + wait > self.max_rate_wait:
                        raise OracleError(
                            f"{self.url} kept rate-limiting us for {rate_waited:.0f} s; try again later"
                        )
                    self._sleep(wait)
                    rate_waited += wait
                    continue
                if response.status_code < 500:
                    return self._checked(response)
                problem = f"HTTP {response.status_code}: {_message(response)}"
            attempt += 1
            now = self._clock()
            first_failure = now if first_failure is None else first_failure
            waited = now - first_failure
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1)) * self._jitter.uniform(0.5, 1.0)
            out_of_tries = self.max_retries is not None and attempt > self.max_retries
            if out_of_tries or waited + delay > self.retry_for:
                raise OracleError(
                    f"{method} {self.url}{path} failed after {attempt} tries over {waited:.0f} s "
                    f"(retry_for={self.retry_for:g} s); last error: {problem}. Once the server answers "
                    "again, run the same command with --resume to continue the run: nothing already "
                    "answered is paid for twice"
                )
            self._sleep(delay)

    def _checked(self, response: httpx.Response) -> httpx.Response:
        code = response.status_code
        if code < 400:
            return response
        message = _message(response)
        if code == 401 or code == 403:
            raise RemoteRefusalError(
                code,
                f"{self.url} refused the API key ({code}: {message}); pass api_key= or set ${API_KEY_ENV}",
            )
        if code == 402:
            detail = _json_or_empty(response)
            raise RemoteBudgetExceededError(
                int(detail.get("used", 0)),
                int(detail.get("requested", 0)),
                int(detail.get("budget", 0)),
                message,
            )
        if code == 413:
            raise RemoteRefusalError(
                code, f"{self.url} says the request is too large ({message}); use a smaller batch_size"
            )
        if code == 404:
            raise RemoteRefusalError(
                code, f"{self.url}: {message} (HTTP 404); check the model name in the URL"
            )
        raise RemoteRefusalError(code, f"{self.url} refused the request (HTTP {code}): {message}")

    def _num_classes(self, params: dict[str, Any]) -> int:
        classes = params.get("num_classes")
        if not isinstance(classes, int):
            outputs = [o for o in self.metadata.get("outputs") or [] if o.get("name") == OUTPUT_NAME]
            shape = outputs[0].get("shape") if outputs else None
            classes = shape[-1] if isinstance(shape, list) and shape else None
        if not isinstance(classes, int) or classes < 2:
            raise OracleError(
                f"model {self.model!r} at {self.url} does not say its number of classes "
                f"(output {OUTPUT_NAME!r} of shape [-1, C])"
            )
        return classes

    def _discover_mode(self, params: dict[str, Any], wanted: str | OutputMode | None) -> OutputMode:
        published = params.get("output_mode")
        if not isinstance(published, str):
            return OutputMode.parse(wanted or "probs")  # a server that does not say: trust the caller
        mode = OutputMode.parse(published)
        if wanted is not None and OutputMode.parse(wanted) != mode:
            raise OracleError(
                f"this API key gets answers in mode {mode}, not {OutputMode.parse(wanted)}; "
                "drop the mode option (it is discovered) or use a key with that mode"
            )
        return mode

    def _discover_input(self, wanted: tuple[int, int, int] | None) -> tuple[str, tuple[int, int, int], str]:
        """(input name, (C, H, W), datatype) from the model metadata's `inputs`, checked against `wanted`."""
        where = f"model {self.model!r} at {self.url}"
        if wanted is not None and _image_shape(list(wanted)) is None:
            raise OracleError(f"input_shape {wanted!r} is not (C, H, W) with C = 1 or 3 and H, W at least 8")
        inputs = self.metadata.get("inputs")
        if inputs is None or inputs == []:
            return INPUT_NAME, self._unpublished_shape(where, wanted), "FP32"
        if not isinstance(inputs, list) or not all(isinstance(t, dict) for t in inputs):
            raise OracleError(f"{where} sent model metadata whose `inputs` is not a list of tensors")
        if len(inputs) == 1:
            tensor = inputs[0]
        else:
            named = [t for t in inputs if t.get("name") == INPUT_NAME]
            if len(named) != 1:
                names = [t.get("name") for t in inputs]
                raise OracleError(
                    f"{where} takes {len(inputs)} inputs {names}; activethief sends one image tensor "
                    f"(a model with one input, or one named {INPUT_NAME!r})"
                )
            tensor = named[0]
        name = tensor.get("name")
        if not isinstance(name, str) or not name:
            raise OracleError(f"{where} publishes an input without a name")
        datatype = tensor.get("datatype", "FP32")
        if datatype not in _INPUT_DTYPES:
            raise OracleError(
                f"{where} takes input {name!r} as {datatype!r}; activethief sends images as "
                f"{', '.join(_INPUT_DTYPES)}"
            )
        published = tensor.get("shape")
        if published is None:
            return name, self._unpublished_shape(where, wanted), datatype
        shape = _image_shape(published[1:]) if isinstance(published, list) and published else None
        if shape is None or published[0] != -1:
            raise OracleError(
                f"{where} publishes input {name!r} of shape {published!r}; activethief needs "
                "[-1, C, H, W] (a batch of images, C = 1 or 3 channels, H and W at least 8)"
            )
        if wanted is not None and tuple(wanted) != shape:
            raise OracleError(
                f"{where} takes images of shape {list(shape)}, not input_shape {list(wanted)}; drop "
                "input_shape (it is read from the server) or point at the model you meant"
            )
        return name, shape, datatype

    def _unpublished_shape(self, where: str, wanted: tuple[int, int, int] | None) -> tuple[int, int, int]:
        if wanted is not None:
            return (int(wanted[0]), int(wanted[1]), int(wanted[2]))
        warnings.warn(
            f"{where} does not publish its input shape; assuming 1x28x28 images (MNIST). Pass "
            "input_shape=(C, H, W) if it takes others",
            UserWarning,
            stacklevel=5,
        )
        return DEFAULT_INPUT_SHAPE


class HttpOracle(Oracle):
    """An oracle over an Open Inference Protocol API, e.g. `activethief serve`.

    Args:
        url: the model's URL, `http://host:port/v2/models/NAME`, or the server root (then `model=` or the
            server's only model).
        api_key: sent as `Authorization: Bearer KEY`; default `$ACTIVETHIEF_API_KEY`.
        model: the model name when `url` is the server root.
        mode: only for servers that do not publish the key's output mode (ours does; it must then agree).
        input_shape: (C, H, W) for servers that do not publish their input shape (default there: 1x28x28,
            with a warning); where the server publishes one, it is read from there and this must agree.
        budget: the most queries this client will pay for (None: the server's budget is the limit).
        ledger: a path (SQLite file), a `Ledger`, or None for an in-memory ledger.
        timeout: seconds per HTTP request.
        retry_for: seconds to keep resending after 5xx answers, timeouts or connection errors, counted
            from the first failure of a request (the default rides out an ordinary server restart);
            0: never resend. The final error says that `--resume` continues the run.
        max_retries: also stop after this many resends (None: only `retry_for` limits them).
        batch_size: images per HTTP request (default: the server's `max_batch_size`).
        binary: send and receive tensors in Triton's binary format (exact and fast) instead of JSON.
        backoff: seconds before the first resend; doubled each time (with jitter), at most `max_backoff`.
        max_backoff: the longest wait between two resends.
        transport: an httpx transport, for tests.
        sleep: how to wait (for tests).
        clock: monotonic seconds, for the retry window (for tests).

    Example:
        >>> oracle = HttpOracle("http://127.0.0.1:8080/v2/models/mnist", api_key="...", ledger="l.sqlite")
        >>> answers = oracle.query(pool[:100], keys=np.arange(100))
    """

    backend: HttpBackend

    def __init__(
        self,
        url: str,
        *,
        api_key: str | None = None,
        model: str | None = None,
        mode: str | OutputMode | None = None,
        input_shape: tuple[int, int, int] | None = None,
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
        timeout: float = 30.0,
        retry_for: float = DEFAULT_RETRY_FOR,
        max_retries: int | None = None,
        batch_size: int | None = None,
        binary: bool = True,
        backoff: float = 0.5,
        max_backoff: float = DEFAULT_MAX_BACKOFF,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        backend = HttpBackend(
            url,
            api_key=api_key,
            model=model,
            mode=mode,
            input_shape=input_shape,
            timeout=timeout,
            retry_for=retry_for,
            max_retries=max_retries,
            batch_size=batch_size,
            binary=binary,
            backoff=backoff,
            max_backoff=max_backoff,
            transport=transport,
            sleep=sleep,
            clock=clock,
        )
        try:
            super().__init__(backend, mode=backend.remote_mode or "probs", budget=budget, ledger=ledger)
            self._bound: Ledger | None = None
            self._bind_request_size()
        except Exception:
            backend.close()
            raise

    def query(self, images: np.ndarray, *, keys: np.ndarray | None = None, round: int = 0) -> np.ndarray:
        self._bind_request_size()
        return super().query(images, keys=keys, round=round)

    def recover(self, pool: np.ndarray) -> int:
        self._bind_request_size()
        return super().recover(pool)

    def _bind_request_size(self) -> None:
        """Replays must split requests as the first attempt did, or their part ids would differ.

        Checked against whichever ledger the oracle holds now (`steal` may swap in the run's ledger).
        """
        if self._bound is self.ledger:
            return
        size = self.backend.request_size
        old = self.ledger.get_meta("http_request_size")
        if old is not None and int(old) != size:
            smallest = min(int(old), size)
            pending = [indices for _, indices, _ in self.ledger.pending()]
            pending += [items for _, _, items in self.ledger.pending_evaluations()]
            if any(len(indices) > smallest for indices in pending):
                raise OracleError(
                    f"ledger {self.ledger.path} has unfinished requests sent in parts of {old} images; "
                    f"resume with batch_size={old} so they replay without being billed twice"
                )
        self.ledger.set_meta("http_request_size", str(size))
        self._bound = self.ledger

    def close(self) -> None:
        self.backend.close()
        super().close()


def _split_url(url: str) -> tuple[str, str | None, str | None]:
    """(server root, model name or None, version or None) from a server or model URL."""
    if not url.startswith(("http://", "https://")):
        raise OracleError(f"target URL {url!r} must start with http:// or https://")
    root, sep, rest = url.rstrip("/").partition("/v2/models/")
    if not sep:
        return url.rstrip("/").removesuffix("/v2"), None, None
    parts = rest.split("/")
    if len(parts) == 1 and parts[0]:
        return root, parts[0], None
    if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
        return root, parts[0], parts[2]
    raise OracleError(f"cannot read a model from URL {url!r}; use http://HOST:PORT/v2/models/NAME")


def _image_shape(dims: Any) -> tuple[int, int, int] | None:
    """(C, H, W) from three integers with C = 1 or 3 and H, W >= 8, else None."""
    if not isinstance(dims, list) or len(dims) != 3 or not all(type(d) is int for d in dims):
        return None
    channels, height, width = dims
    if channels not in (1, 3) or height < 8 or width < 8:
        return None
    return channels, height, width


def _retry_after(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (seconds or an HTTP date); 1 s when absent or unreadable."""
    if value is None:
        return 1.0
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return 1.0
    return max(0.0, when.timestamp() - time.time())


def _json_or_empty(response: httpx.Response) -> dict[str, Any]:
    try:
        doc = response.json()
    except ValueError:
        return {}
    return doc if isinstance(doc, dict) else {}


def _message(response: httpx.Response) -> str:
    error = _json_or_empty(response).get("error")
    return str(error) if error else (response.text[:200] or response.reason_phrase)
