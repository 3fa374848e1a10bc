"""The project's own chaos benchmark: `activethief serve` on loopback, tried as a hostile world would.

Three sections, each bounded in time and count, loopback only (127.0.0.1, a free port):

- `steal`: an HTTP steal (a separate process) SIGKILLed at N random moments, and the server SIGKILLed and
  restarted on the same state M times, resumed until done; then the verification table: images billed by
  the server, ledger rows, distinct pool indices, pending requests, billed twice, answers equal to the
  server's record.
- `hostile`: at least 1,000 hostile requests (random bytes, lying sizes, bad encodings, deep JSON, odd
  headers, surrogate ids, unknown fields, keys in the query string, early disconnects); prints status
  counts, server RSS before and after, and checks that no 5xx came back and no key reached the log.
- `memory`: server RSS per MB of request body for JSON (nested floats) and binary bodies, 1 and 4 at once.

Run: OMP_NUM_THREADS=1 python benchmarks/chaos.py [--sections steal,hostile,memory] [--kills 6]
     [--server-kills 1] [--budget 1500] [--hostile 1200] [--seed 0]
Prints figures only; never part of CI.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch

from activethief import models

KEY = "chaos-secret-key-0000001"
ADMIN = "chaos-admin-key-0000002"
KEYS_TOML = f"""
[keys.thief]
key = "{KEY}"

[keys.admin]
key = "{ADMIN}"
admin = true
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _rss_mb(pid: int) -> float:
    """Resident set size of a process in MB (Linux /proc)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


class Server:
    """`activethief serve` as a process on a free loopback port; output to a log file."""

    def __init__(self, target: Path, keys: Path, state: Path, log: Path, *extra: str) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.command = [
            sys.executable, "-m", "activethief.cli", "serve", str(target), "--keys", str(keys),
            "--state", str(state), "--port", str(self.port), *extra,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 120) -> Server:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v2/health/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError("server did not come up:\n" + self.log.read_text(errors="replace")[-3000:])

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


class RssSampler:
    """Samples a process's RSS every few milliseconds in a thread; `peak` is the highest seen."""

    def __init__(self, pid: int, every: float = 0.005) -> None:
        self.pid, self.every, self.peak = pid, every, 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(self.every)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()


