"""Answer policies (defences): each one's answers on hand-made rows, chaining, spec errors, ART's Reverse
Sigmoid as the reference, and a defended target behind an Oracle (every answer counted)."""

from __future__ import annotations

import numpy as np
import pytest
from art.defences.postprocessor import ReverseSigmoid as ArtReverseSigmoid

from activethief.errors import ConfigError, OracleError
from activethief.oracle import (
    CallableOracle,
    DefendedBackend,
    Oracle,
    defence_cost,
    defend,
    defended_accuracy,
    parse_defence,
)
from activethief.oracle.defences import (
    AdaptiveMisinformation,
    Chain,
    GaussianNoise,
    NoDefence,
    ReverseSigmoid,
)
from activethief.oracle.local import CallableBackend
from activethief.oracle.modes import OutputMode

ROWS = np.array(
    [
        [0.97, 0.02, 0.01, 0.0],  # confident
        [0.40, 0.35, 0.20, 0.05],  # unsure
        [0.25, 0.25, 0.25, 0.25],  # uniform
    ],
    dtype=np.float32,
)


def random_rows(n: int, classes: int, seed: int) -> np.ndarray:
    """Probability rows from sharp to flat (Dirichlet with small and large concentrations)."""
    rng = np.random.default_rng(seed)
    alphas = rng.choice([0.05, 0.3, 1.0, 5.0], size=n)
    return np.stack([rng.dirichlet(np.full(classes, a)) for a in alphas]).astype(np.float32)


def assert_distributions(rows: np.ndarray) -> None:
    assert rows.dtype == np.float32
    assert (rows >= 0).all()
    np.testing.assert_allclose(rows.sum(1), 1.0, atol=1e-5)


def test_none_is_the_truthful_answer() -> None:
    defence = parse_defence("none")
    assert isinstance(defence, NoDefence) and str(defence) == "none"
    assert parse_defence(None) == defence
    np.testing.assert_array_equal(defence.apply(ROWS, np.random.default_rng(0)), ROWS)


def test_noise_is_seeded_renormalised_and_fresh_per_draw() -> None:
    defence = parse_defence("noise:0.05")
    assert isinstance(defence, GaussianNoise) and defence.random and str(defence) == "noise:0.05"
    rng = np.random.default_rng(3)
    first, second = defence.apply(ROWS, rng), defence.apply(ROWS, rng)
    assert_distributions(first)
    assert not np.allclose(first, second)  # a fresh draw per answer
    np.testing.assert_array_equal(first, defence.apply(ROWS, np.random.default_rng(3)))  # seeded
    assert 0.0 < np.abs(first - ROWS).mean() < 0.1
    assert first[0].argmax() == 0  # a 0.95 lead survives noise of 0.05


def test_noise_that_wipes_a_row_out_falls_back_to_its_largest_entry() -> None:
    out = parse_defence("noise:100").apply(ROWS, np.random.default_rng(0))
    assert_distributions(out)


def test_reverse_sigmoid_by_hand() -> None:
    beta, gamma = 0.7, 0.5
    p = ROWS.astype(np.float64)
    clipped = np.clip(p, 1e-9, 1 - 1e-9)
    r = beta * (1 / (1 + np.exp(-gamma * np.log(clipped / (1 - clipped)))) - 0.5)
    expected = np.clip(p - r, 0, 1)
    expected /= expected.sum(1, keepdims=True)
    out = parse_defence(f"reverse-sigmoid:{beta},{gamma}").apply(ROWS, np.random.default_rng(0))
    assert_distributions(out)
    np.testing.assert_allclose(out, expected, atol=1e-6)
    np.testing.assert_allclose(out[2], 0.25, atol=1e-6)  # a uniform row is a fixed point
    assert out[0, 0] < ROWS[0, 0] and out[0, 3] > 0  # the confident entry shrinks, the zero one grows
    assert (out.argmax(1)[:2] == ROWS.argmax(1)[:2]).all()


