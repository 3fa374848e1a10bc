"""Stealing over HTTP end to end: `steal` with an HttpOracle against a live server, the same run
in-process, and a steal SIGKILLed at several moments and resumed, that pays exactly what an
uninterrupted run pays (the server's billing is the judge)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import httpx
import numpy as np
import pytest
from serve_helpers import KEYS, CliServer, LiveServer

from activethief import ModelOracle, models, steal
from activethief.oracle import Ledger
from activethief.oracle.http import HttpOracle
from activethief.training import FitConfig, fit, predict_proba

BUDGET, BATCH, POOL = 600, 100, 1000
TINY = FitConfig(epochs=1, patience=1)
RUN: dict[str, Any] = {"budget": BUDGET, "batch_size": BATCH, "seed": 0, "quiet": True, "fit": TINY}

SCRIPT = """
import sys, time
from pathlib import Path

import httpx
import numpy as np

from activethief import steal
from activethief.oracle.http import HttpOracle
from activethief.training import FitConfig

url, key, pool_path, out, pause = sys.argv[1:]


class Slow(httpx.HTTPTransport):
    # Widens the window between the server billing an answer and the ledger recording it.
    def handle_request(self, request):
        response = super().handle_request(request)
        if request.url.path.endswith("/infer"):
            response.read()
            print("answered", flush=True)
            time.sleep(float(pause))
        return response


# The server may still be starting: resend soon and often.
oracle = HttpOracle(url, api_key=key, transport=Slow(), backoff=0.1, max_retries=12)
print("ready", flush=True)
steal(oracle, np.load(pool_path), budget=BUDGET, batch_size=BATCH, seed=0, out=out, resume=True,
      quiet=True, fit=FitConfig(epochs=1, patience=1))