def _make_target(folder: Path) -> tuple[Path, Path]:
    """An untrained cnn2 (confident, varied answers) and the keys file; no dataset needed."""
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / "target.pt"
    model = models.build("cnn2", 10, seed=0)
    last = [m for m in model.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():
        last.weight.mul_(30.0)
    models.save(model, target, arch="cnn2", num_classes=10, dataset="mnist")
    keys = folder / "keys.toml"
    keys.write_text(KEYS_TOML)
    return target, keys


# --- memory -----------------------------------------------------------------------------------------
def _json_body(images: np.ndarray) -> bytes:
    tensor = {"name": "images", "datatype": "FP32", "shape": list(images.shape), "data": images.tolist()}
    return json.dumps({"inputs": [tensor]}).encode()


def _binary_body(images: np.ndarray) -> tuple[bytes, dict[str, str]]:
    raw = images.astype("<f4").tobytes()
    tensor = {"name": "images", "datatype": "FP32", "shape": list(images.shape),
              "parameters": {"binary_data_size": len(raw)}}  # fmt: skip
    header = json.dumps({"inputs": [tensor]}).encode()
    return header + raw, {"Inference-Header-Content-Length": str(len(header))}


def memory_section(folder: Path, seed: int) -> list[dict[str, Any]]:
    """RSS growth per MB of request body, for JSON and binary bodies, 1 and 4 requests at once.

    Each row uses a fresh server, so memory held after one row does not hide the next row's cost.
    """
    target, keys = _make_target(folder)
    images = np.random.default_rng(seed).random((1000, 1, 28, 28)).astype(np.float32)  # float64 digits
    bodies = {"json": (_json_body(images.astype(np.float64)), {"Content-Type": "application/json"}),
              "binary": _binary_body(images)}  # fmt: skip
    rows = []
    for kind, (body, headers) in bodies.items():
        for concurrent in (1, 4):
            server = Server(target, keys, folder / f"mem-{kind}-{concurrent}.sqlite", folder / "mem.log",
                            "--max-bytes", str(64 * 1024 * 1024)).start()  # fmt: skip
            try:
                httpx.post(f"{server.url}/v2/models/mnist/infer", content=_binary_body(images[:1])[0],
                           headers={"Authorization": f"Bearer {KEY}",
                                    **_binary_body(images[:1])[1]}, timeout=60)  # fmt: skip
                time.sleep(0.5)
                before = _rss_mb(server.pid)
                codes: list[int] = []

                def send(
                    body: bytes = body,
                    headers: dict[str, str] = headers,
                    url: str = server.url,
                    codes: list[int] = codes,
                ) -> None:
                    response = httpx.post(
                        f"{url}/v2/models/mnist/infer",
                        content=body,
                        headers={"Authorization": f"Bearer {KEY}", **headers},
                        timeout=300,
                    )
                    codes.append(response.status_code)

                with RssSampler(server.pid) as sampler:
                    threads = [threading.Thread(target=send) for _ in range(concurrent)]
                    for thread in threads:
                        thread.start()
                    for thread in threads:
                        thread.join()
                time.sleep(1.0)
                after = _rss_mb(server.pid)
            finally:
                server.stop()
            body_mb = len(body) / 2**20
            rows.append({
                "body": kind, "body_mb": body_mb, "at_once": concurrent, "codes": sorted(set(codes)),
                "rss_before_mb": before, "rss_peak_mb": sampler.peak, "rss_after_mb": after,
                "rss_per_body_mb": (sampler.peak - before) / (body_mb * concurrent),
            })  # fmt: skip
    return rows


def _print_memory(rows: list[dict[str, Any]]) -> None:
    print("\n## memory: server RSS per MB of request body")
    print("| body | body MB | at once | codes | RSS before | peak | after | peak growth per body MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(
            f"| {r['body']} | {r['body_mb']:.1f} | {r['at_once']} | {r['codes']} "
            f"| {r['rss_before_mb']:.0f} MB"
            f" | {r['rss_peak_mb']:.0f} MB | {r['rss_after_mb']:.0f} MB | {r['rss_per_body_mb']:.2f} |"
        )


# --- steal under SIGKILL ------------------------------------------------------------------------------
THIEF = """
import sys, time

import httpx
import numpy as np

from activethief import steal
from activethief.oracle.http import HttpOracle
from activethief.training import FitConfig

url, key, pool_path, out, budget, batch = sys.argv[1:]


class Noisy(httpx.HTTPTransport):
    # Tells the benchmark when an answer arrived; the pause widens the window between the server
    # billing an answer and the ledger recording it, where a kill is most interesting.
    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith("/infer"):
            response.read()
            print("answered", flush=True)
            time.sleep(0.05)
        return response


oracle = HttpOracle(url, api_key=key, transport=Noisy(), backoff=0.2, retry_for=120)
print("ready", flush=True)
steal(oracle, np.load(pool_path), budget=int(budget), batch_size=int(batch), seed=0, out=out,
      resume=True, quiet=True, fit=FitConfig(epochs=1, patience=1))
print("done", flush=True)
"""


def _thief_run(command: list[str], kill_after: tuple[str, int, float] | None, timeout: float) -> str:
    """One thief process: 'killed' (SIGKILLed at its planned moment), 'done', or 'failed: ...'."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    seen = 0
    try:
        for line in proc.stdout:
            if time.monotonic() > deadline:
                break
            word = line.strip()
            if word == "done":
                break
            if kill_after is not None and word == kill_after[0]:
                seen += 1
                if seen == kill_after[1]:
                    time.sleep(kill_after[2])
                    proc.send_signal(signal.SIGKILL)
                    proc.wait(timeout=60)
                    return "killed"
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return "failed: timed out"
    finally:
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    return "done" if proc.returncode == 0 else f"failed: exit {proc.returncode}"


def _pool_indices(text: str) -> list[int]:
    text = text.strip()
    if text.startswith("["):
        return [int(v) for v in json.loads(text)]
    return [int(v) for v in text.split(",") if v]


def _verify(ledger_path: Path, state_path: Path, key_name: str) -> dict[str, Any]:
    """The table: the server's billing against the thief's ledger, answer by answer."""
    ledger = sqlite3.connect(ledger_path)
    server = sqlite3.connect(state_path)
    try:
        rows = ledger.execute("SELECT pool_index, answer, request_id FROM answers").fetchall()
        requests = dict(ledger.execute("SELECT request_id, pool_indices FROM requests").fetchall())
        pending = ledger.execute("SELECT COUNT(*) FROM requests WHERE status = 'pending'").fetchone()[0]
        billed_row = server.execute("SELECT used FROM usage WHERE key_name = ?", (key_name,)).fetchone()
        replies = {
            rid: np.frombuffer(blob, np.float32).reshape(n, c)
            for rid, n, c, blob in server.execute(
                "SELECT request_id, images, classes, answers FROM replies WHERE key_name = ?", (key_name,)
            )
        }
    finally:
        ledger.close()
        server.close()
    equal = 0
    for pool_index, blob, request_id in rows:
        if request_id in replies:
            answers = replies[request_id]
        else:  # a split request: its parts, in order
            parts = [
                replies[f"{request_id}.{i}"] for i in range(len(replies)) if f"{request_id}.{i}" in replies
            ]
            answers = np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)
        order = _pool_indices(requests.get(request_id, "[]"))
        if pool_index in order and order.index(pool_index) < len(answers):
            mine = np.frombuffer(blob, np.float32)
            equal += bool(np.array_equal(mine, answers[order.index(pool_index)]))
    billed = int(billed_row[0]) if billed_row else 0
    distinct = len({r[0] for r in rows})
    return {"billed": billed, "ledger rows": len(rows), "distinct indices": distinct, "pending": pending,
            "billed twice": billed - distinct, "answers equal to the server's": equal}  # fmt: skip


def steal_section(folder: Path, *, kills: int, server_kills: int, budget: int, seed: int) -> dict[str, Any]:
    """An HTTP steal SIGKILLed `kills` times (and the server `server_kills` times), resumed until done."""
    rng = np.random.default_rng(seed)
    target, keys = _make_target(folder)
    pool = folder / "pool.npy"
    images = rng.random((2 * budget, 1, 28, 28), dtype=np.float32)
    images[images < 0.7] = 0.0
    np.save(pool, images)
    state, out = folder / "steal-state.sqlite", folder / "run"
    server = Server(target, keys, state, folder / "steal-server.log").start()
    batch = max(1, budget // 15)
    command = [sys.executable, "-c", THIEF, f"{server.url}/v2/models/mnist", KEY, str(pool), str(out),
               str(budget), str(batch)]  # fmt: skip
    rounds = budget // batch
    plans: list[tuple[str, int, float] | None] = [
        ("answered", int(rng.integers(1, 3)), float(rng.choice([0.0, 0.02, 0.2])))
        if rng.random() < 0.7
        else ("ready", 1, float(rng.uniform(0.5, 4.0)))
        for _ in range(kills)
    ]
    server_kill_at = set(rng.choice(np.arange(max(1, kills)), size=min(server_kills, max(1, kills)),
                                    replace=False).tolist()) if server_kills else set()  # fmt: skip
    outcomes: collections.Counter[str] = collections.Counter()
    started = time.monotonic()
    try:
        for run, plan in enumerate([*plans, None, None, None]):  # then resume (bounded) until done
            if run in server_kill_at:  # the server dies too, and comes back on the same state and port
                server.kill()
                restarter = threading.Timer(float(rng.uniform(2.0, 8.0)), server.start)
                restarter.start()
                outcome = _thief_run(command, plan, timeout=600)
                restarter.join()
                outcomes["server SIGKILLed"] += 1
            else:
                outcome = _thief_run(command, plan, timeout=600)
            outcomes[outcome] += 1
            if outcome == "done" and run >= len(plans):
                break
    finally:
        server.stop()
    table = _verify(out / "ledger.sqlite", state, "thief")
    return {**table, "budget": budget, "rounds": rounds, "outcomes": dict(outcomes),
            "seconds": time.monotonic() - started}  # fmt: skip


def _print_steal(result: dict[str, Any]) -> None:
    print("\n## steal over HTTP, thief SIGKILLed at random moments (server too), resumed until done")
    print(f"budget {result['budget']} in {result['rounds']} rounds; runs: {result['outcomes']}; "
          f"{result['seconds']:.0f} s")  # fmt: skip
    names = ["billed", "ledger rows", "distinct indices", "pending", "billed twice",
             "answers equal to the server's"]  # fmt: skip
    print("| " + " | ".join(names) + " |")
    print("|" + " --- |" * len(names))
    print("| " + " | ".join(str(result[n]) for n in names) + " |")


# --- hostile requests ---------------------------------------------------------------------------------
def _raw_exchange(port: int, data: bytes, *, close_early: bool = False, timeout: float = 5.0) -> str:
    """Send raw bytes; the status code of the answer, or 'closed' / 'no answer'."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
            if close_early:
                return "left early"
            answer = sock.recv(64)  # no half-close: uvicorn takes one for the client leaving
        except (TimeoutError, ConnectionError):
            return "no answer"
    if not answer:
        return "closed"
    parts = answer.split(b" ", 2)
    return parts[1].decode("ascii", "replace") if len(parts) > 1 else "garbled"


def _hostile_requests(rng: np.random.Generator, count: int) -> list[tuple[str, Callable[[str, int], str]]]:
    """`count` (kind, send) pairs; send(url, port) returns the status as text."""
    auth = {"Authorization": f"Bearer {KEY}"}
    infer = "/v2/models/mnist/infer"
    good = {"name": "images", "datatype": "FP32", "shape": [1, 784], "data": [0.5] * 784}

    def post(
        content: bytes, headers: dict[str, str] | None = None, path: str = infer
    ) -> Callable[[str, int], str]:
        def send(url: str, _port: int) -> str:
            try:
                response = httpx.post(
                    url + path, content=content, headers={**auth, **(headers or {})}, timeout=10
                )
            except httpx.HTTPError as exc:
                return type(exc).__name__
            return str(response.status_code)

        return send

    def raw(data: bytes, close_early: bool = False) -> Callable[[str, int], str]:
        return lambda _url, port: _raw_exchange(port, data, close_early=close_early)

    def head(length: int, extra: str = "") -> bytes:
        return (
            f"POST {infer} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {length}\r\n{extra}\r\n"
        ).encode()

    makers: list[tuple[str, Callable[[], Callable[[str, int], str]]]] = [
        ("random bytes", lambda: post(rng.bytes(int(rng.integers(0, 4000))))),
        (
            "random bytes, binary header",
            lambda: post(
                rng.bytes(int(rng.integers(1, 4000))),
                {"Inference-Header-Content-Length": str(int(rng.integers(-10, 5000)))},
            ),
        ),
        ("Content-Length larger than the body", lambda: raw(head(5000) + b'{"inputs": [', close_early=True)),
        (
            "Content-Length smaller than the body",
            lambda: raw(head(10) + json.dumps({"inputs": [good]}).encode()),
        ),
        (
            "not a number Content-Length",
            lambda: raw(head(0).replace(b"Content-Length: 0", b"Content-Length: 1e9")),
        ),
        ("bad encoding (UTF-16)", lambda: post(json.dumps({"inputs": [good]}).encode("utf-16"))),
        ("bad encoding (invalid UTF-8)", lambda: post(b'{"id": "\xff\xfe", "inputs": []}')),
        ("gzip body", lambda: post(b"\x1f\x8b" + rng.bytes(100), {"Content-Encoding": "gzip"})),
        ("deeply nested JSON", lambda: post(b"[" * int(rng.integers(1000, 200_000)))),
        (
            "deeply nested data",
            lambda: post(
                json.dumps({"inputs": [{**good, "data": json.loads("[" * 900 + "0.5" + "]" * 900)}]}).encode()
            ),
        ),
        ("lone-surrogate id", lambda: post(json.dumps({"id": "a\ud800b", "inputs": [good]}).encode())),
        ("unknown top-level field", lambda: post(json.dumps({"inputs": [good], "extra": 1}).encode())),
        (
            "key in the query string",
            lambda: post(
                json.dumps({"inputs": [good]}).encode(), {"Authorization": ""}, path=f"{infer}?api_key={KEY}"
            ),
        ),
        (
            "huge header",
            lambda: raw(head(2).replace(b"\r\n\r\n", b"\r\nX-Big: " + b"a" * 200_000 + b"\r\n\r\n") + b"{}"),
        ),
        (
            "many headers",
            lambda: raw(head(2).replace(b"\r\n\r\n", b"\r\n" + b"X-A: b\r\n" * 2000 + b"\r\n") + b"{}"),
        ),
        ("non-ASCII header", lambda: raw(head(2).replace(b"Host: x", b"Host: \xff\xfe\xc3") + b"{}")),
        ("garbage request line", lambda: raw(rng.bytes(int(rng.integers(1, 300))) + b"\r\n\r\n")),
        (
            "odd Authorization",
            lambda: post(
                b"{}",
                {
                    "Authorization": str(
                        rng.choice(
                            ["Bearer", "Basic abc", "Bearer " + "x" * 5000, f"bearer {KEY}x", "Token abc"]
                        )
                    )
                },
            ),
        ),
        ("valid request", lambda: post(json.dumps({"inputs": [good]}).encode())),
    ]
    return [(kind, make()) for kind, make in (makers[int(i)] for i in rng.integers(0, len(makers), count))]


def hostile_section(folder: Path, *, count: int, seed: int) -> dict[str, Any]:
    """`count` hostile requests against a fresh server; status counts per kind, RSS, log checks."""
    target, keys = _make_target(folder)
    log = folder / "hostile.log"
    server = Server(target, keys, folder / "hostile.sqlite", log).start()
    counts: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    started = time.monotonic()
    try:
        before = _rss_mb(server.pid)
        for kind, send in _hostile_requests(np.random.default_rng(seed), max(1000, count)):
            counts[kind][send(server.url, server.port)] += 1
        time.sleep(0.5)
        after = _rss_mb(server.pid)
        honest = httpx.get(f"{server.url}/v2/health/ready", timeout=10).status_code
        metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {ADMIN}"}).text
    finally:
        server.stop()
    text = log.read_text(errors="replace")
    five = sum(n for c in counts.values() for code, n in c.items() if code.startswith("5"))
    return {"counts": counts, "rss_before_mb": before, "rss_after_mb": after, "honest": honest,
            "seconds": time.monotonic() - started, "5xx": five, "key in log": KEY in text,
            "tracebacks in log": text.count("Traceback"), "log bytes": len(text.encode()),
            "500 in metrics": 'code="500"' in metrics,
            "499 in metrics": _count_code(metrics, "499")}  # fmt: skip


def _count_code(metrics: str, code: str) -> float:
    """Requests counted with this status code in a /metrics text."""
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("activethief_requests_total{") and f'code="{code}"' in line
    )


