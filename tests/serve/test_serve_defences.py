"""Defences and PRADA per key over HTTP: the keys file's `defence`, `prada` and `prada_refuse`, the
defence applied before the key's output mode, noise seeded per server and fresh per request, a flagged
key's log line, metrics and 403."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from serve_helpers import LiveServer, infer_body

from activethief.errors import ConfigError
from activethief.oracle.defences import ReverseSigmoid
from activethief.serve import build_service
from activethief.serve.keys import parse_keys

SECRETS = {
    "plain": "plain-secret-key-0101",
    "rs": "rs-secret-key-0102",
    "noisy": "noisy-secret-key-0103",
    "watched": "watched-secret-key-0104",
    "logged": "logged-secret-key-0105",
    "ops": "ops-secret-key-0106",
}
KEYS_TOML = f"""
[defaults]
defence = "none"

[keys.plain]
key = "{SECRETS["plain"]}"

[keys.rs]
key = "{SECRETS["rs"]}"
defence = "reverse-sigmoid:0.7"
mode = "round:2"

[keys.noisy]
key = "{SECRETS["noisy"]}"
defence = "noise:0.05"

[keys.watched]
key = "{SECRETS["watched"]}"
prada = 0.95
prada_refuse = true

[keys.logged]
key = "{SECRETS["logged"]}"
prada = 0.95

