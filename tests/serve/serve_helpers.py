"""Helpers for the serve tests: the test keys, request builders and a live uvicorn server on 127.0.0.1."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from activethief.serve import create_app
from activethief.serve.app import uvicorn_config
from activethief.serve.connections import ConnectionLimits
from activethief.serve.service import InferenceService

KEYS = {
    "alice": "alice-secret-key-0001",
    "topk": "topk-secret-key-0002",
    "label": "label-secret-key-0003",
    "round": "round-secret-key-0004",
    "small": "small-secret-key-0005",
    "race": "race-secret-key-0006",
    "slow": "slow-secret-key-0007",
    "thief": "thief-secret-key-0008",
    "ops": "ops-admin-secret-key-0009",
}

KEYS_TOML = f"""
[keys.alice]
key = "{KEYS["alice"]}"

[keys.topk]
key = "{KEYS["topk"]}"
mode = "topk:3"

[keys.label]
key = "{KEYS["label"]}"
mode = "label"

[keys.round]
key = "{KEYS["round"]}"
mode = "round:1"

[keys.small]
key = "{KEYS["small"]}"
budget = 100

[keys.race]
key = "{KEYS["race"]}"
budget = 500

[keys.slow]
key = "{KEYS["slow"]}"
rate = 20
burst = 20

[keys.thief]
key = "{KEYS["thief"]}"
budget = 600

[keys.ops]
key = "{KEYS["ops"]}"
admin = true
"""


def auth(name: str) -> dict[str, str]:
    """The Authorization header for a test key."""
    return {"Authorization": f"Bearer {KEYS[name]}"}


def infer_body(images: np.ndarray, request_id: str | None = None, **extra: Any) -> dict[str, Any]:
    """A JSON infer request for float32 images [n, 1, 28, 28]."""
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "images",
                "datatype": "FP32",
                "shape": list(images.shape),
                "data": images.reshape(-1).tolist(),
            }
        ],
        **extra,
    }
    if request_id is not None:
        body["id"] = request_id
    return body


class LiveServer:
    """A uvicorn server for one service, in a daemon thread, on a free loopback port, configured as
    `serve()` configures it (guarded connections, our access log)."""

    def __init__(self, service: InferenceService, limits: ConnectionLimits | None = None) -> None:
        import uvicorn

        self.service = service
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(service, limits=limits)
        self.server = uvicorn.Server(uvicorn_config(self.app, log_level="info"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("test server did not start")
            time.sleep(0.01)

    @property
    def model_url(self) -> str:
        return f"{self.url}/v2/models/{self.service.config.model_name}"

    def used(self, key: str) -> int:
        return self.service.store.used(key)

    def stop(self) -> None:
        if self.thread.is_alive():
            self.server.should_exit = True
            self.thread.join(timeout=20)
        self.service.store.close()


def free_port() -> int:
    """A loopback port nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CliServer:
    """`activethief serve` as a real process (the CLI), on 127.0.0.1; its output goes to `log`."""

    def __init__(self, *args: str, log: Path, port: int | None = None) -> None:
        self.args = list(args)
        self.log = log
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, wait: bool = True) -> CliServer:
        command = [sys.executable, "-m", "activethief.cli", "serve", *self.args, "--port", str(self.port)]
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as out:  # a file, not a pipe: a full pipe would block the server
            self.proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout: float = 90) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            assert self.proc is not None and self.proc.poll() is None, "server exited: " + self.output()
            assert time.monotonic() < deadline, "server did not come up"
            time.sleep(0.1)

    def kill(self) -> None:
        """SIGKILL: no shutdown code runs, as in a crash."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> int:
        """SIGINT (Ctrl-C), a clean shutdown; returns the exit code."""
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
        return int(self.proc.wait(timeout=30))

    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""