def _print_hostile(result: dict[str, Any]) -> None:
    total = sum(sum(c.values()) for c in result["counts"].values())
    print(f"\n## hostile requests: {total} in {result['seconds']:.0f} s")
    print("| kind | answers |")
    print("| --- | --- |")
    for kind, counter in sorted(result["counts"].items()):
        print(f"| {kind} | " + ", ".join(f"{code}: {n}" for code, n in sorted(counter.items())) + " |")
    print(f"\nserver RSS {result['rss_before_mb']:.0f} MB before, {result['rss_after_mb']:.0f} MB after; "
          f"5xx answers: {result['5xx']}; 500 in /metrics: {result['500 in metrics']}; "
          f"counted as 499 (client left): {result['499 in metrics']:.0f}; key in the log: "
          f"{result['key in log']}; tracebacks in the log: {result['tracebacks in log']}; log "
          f"{result['log bytes'] / 1024:.0f} KB; health afterwards: {result['honest']}")  # fmt: skip


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sections", default="steal,hostile,memory")
    parser.add_argument("--kills", type=int, default=6, help="SIGKILLs of the thief")
    parser.add_argument("--server-kills", type=int, default=1, help="SIGKILLs of the server")
    parser.add_argument("--budget", type=int, default=1500)
    parser.add_argument("--hostile", type=int, default=1200, help="hostile requests (at least 1,000)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    sections = set(args.sections.split(","))
    with tempfile.TemporaryDirectory(prefix="chaos-") as tmp:
        folder = Path(tmp)
        if "steal" in sections:
            _print_steal(steal_section(folder / "steal", kills=args.kills, server_kills=args.server_kills,
                                       budget=args.budget, seed=args.seed))  # fmt: skip
        if "hostile" in sections:
            _print_hostile(hostile_section(folder / "hostile", count=args.hostile, seed=args.seed))
        if "memory" in sections:
            _print_memory(memory_section(folder / "memory", args.seed))


if __name__ == "__main__":
    main()
