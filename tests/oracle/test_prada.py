"""PRADA (Juuti et al., EuroS&P 2019): the statistic on hand-made streams, JbDA-like vs natural streams,
argument errors, and the detector behind an Oracle."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from activethief import CallableOracle
from activethief.errors import ConfigError, OracleError
from activethief.oracle import CallableBackend, Oracle
from activethief.oracle.prada import PradaBackend, PradaDetector, first_crossings, replay, shapiro_statistic


def points(positions: np.ndarray) -> np.ndarray:
    """1-D positions as [n, 1, 1, 1] 'images', so every L2 distance is a difference of positions."""
    return np.asarray(positions, dtype=np.float32).reshape(-1, 1, 1, 1)


def jbda_like(
    seeds: np.ndarray, n: int, step: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """A JbDA-like stream: a few seeds, then each query a small signed perturbation of an earlier one;
    returns the stream and, per query, the index of the seed it descends from."""
    stream, roots = list(seeds), list(range(len(seeds)))
    while len(stream) < n:
        parent = int(rng.integers(len(stream)))
        step_dir = np.sign(rng.standard_normal(stream[parent].shape))
        stream.append(np.clip(stream[parent] + step * step_dir, 0, 1))
        roots.append(roots[parent])
    return np.stack(stream).astype(np.float32), np.array(roots)


def test_hand_made_stream_distances_and_statistic() -> None:
    # Increasing gaps: each new point is nearest to the last one and its gap exceeds the mean of the
    # earlier gaps, so every point joins G_0 and D is exactly the gaps.
    gaps = 1.0 + np.linspace(0, 1, 150) ** 2
    positions = np.concatenate([[0.0], np.cumsum(gaps)])
    detector = PradaDetector(delta=0.5, min_queries=100)
    x = points(positions)
    detector.observe(x, np.zeros(len(positions), dtype=np.int64))
    assert detector.queries == 151 and detector.growing_set_sizes == {0: 151}
    exact = np.diff(x.ravel().astype(np.float64))  # the gaps, as float32 positions hold them
    assert np.allclose(detector.distances, exact, rtol=1e-6) and np.allclose(exact, gaps, rtol=1e-4)
    assert detector.statistic == pytest.approx(stats.shapiro(exact).statistic, abs=1e-6)
    assert not detector.flagged  # W is well above 0.5 here


def test_classes_have_their_own_growing_sets_and_thresholds() -> None:
    # Class 0 joins at 0, 1, 3 (distances 1, 2: T_0 = 1.5 - 0.5 = 1); then 3.25 (0.25 < T_0) is recorded
    # but stays out of G_0, so 3.6 is measured from 3 (0.6), not from 3.25. Class 1, far away, has its
    # own set and threshold: 1000, 1002 (2 > 0), 1005 (3 > T_1 = 2).
    x = points([0, 1000, 1, 1002, 3, 3.25, 1005, 3.6])
    c = np.array([0, 1, 0, 1, 0, 0, 1, 0])
    detector = PradaDetector(min_queries=3)
    detector.observe(x, c)
    assert np.allclose(detector.distances, [1, 2, 2, 0.25, 3, 0.6], atol=1e-5)
    assert detector.growing_set_sizes == {0: 3, 1: 3}


def test_outliers_are_left_out_of_w() -> None:
    rng = np.random.default_rng(0)
    d = rng.normal(10, 1, 300)
    with_outlier = np.concatenate([d, [1000.0]])
    assert shapiro_statistic(with_outlier) == pytest.approx(stats.shapiro(d).statistic, abs=1e-9)
    assert shapiro_statistic(with_outlier, trim_sigma=None) < 0.2
    assert shapiro_statistic(np.ones(200)) == 1.0


def test_min_distance_is_exact_for_near_duplicates() -> None:
    rng = np.random.default_rng(1)
    base = rng.random((1, 1, 28, 28), dtype=np.float32)
    x = np.clip(base + rng.normal(0, 1e-3, (300, 1, 28, 28)), 0, 1).astype(np.float32)
    detector = PradaDetector(min_queries=3, trim_sigma=None)
    detector.observe(x, np.zeros(len(x), dtype=np.int64))
    # Brute force in float64: each query against the members that joined before it.
    flat, members, expected = x.reshape(len(x), -1).astype(np.float64), [0], []
    threshold_d: list[float] = []
    for i in range(1, len(flat)):
        d = float(np.sqrt(((flat[members] - flat[i]) ** 2).sum(1)).min())
        expected.append(d)
        t = max(0.0, np.mean(threshold_d) - np.std(threshold_d)) if threshold_d else 0.0
        if d > t:
            members.append(i)
            threshold_d.append(d)
    assert np.allclose(detector.distances, expected, rtol=1e-4)
    assert detector.growing_set_sizes == {0: len(members)}


def test_jbda_like_stream_is_flagged_and_natural_images_are_not(
    mnist_small: tuple[np.ndarray, ...],
) -> None:
    _, _, xt, yt = mnist_small
    rng = np.random.default_rng(0)
    order = rng.permutation(len(xt))
    natural = replay(xt[order], yt[order], [0.9])
    assert natural == {0.9: None}
    seeds = rng.choice(len(xt), 10, replace=False)
    synthetic, roots = jbda_like(xt[seeds], 600, 0.1, rng)
    classes = yt[seeds][roots]  # each query labelled as its seed (small steps rarely change the class)
    flagged = replay(synthetic, classes, [0.9, 0.95])
    assert flagged[0.9] is not None and flagged[0.9] <= 200
    assert flagged[0.95] is not None and flagged[0.95] <= flagged[0.9]


def test_replay_matches_one_detector_per_delta(mnist_small: tuple[np.ndarray, ...]) -> None:
    xt = mnist_small[2]
    rng = np.random.default_rng(3)
    stream, _ = jbda_like(xt[:5], 300, 0.05, rng)
    classes = rng.integers(0, 3, len(stream))
    many = replay(stream, classes, [0.8, 0.95], batch=64)
    for delta, at in many.items():
        single = PradaDetector(delta)
        single.observe(stream, classes)
        assert single.flagged_at == at
    assert first_crossings(np.array([np.nan, 0.99, 0.9, 0.97, 0.8]), [0.95, 0.85, 0.5]) == {
        0.95: 3,
        0.85: 5,
        0.5: None,
    }


@pytest.mark.parametrize("delta", [0, -0.1, 1.5, "0.9", True])
def test_bad_delta(delta: object) -> None:
    with pytest.raises(ConfigError, match="delta"):
        PradaDetector(delta)  # type: ignore[arg-type]


@pytest.mark.parametrize("min_queries", [2, 0, 10.5, True])
def test_bad_min_queries(min_queries: object) -> None:
    with pytest.raises(ConfigError, match="min_queries"):
        PradaDetector(min_queries=min_queries)  # type: ignore[arg-type]


def test_bad_observations() -> None:
    detector = PradaDetector()
    with pytest.raises(OracleError, match="class per image"):
        detector.observe(np.zeros((3, 1, 2, 2), np.float32), np.zeros(2, dtype=np.int64))
    with pytest.raises(OracleError, match="class per image"):
        detector.observe(np.zeros((2, 1, 2, 2), np.float32), np.array([0.5, 1.0]))
    detector.observe(np.zeros((2, 1, 2, 2), np.float32), np.array([0, 1]))
    with pytest.raises(OracleError, match="4 values per image"):
        detector.observe(np.zeros((1, 1, 3, 3), np.float32), np.array([0]))
    with pytest.raises(ConfigError, match="trim_sigma"):
        PradaDetector(trim_sigma=0)


def brightness_target(x: np.ndarray) -> np.ndarray:
    """A 3-class target: the class is the image's mean brightness band."""
    s = x.reshape(len(x), -1).mean(1)
    logits = -np.abs(s[:, None] - np.array([0.2, 0.5, 0.8])[None]) * 20
    e = np.exp(logits - logits.max(1, keepdims=True))
    return (e / e.sum(1, keepdims=True)).astype(np.float32)