print("done", flush=True)
""".replace("BUDGET", str(BUDGET)).replace("BATCH", str(BATCH))


@pytest.fixture(scope="module")
def trained_target(tmp_path_factory: pytest.TempPathFactory, mnist_small: tuple[np.ndarray, ...]) -> Path:
    """A cnn2 trained for one epoch on 2,000 MNIST images: a target worth stealing, made in seconds."""
    x, y = mnist_small[0][:2000], mnist_small[1][:2000]
    model = models.build("cnn2", 10, seed=0)
    fit(model, x, y, config=FitConfig(epochs=1), seed=0)
    path = tmp_path_factory.mktemp("trained") / "target.pt"
    models.save(model, path, arch="cnn2", num_classes=10, dataset="mnist")
    return path


@pytest.mark.slow
def test_steal_over_http_matches_the_in_process_steal(
    start_server: Callable[..., LiveServer],
    trained_target: Path,
    mnist_small: tuple[np.ndarray, ...],
    tmp_path: Path,
) -> None:
    pool, run = mnist_small[0][:600], {**RUN, "budget": 300}
    server = start_server(trained_target)
    remote = HttpOracle(server.model_url, api_key=KEYS["thief"])
    over_http = steal(remote, pool, out=tmp_path / "http", **run)
    local = steal(ModelOracle(trained_target), pool, out=tmp_path / "local", **run)
    assert over_http.queries_used == local.queries_used == server.used("thief") == 300
    keys_http, answers_http = remote.answered()
    keys_local, answers_local = Ledger(tmp_path / "local" / "ledger.sqlite").all_answers()[:2]
    assert sorted(keys_http.tolist()) == sorted(keys_local.tolist())  # the same points were chosen
    np.testing.assert_allclose(answers_http, answers_local.reshape(-1, 10), atol=1e-6)
    test_images = mnist_small[2]
    labels_http = predict_proba(over_http.substitute, test_images).argmax(1)
    labels_local = predict_proba(local.substitute, test_images).argmax(1)
    assert (labels_http == labels_local).mean() >= 0.98  # the same answers train the same substitute
    remote.close()


def test_steal_over_http_with_hard_labels(
    start_server: Callable[..., LiveServer],
    trained_target: Path,
    mnist_small: tuple[np.ndarray, ...],
    tmp_path: Path,
) -> None:
    server = start_server(trained_target)
    oracle = HttpOracle(server.model_url, api_key=KEYS["label"])
    assert oracle.mode.hard
    result = steal(oracle, mnist_small[0][:400], **{**RUN, "budget": 200}, out=tmp_path / "run")
    _, answers = oracle.answered()
    assert result.queries_used == server.used("label") == 200
    assert set(np.unique(answers).tolist()) == {0.0, 1.0} and (answers.sum(1) == 1).all()
    oracle.close()


def _wait_for(stream: IO[str], marker: str, count: int = 1) -> bool:
    """Read lines until `marker` was seen `count` times; False if the run finished first."""
    seen = 0
    for line in stream:
        if line.strip() == "done":
            return False
        if line.strip() == marker:
            seen += 1
            if seen == count:
                return True
    return False


@pytest.mark.slow
def test_steal_killed_at_arbitrary_moments_and_resumed_pays_exactly_once(
    trained_target: Path, keys_file: Path, mnist_small: tuple[np.ndarray, ...], tmp_path: Path
) -> None:
    """The server is `activethief serve` itself (a process); the thief is SIGKILLed three times, and the
    server's own persistent accounting must show exactly the budget."""
    pool_path = tmp_path / "pool.npy"
    np.save(pool_path, mnist_small[0][:POOL])
    script = tmp_path / "steal_once.py"
    script.write_text(textwrap.dedent(SCRIPT))
    out, state = tmp_path / "run", tmp_path / "serve-state.sqlite"
    server = CliServer(
        str(trained_target), "--keys", str(keys_file), "--state", str(state), log=tmp_path / "serve.log"
    )
    server.start(wait=False)  # comes up while the first thief imports; the oracle retries connecting
    model_url = f"{server.url}/v2/models/mnist"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, str(script), model_url, KEYS["thief"], str(pool_path), str(out), "0.15"]
    # Kill points: right after the server answered (billed, not yet in the ledger), after a pause in the
    # middle of a run, and just after the second answer of a run (the first may be a replay).
    plans: list[tuple[str, int, float]] = [("answered", 1, 0.0), ("ready", 1, 0.6), ("answered", 2, 0.05)]
    kills = 0
    try:
        for marker, count, delay in [*plans, ("", 0, 0.0)]:
            proc = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
            )
            assert proc.stdout is not None and proc.stderr is not None
            if marker and _wait_for(proc.stdout, marker, count):
                time.sleep(delay)
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=60)
                kills += proc.returncode == -signal.SIGKILL
                proc.stdout.close()
                proc.stderr.close()
                continue
            _, stderr = proc.communicate(timeout=300)
            assert proc.returncode == 0, stderr[-3000:]
            if not marker:
                break
        assert kills == len(plans)  # the run really was interrupted at each planned moment
        ledger = Ledger(out / "ledger.sqlite")
        keys, _, _ = ledger.all_answers()
        assert ledger.pending() == []
        assert len(keys) == len(set(keys.tolist())) == BUDGET  # every answer bought is in the ledger once
        ledger.close()
        params = httpx.get(model_url, headers={"Authorization": f"Bearer {KEYS['thief']}"}).json()[
            "parameters"
        ]
        assert params["budget_used"] == BUDGET  # the server billed exactly those, nothing twice
        metrics = httpx.get(f"{server.url}/metrics", headers={"Authorization": f"Bearer {KEYS['ops']}"}).text
        assert f'activethief_budget_used_images{{key="thief"}} {BUDGET}.0' in metrics
    finally:
        code = server.stop()
    log = server.output()
    assert code == 0 and "serving model 'mnist'" in log
    assert all(secret not in log for secret in KEYS.values())