@pytest.mark.parametrize(("beta", "gamma"), [(1.0, 0.1), (0.7, 0.1), (0.3, 0.5), (2.0, 0.2)])
@pytest.mark.parametrize("classes", [2, 10])
def test_reverse_sigmoid_agrees_with_art(beta: float, gamma: float, classes: int) -> None:
    rows = random_rows(200, classes, seed=classes)
    rows[0] = np.eye(classes)[0]  # an exact one-hot, where ART's float32 clip matters
    ours = ReverseSigmoid(beta, gamma).apply(rows, np.random.default_rng(0))
    with np.errstate(divide="ignore"):  # ART takes log(0) for entries of 1 (float32)
        art = ArtReverseSigmoid(beta=beta, gamma=gamma)(rows)
    assert_distributions(ours)
    np.testing.assert_allclose(ours, art, atol=1e-5)


def test_reverse_sigmoid_default_gamma_is_arts() -> None:
    assert str(parse_defence("reverse-sigmoid:0.7")) == "reverse-sigmoid:0.7,0.1"
    assert ArtReverseSigmoid().gamma == 0.1


def test_misinformation_answers_confident_rows_truthfully_and_reverses_unsure_ones() -> None:
    defence = parse_defence("misinformation:0.9")
    assert isinstance(defence, AdaptiveMisinformation) and str(defence) == "misinformation:0.9,1000"
    out = defence.apply(ROWS, np.random.default_rng(0))
    assert_distributions(out)
    np.testing.assert_allclose(out[0], ROWS[0], atol=1e-6)  # max 0.97 > 0.9: in distribution
    np.testing.assert_allclose(out[1], [0.05, 0.20, 0.35, 0.40], atol=1e-6)  # ranks reversed
    assert out[1].argmax() == 3  # the least likely class now leads
    np.testing.assert_allclose(out[2], 0.25, atol=1e-6)


def test_misinformation_blends_smoothly_with_a_small_nu() -> None:
    row = ROWS[1:2]  # max 0.40: a = sigmoid(2 (0.4 - 0.4)) = 1/2 at TAU 0.4
    out = parse_defence("misinformation:0.4,2").apply(row, np.random.default_rng(0))
    np.testing.assert_allclose(out[0], 0.5 * row[0] + 0.5 * row[0][::-1], atol=1e-6)