def test_prada_backend_through_an_oracle(mnist_small: tuple[np.ndarray, ...]) -> None:
    rng = np.random.default_rng(0)
    inner = CallableBackend(brightness_target, 3, owned=True)
    watched = PradaBackend(inner, PradaDetector(0.95, min_queries=50))
    assert watched.input_shape == (1, 28, 28) and watched.num_classes == 3 and watched.owned
    oracle = Oracle(watched, budget=400)
    pool, _ = jbda_like(mnist_small[2][:10], 400, 0.1, rng)
    plain = CallableOracle(brightness_target, 3)
    for start in range(0, 400, 100):
        keys = np.arange(start, start + 100)
        answers = oracle.query(pool[keys], keys=keys)
        assert np.allclose(answers, plain.query(pool[keys]))  # passed through unchanged
    oracle.query(pool[:50], keys=np.arange(50))  # served from the ledger: the target never sees them
    assert oracle.used == 400 and watched.detector.queries == 400
    assert oracle.evaluate(pool[:20]) is not None and watched.detector.queries == 400  # free: not fed
    assert watched.detector.flagged and watched.detector.flagged_at is not None
    assert 50 < watched.detector.flagged_at <= 400
    expected = replay(pool, brightness_target(pool).argmax(1), [0.95], min_queries=50)
    assert watched.detector.flagged_at == expected[0.95]
