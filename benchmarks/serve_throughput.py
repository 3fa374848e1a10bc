"""Throughput and latency of `activethief serve` on loopback, and the cost of stealing over HTTP.

Starts `activethief serve` as a separate process on 127.0.0.1 (a free port) with a cnn2 target, then
for 1, 8 and 32 concurrent clients and 1 to 1,000 images per request measures images/s and p50/p99
latency (binary tensors, as HttpOracle sends them; one JSON row for comparison). Finally runs the
same small steal in-process and over HTTP and prints the ratio of their wall times.

Run: OMP_NUM_THREADS=2 python benchmarks/serve_throughput.py [--seconds S] [--quick]
Prints figures only.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np

from activethief import ModelOracle, models, steal
from activethief.oracle.http import HttpOracle
from activethief.training import FitConfig

KEY = "bench-secret-key-000000"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _body(images: np.ndarray, binary: bool) -> tuple[bytes, dict[str, str]]:
    tensor: dict[str, object] = {"name": "images", "datatype": "FP32", "shape": list(images.shape)}
    output = {"name": "probabilities", "parameters": {"binary_data": binary}}
    if not binary:
        tensor["data"] = images.reshape(-1).tolist()
        return json.dumps({"inputs": [tensor], "outputs": [output]}).encode(), {
            "Content-Type": "application/json"
        }
    raw = images.astype("<f4").tobytes()
    tensor["parameters"] = {"binary_data_size": len(raw)}
    header = json.dumps({"inputs": [tensor], "outputs": [output]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def measure(
    url: str, clients: int, per_request: int, seconds: float, binary: bool = True
) -> dict[str, float]:
    """Images/s and latency percentiles with `clients` threads, each sending requests back to back."""
    images = np.random.default_rng(0).random((per_request, 1, 28, 28), dtype=np.float32)
    content, headers = _body(images, binary)
    latencies: list[float] = []
    lock = threading.Lock()
    start_gate = threading.Barrier(clients + 1)

    def client() -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {KEY}", **headers}, timeout=600) as http:
            http.post(url, content=content).raise_for_status()  # warm the connection
            start_gate.wait()
            deadline = time.perf_counter() + seconds
            while True:  # at least one request each, however slow
                began = time.perf_counter()
                http.post(url, content=content).raise_for_status()
                with lock:
                    latencies.append(time.perf_counter() - began)
                if time.perf_counter() >= deadline:
                    break

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    start_gate.wait()
    started = time.perf_counter()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    ms = np.array(latencies) * 1000
    return {
        "requests": len(latencies),
        "images_per_s": len(latencies) * per_request / elapsed,
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
    }


def steal_ratio(model_url: str, target: Path, pool_size: int, repeats: int = 2) -> tuple[float, float]:
    """Best wall seconds of the same small steal in-process and over HTTP (alternating, after a warm-up)."""
    rng = np.random.default_rng(1)
    pool = rng.random((pool_size, 1, 28, 28), dtype=np.float32)
    pool[pool < 0.8] = 0.0
    run = {"budget": 600, "batch_size": 100, "seed": 0, "quiet": True, "fit": FitConfig(epochs=1)}
    steal(ModelOracle(target), pool[:200], **{**run, "budget": 100})  # type: ignore[arg-type]
    local, remote = float("inf"), float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        steal(ModelOracle(target), pool, **run)  # type: ignore[arg-type]
        local = min(local, time.perf_counter() - began)
        oracle = HttpOracle(model_url, api_key=KEY)
        began = time.perf_counter()
        steal(oracle, pool, **run)  # type: ignore[arg-type]
        remote = min(remote, time.perf_counter() - began)
        oracle.close()
    return local, remote


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="measuring time per configuration")
    parser.add_argument("--quick", action="store_true", help="fewer configurations (1, 100, 1000 images)")
    parser.add_argument("--pool", type=int, default=2000, help="pool size of the steal comparison")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    target = folder / "target.pt"
    models.save(models.build("cnn2", 10, seed=0), target, arch="cnn2", num_classes=10, dataset="mnist")
    (folder / "keys.toml").write_text(f'[keys.bench]\nkey = "{KEY}"\n')
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "activethief.cli", "serve", str(target), "--keys", str(folder / "keys.toml"),
         "--port", str(port), "--state", str(folder / "state.sqlite"), "--log-level", "warning"],
        env=os.environ.copy(),
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(600):
            try:
                if httpx.get(f"{base}/v2/health/ready", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.1)
        url = f"{base}/v2/models/mnist/infer"
        sizes = [1, 100, 1000] if args.quick else [1, 10, 100, 1000]
        threads = os.environ.get("OMP_NUM_THREADS", "all")
        print(f"activethief serve on loopback, cnn2, OMP_NUM_THREADS={threads}, {os.cpu_count()} CPUs")
        columns = (
            ("clients", 7),
            ("images/req", 10),
            ("format", 6),
            ("requests", 8),
            ("images/s", 10),
            ("p50 ms", 8),
        )
        print(" ".join(f"{name:>{width}}" for name, width in (*columns, ("p99 ms", 8))))
        rows = [(c, n, True) for c in (1, 8, 32) for n in sizes] + [(1, 100, False)]
        for clients, per_request, binary in rows:
            r = measure(url, clients, per_request, args.seconds, binary)
            kind = "binary" if binary else "json"
            print(f"{clients:>7} {per_request:>10} {kind:>6} {r['requests']:>8.0f} "
                  f"{r['images_per_s']:>10.0f} {r['p50_ms']:>8.1f} {r['p99_ms']:>8.1f}")  # fmt: skip
        local, remote = steal_ratio(f"{base}/v2/models/mnist", target, args.pool)
        print(f"\nsteal (pool {args.pool}, budget 600, batch 100): in-process {local:.2f} s, "
              f"over HTTP {remote:.2f} s, ratio {remote / local:.2f}")  # fmt: skip
    finally:
        server.send_signal(signal.SIGINT)
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