def test_chains_apply_left_to_right() -> None:
    defence = parse_defence("misinformation:0.9 + reverse-sigmoid:0.7")
    assert isinstance(defence, Chain) and str(defence) == "misinformation:0.9,1000+reverse-sigmoid:0.7,0.1"
    rng = np.random.default_rng(0)
    expected = ReverseSigmoid(0.7).apply(AdaptiveMisinformation(0.9).apply(ROWS, rng), rng)
    np.testing.assert_allclose(defence.apply(ROWS, rng), expected, atol=1e-7)
    assert parse_defence("none+noise:0.1") == GaussianNoise(0.1)
    assert parse_defence(str(defence)) == defence  # the spec reads back
    assert parse_defence("misinformation:0.9,1e+3") == AdaptiveMisinformation(0.9, 1000.0)


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("laplace:0.1", "unknown policy 'laplace'"),
        ("noise", "use noise:S"),
        ("noise:0", "S > 0"),
        ("noise:-1", "S > 0"),
        ("noise:abc", "takes numbers"),
        ("noise:nan", "S > 0"),
        ("reverse-sigmoid:0.7,0.1,3", "reverse-sigmoid:BETA[,GAMMA]"),
        ("reverse-sigmoid:0", "BETA > 0"),
        ("reverse-sigmoid:1,0", "GAMMA > 0"),
        ("misinformation:1.5", "0 < TAU <= 1"),
        ("misinformation:0.9,-1", "NU > 0"),
        ("noise:0.1+", "takes numbers"),
        ("", "use none"),
    ],
)
def test_bad_specs_are_config_errors_naming_the_spec(spec: str, says: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_defence(spec)
    assert says in str(info.value) and repr(spec) in str(info.value)


def test_a_defence_refuses_rows_that_are_not_probability_rows() -> None:
    with pytest.raises(OracleError, match="probability rows"):
        parse_defence("noise:0.1").apply(np.full((2, 3), np.nan), np.random.default_rng(0))


def table_target(classes: int = 4) -> CallableBackend:
    """A callable target answering the same hand-made rows for every image (the first pixel picks)."""

    def fn(images: np.ndarray) -> np.ndarray:
        return ROWS[(images[:, 0, 0, 0] * 2.999).astype(int)]

    return CallableBackend(fn, classes, owned=True)


def pick_images(which: list[int]) -> np.ndarray:
    x = np.zeros((len(which), 1, 28, 28), np.float32)
    x[:, 0, 0, 0] = np.asarray(which) / 2.0
    return x


def test_a_defended_backend_behind_an_oracle_counts_every_answer_and_then_applies_the_mode() -> None:
    backend = DefendedBackend(table_target(), "misinformation:0.9", seed=0)
    assert backend.owned and backend.num_classes == 4 and backend.input_shape == (1, 28, 28)
    oracle = Oracle(backend, mode="topk:2", budget=5)
    answers = oracle.query(pick_images([0, 1]), keys=np.array([0, 1]))
    np.testing.assert_allclose(answers[1], [0.0, 0.0, 0.35, 0.40], atol=1e-6)  # reversed, then top 2
    assert oracle.used == 2
    oracle.query(pick_images([0, 1]), keys=np.array([0, 1]))  # from the ledger: free
    assert oracle.used == 2
    labels = oracle.evaluate(pick_images([1]))  # the owner's own model: free, and defended too
    assert labels is not None and labels.tolist() == [3] and oracle.used == 2
    oracle.query(pick_images([0, 2, 2]))
    assert oracle.used == 5
    with pytest.raises(OracleError, match="budget"):
        oracle.query(pick_images([0]))


def test_random_answers_depend_on_the_seed_and_the_request_not_on_the_call_order() -> None:
    x, y = pick_images([0, 1]), pick_images([2, 1])
    one, other = (
        DefendedBackend(table_target(), "noise:0.05", 7),
        DefendedBackend(table_target(), "noise:0.05", 7),
    )
    first = one.answer(x, "a")
    other.answer(y, "b")
    np.testing.assert_array_equal(other.answer(x, "c"), first)  # replayed after a resume: same answers
    assert not np.allclose(one.answer(y, "d")[1], first[1])  # another request: fresh noise
    assert not np.allclose(DefendedBackend(table_target(), "noise:0.05", 8).answer(x, "a"), first)


def test_defend_wraps_an_oracle_and_refuses_a_target_with_its_own_policy() -> None:
    oracle = defend(CallableOracle(table_target().fn, 4), "reverse-sigmoid:0.7")
    assert isinstance(oracle.backend, DefendedBackend) and not oracle.free_evaluation
    assert defend(CallableOracle(table_target().fn, 4), "none").backend.__class__ is CallableBackend

    class Remote(CallableBackend):
        remote_mode = OutputMode.parse("label")  # an API that applies its own policy

    with pytest.raises(OracleError, match="applies its own output policy"):
        DefendedBackend(Remote(table_target().fn, 4), "noise:0.1")


def test_defence_cost_measures_accuracy_changed_labels_and_l1() -> None:
    images, labels = pick_images([0, 1, 2, 1]), np.array([0, 0, 0, 1])
    cost = defence_cost(table_target(), "misinformation:0.9", images, labels)
    assert cost.undefended_accuracy == 0.75  # rows 0, 1, 2 answer class 0; the last label is 1
    assert cost.accuracy == 0.5 and cost.label_changed == 0.5  # the unsure rows now answer class 3
    np.testing.assert_allclose(cost.mean_l1, (0 + 1.0 + 0 + 1.0) / 4, atol=1e-6)
    assert defended_accuracy(table_target(), "none", images, labels) == 0.75
    with pytest.raises(OracleError, match="only for a model you own"):
        defence_cost(CallableBackend(table_target().fn, 4), "none", images, labels)