[keys.ops]
key = "{SECRETS["ops"]}"
admin = true
"""


def headers(name: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {SECRETS[name]}"}


@pytest.fixture
def defended(target_file: Path, tmp_path: Path) -> Iterator[LiveServer]:
    keys = tmp_path / "keys.toml"
    keys.write_text(KEYS_TOML)
    live = LiveServer(build_service(target_file, keys, max_batch=64, seed=5))
    yield live
    live.stop()


def ask(server: LiveServer, key: str, images: np.ndarray, request_id: str | None = None) -> httpx.Response:
    return httpx.post(
        f"{server.model_url}/infer", json=infer_body(images, request_id), headers=headers(key), timeout=30
    )


def probabilities(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    out = response.json()["outputs"]
    probs = next(o for o in out if o["name"] == "probabilities")
    return np.asarray(probs["data"], dtype=np.float32).reshape(probs["shape"])


def test_the_keys_file_reads_defences_and_prada_per_key_and_from_defaults() -> None:
    ring = parse_keys(
        {
            "defaults": {"defence": "noise:0.1", "prada": 0.9},
            "keys": {
                "a": {"key": "a-secret-key-000001"},
                "b": {"key": "b-secret-key-000002", "defence": "none", "prada_refuse": True},
            },
        }
    )
    assert str(ring["a"].defence) == "noise:0.1" and ring["a"].prada == 0.9 and not ring["a"].prada_refuse
    assert str(ring["b"].defence) == "none" and ring["b"].prada_refuse
    assert "noise:0.1" in repr(ring["a"]) and "secret" not in repr(ring["a"])


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"defence": "laplace:1"}, "keys.k: invalid defence 'laplace:1'"),
        ({"defence": 0.7}, "`defence` must be a string"),
        ({"prada": 1.5}, "`prada` must be PRADA's delta"),
        ({"prada": True}, "`prada` must be PRADA's delta"),
        ({"prada_refuse": True}, "needs `prada = DELTA`"),
        ({"prada": 0.9, "prada_refuse": "yes"}, "`prada_refuse` must be true or false"),
    ],
)
def test_bad_defence_and_prada_settings_are_config_errors(entry: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigError, match=r"keys\.k") as info:
        parse_keys({"keys": {"k": {"key": "k-secret-key-000001", **entry}}})
    assert says in str(info.value)


def test_a_keys_defence_runs_before_its_output_mode(defended: LiveServer, images: np.ndarray) -> None:
    truthful = probabilities(ask(defended, "plain", images[:8]))
    answered = probabilities(ask(defended, "rs", images[:8]))
    expected = np.round(ReverseSigmoid(0.7).apply(truthful, np.random.default_rng(0)), 2)
    np.testing.assert_allclose(answered, expected, atol=0.011)  # one rounding step of slack
    assert not np.allclose(answered, np.round(truthful, 2), atol=0.011)
    meta = httpx.get(defended.model_url, headers=headers("rs"), timeout=10).json()
    assert meta["parameters"]["output_mode"] == "round:2" and "defence" not in meta["parameters"]


def test_noise_is_fresh_per_request_replayed_per_id_and_seeded_per_server(
    defended: LiveServer, images: np.ndarray, target_file: Path, tmp_path: Path
) -> None:
    first = probabilities(ask(defended, "noisy", images[:4], "r1"))
    again = probabilities(ask(defended, "noisy", images[:4], "r2"))
    np.testing.assert_allclose(first.sum(1), 1.0, atol=1e-5)
    assert not np.allclose(first, again)  # a new request: fresh noise
    np.testing.assert_array_equal(probabilities(ask(defended, "noisy", images[:4], "r1")), first)  # replay
    assert defended.used("noisy") == 8
    keys = tmp_path / "keys.toml"  # the fixture's file
    for seed, same in ((5, True), (6, False)):
        other = LiveServer(build_service(target_file, keys, seed=seed))
        try:
            assert np.allclose(probabilities(ask(other, "noisy", images[:4])), first) == same
        finally:
            other.stop()


def extraction_stream(n_bases: int = 20, copies: int = 8) -> np.ndarray:
    """A JbDA-like stream: a few seed images, each followed by near-copies (tiny perturbations)."""
    rng = np.random.default_rng(1)
    bases = rng.random((n_bases, 1, 1, 28, 28), dtype=np.float32)
    jitter = rng.normal(0, 1e-3, (n_bases, copies, 1, 28, 28)).astype(np.float32)
    return np.clip(bases + jitter, 0, 1).reshape(-1, 1, 28, 28)


def test_prada_flags_a_key_logs_its_name_counts_it_and_refuses_it(
    defended: LiveServer, caplog: pytest.LogCaptureFixture
) -> None:
    stream = extraction_stream()
    caplog.set_level(logging.INFO, logger="activethief.serve")
    detector = defended.service.prada.detectors["watched"]
    refused_images = 5
    for start in range(0, len(stream), 40):
        was_flagged = detector.flagged
        assert ask(defended, "watched", stream[start : start + 40]).status_code == (
            403 if was_flagged else 200
        )
        refused_images += 40 if was_flagged else 0
        for key in ("logged", "plain"):
            assert ask(defended, key, stream[start : start + 40]).status_code == 200
    assert detector.flagged and detector.flagged_at is not None and 100 <= detector.flagged_at <= 160
    assert detector.queries <= 160 and detector.statistic is not None and detector.statistic < 0.95
    refused = ask(defended, "watched", stream[:5])
    assert refused.status_code == 403
    body = refused.json()
    assert "'watched' was flagged" in body["error"] and body["flagged_by"] == "prada"
    assert ask(defended, "logged", stream[:5]).status_code == 200  # flagged, but not refused
    assert ask(defended, "plain", stream[:5]).status_code == 200  # not watched
    flags = [r.getMessage() for r in caplog.records if "flagged by PRADA" in r.getMessage()]
    assert sorted(m.split(":")[0] for m in flags) == ["key logged", "key watched"]
    assert not any(secret in caplog.text for secret in SECRETS.values())
    metrics = httpx.get(f"{defended.url}/metrics", headers=headers("ops"), timeout=10).text
    assert 'activethief_prada_flagged{key="watched"} 1.0' in metrics
    assert 'activethief_prada_flags_total{key="logged"} 1.0' in metrics
    assert f'activethief_images_refused_total{{key="watched",reason="prada"}} {refused_images:.1f}' in metrics
    assert 'activethief_prada_statistic{key="watched"}' in metrics
    assert 'key="plain"' not in "".join(line for line in metrics.splitlines() if "prada" in line)
