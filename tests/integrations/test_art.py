"""ART classifiers as targets, and ActiveThief as an ART extraction attack, cross-checked against `steal`."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from activethief import models, steal
from activethief.errors import BudgetExceededError, ConfigError, OracleError
from activethief.steal import StealConfig
from activethief.training import FitConfig, fit, predict_proba

art_classification = pytest.importorskip("art.estimators.classification")
integration = pytest.importorskip("activethief.integrations.art")
ARTOracle = integration.ARTOracle
ActiveThiefExtraction = integration.ActiveThiefExtraction
AttackParameterError = integration.AttackParameterError

Mnist = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]
QUICK = FitConfig(epochs=1, patience=1, batch_size=100, warmup_steps=2)  # the loop's rounds: speed only
SETTINGS: dict[str, Any] = {
    "batch_size": 100,
    "seed_size": 100,
    "strategy": "entropy",
    "seed": 3,
    "fit": QUICK,
}


class CountingClassifier(art_classification.PyTorchClassifier):  # type: ignore[misc]
    """A PyTorchClassifier that counts the images it is asked to predict (what the target's owner bills)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.images = 0
        self.seen: list[np.ndarray] = []  # the inputs of each predict call, as the estimator received them

    def predict(self, x: np.ndarray, batch_size: int = 128, **kwargs: Any) -> np.ndarray:
        self.images += len(x)
        self.seen.append(np.array(x))
        return super().predict(x, batch_size=batch_size, **kwargs)


def art_classifier(model: nn.Module, **kwargs: Any) -> Any:
    settings: dict[str, Any] = {"input_shape": (1, 28, 28), "clip_values": (0.0, 1.0), **kwargs}
    return CountingClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        optimizer=torch.optim.RMSprop(model.parameters(), lr=1e-3),
        nb_classes=10,
        device_type="cpu",
        **settings,
    )


@pytest.fixture(scope="module")
def target(mnist_small: Mnist) -> nn.Module:
    """A cnn2 trained on 2,000 MNIST images: its answers are informative, its outputs logits."""
    x, y = mnist_small[0], mnist_small[1]
    model = models.build("cnn2", seed=0)
    fit(model, x[:2000], y[:2000], config=FitConfig(epochs=2, val_fraction=0.0), seed=0)
    return model.eval()


class NHWCScaled(nn.Module):
    """The target behind a channels-last estimator on [0, 255]: same function, another input space."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x.permute(0, 3, 1, 2) / 255.0)
        return out


class Normalised(nn.Module):
    """A target whose model expects (x - 0.5) / 0.25, with an estimator that does not normalise."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x * 0.25 + 0.5)
        return out


class Flat(nn.Module):
    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.inner = inner

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.inner(x.reshape(-1, 1, 28, 28))
        return out


def test_both_entry_points_buy_the_same_points(target: nn.Module, mnist_small: Mnist) -> None:
    """The cross-check: ActiveThiefExtraction.extract and steal(ARTOracle(...)) make the same purchases."""
    pool, xt = mnist_small[0][2000:3000], mnist_small[2]

    victim_a = art_classifier(target)
    thieved_model = models.build("lenet", seed=1)  # the thieved classifier's architecture is the user's
    thieved = art_classifier(thieved_model)
    attack = ActiveThiefExtraction(victim_a, nb_stolen=300, nb_epochs=8, batch_size_fit=64, **SETTINGS)
    returned = attack.extract(pool, thieved_classifier=thieved)

    victim_b = art_classifier(target)
    oracle = ARTOracle(victim_b)
    result = steal(oracle, pool, StealConfig(budget=300, **SETTINGS), quiet=True)

    keys_a, _, rounds_a = attack.oracle.ledger.all_answers()
    keys_b, _, rounds_b = oracle.ledger.all_answers()
    assert len(keys_a) == 300
    np.testing.assert_array_equal(keys_a, keys_b)
    np.testing.assert_array_equal(rounds_a, rounds_b)
    assert sorted(set(rounds_a.tolist())) == [0, 1, 2]  # a seed round, then two selected rounds of 100
    assert attack.result.queries_used == result.queries_used == 300
    assert attack.oracle.used == oracle.used == 300
    # Every image the victims saw went through an oracle, and nothing was asked twice.
    assert victim_a.images == victim_b.images == 300
    assert [r.selected for r in attack.result.history] == [r.selected for r in result.history]

    # The thieved classifier was fitted on the 300 bought answers: it now agrees with the victim far above
    # the 10% of chance (an untrained lenet) on unseen images, and was returned trained in place.
    assert returned is thieved
    agreement = (predict_proba(thieved_model, xt).argmax(1) == predict_proba(target, xt).argmax(1)).mean()
    assert agreement > 0.6, agreement


def test_extract_writes_a_run_folder_and_resumes_without_buying(
    tmp_path: Any, target: nn.Module, mnist_small: Mnist
) -> None:
    pool = mnist_small[0][2000:2600]
    settings = {**SETTINGS, "nb_stolen": 200, "nb_epochs": 1, "out": tmp_path / "run"}
    victim = art_classifier(target)
    ActiveThiefExtraction(victim, **settings).extract(
        pool, thieved_classifier=art_classifier(models.build("cnn2"))
    )
    assert (tmp_path / "run" / "ledger.sqlite").exists()
    again = ActiveThiefExtraction(victim, resume=True, **settings)
    again.extract(pool, thieved_classifier=art_classifier(models.build("cnn2")))
    assert victim.images == 200  # the resumed run found every answer in the folder's ledger
    assert again.oracle.used == 200


def test_channels_last_and_clip_range_are_converted(target: nn.Module, mnist_small: Mnist) -> None:
    images = mnist_small[2][:50]
    plain = ARTOracle(art_classifier(target)).query(images)
    nhwc = art_classifier(
        NHWCScaled(target), input_shape=(28, 28, 1), channels_first=False, clip_values=(0, 255)
    )
    oracle = ARTOracle(nhwc)
    assert oracle.art_backend.input_shape == (1, 28, 28)
    np.testing.assert_allclose(oracle.query(images), plain, atol=1e-5)
    # The pool given in the estimator's space comes back to [0, 1] NCHW.
    x = images.transpose(0, 2, 3, 1) * 255.0
    np.testing.assert_allclose(oracle.art_backend.from_estimator(x), images, atol=1e-6)
    flat = ARTOracle(art_classifier(Flat(target), input_shape=(784,)), image_shape=(1, 28, 28))
    np.testing.assert_allclose(flat.query(images), plain, atol=1e-5)
    with pytest.raises(ConfigError, match="image_shape"):
        ARTOracle(art_classifier(Flat(target), input_shape=(784,)))
    normalised = ARTOracle(art_classifier(Normalised(target), clip_values=None), normalise=([0.5], [0.25]))
    np.testing.assert_allclose(normalised.query(images), plain, atol=1e-5)


def test_extract_from_a_channels_last_victim(target: nn.Module, mnist_small: Mnist) -> None:
    """The pool is given in the victim's space (NHWC, [0, 255]); the thieved classifier is fitted there."""
    pool = mnist_small[0][2000:2400].transpose(0, 2, 3, 1) * 255.0
    space = {"input_shape": (28, 28, 1), "channels_first": False, "clip_values": (0, 255)}
    victim = art_classifier(NHWCScaled(target), **space)
    thieved = art_classifier(NHWCScaled(models.build("cnn2", seed=2)), **space)
    attack = ActiveThiefExtraction(victim, nb_stolen=100, batch_size=50, fit=QUICK, nb_epochs=1)
    attack.extract(pool, thieved_classifier=thieved)
    keys, _, rounds = attack.oracle.ledger.all_answers()
    assert len(keys) == 100 and victim.images == 100
    # The victim was asked the pool's own rows, in its own space (one predict call per round).
    assert len(victim.seen) == 2
    for round_, seen in enumerate(victim.seen):
        np.testing.assert_allclose(seen, pool[keys[rounds == round_]], atol=1e-3)
    assert thieved.predict(pool[:5]).shape == (5, 10)


def test_softmax_is_applied_once(target: nn.Module, mnist_small: Mnist) -> None:
    images = mnist_small[2][:40]
    logits_victim = art_classifier(target)
    probs = ARTOracle(logits_victim).query(images)
    np.testing.assert_allclose(probs.sum(1), 1.0, atol=1e-5)
    np.testing.assert_allclose(probs, predict_proba(target, images), atol=1e-5)
    softmax_model = nn.Sequential(target, nn.Softmax(dim=1))
    oracle = ARTOracle(art_classifier(softmax_model))
    assert oracle.art_backend.returns == "probs"  # read from the model's last layer
    np.testing.assert_allclose(oracle.query(images), probs, atol=1e-5)  # not softmax(softmax(.))
    # A functional softmax is found from the answers themselves.
    black_box = art_classification.BlackBoxClassifier(
        lambda x: predict_proba(target, x), input_shape=(1, 28, 28), nb_classes=10, clip_values=(0.0, 1.0)
    )
    box = ARTOracle(black_box)
    np.testing.assert_allclose(box.query(images), probs, atol=1e-5)
    assert box.art_backend.returns == "probs"
    with pytest.raises(OracleError, match="returns='logits'"):
        ARTOracle(art_classifier(target), returns="probs").query(images)
    explicit = ARTOracle(art_classifier(target), returns="logits").query(images)
    np.testing.assert_allclose(explicit, probs, atol=1e-6)


def test_every_answer_is_counted_and_owned_is_explicit(target: nn.Module, mnist_small: Mnist) -> None:
    images = mnist_small[2][:10]
    victim = art_classifier(target)
    oracle = ARTOracle(victim, budget=5)
    assert not oracle.free_evaluation and oracle.evaluate(images) is None
    with pytest.raises(BudgetExceededError):
        oracle.query(images)
    assert victim.images == 0  # refused before the target was asked
    labels = ARTOracle(victim, owned=True, mode="label").evaluate(images)
    assert labels is not None and victim.images == 10
    np.testing.assert_array_equal(labels, predict_proba(target, images).argmax(1))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"nb_stolen": 0}, "nb_stolen"),
        ({"nb_epochs": -1}, "nb_epochs"),
        ({"strategy": "no-such-strategy"}, "strategy"),
        ({"batch_size": 0}, "batch_size"),
        ({"mode": "half"}, "output mode"),
        ({"returns": "scores"}, "returns"),
        ({"preset": "fastest"}, "preset"),
        ({"use_probability": "yes"}, "use_probability"),
        ({"resume": True}, "out"),
    ],
)
def test_bad_parameters_are_named(target: nn.Module, settings: dict[str, Any], message: str) -> None:
    with pytest.raises(AttackParameterError, match=message) as caught:
        ActiveThiefExtraction(art_classifier(target), **settings)
    assert isinstance(caught.value, ValueError) and isinstance(caught.value, ConfigError)


def test_set_params_and_extract_check_their_inputs(target: nn.Module, mnist_small: Mnist) -> None:
    attack = ActiveThiefExtraction(art_classifier(target), nb_stolen=100, batch_size=50)
    assert attack.config.budget == 100 and attack.config.batch_size == 50
    assert attack.config.strategy == StealConfig(budget=1).strategy  # unset: the preset's value
    with pytest.raises(AttackParameterError, match="batch_size"):
        attack.set_params(batch_size=-3)
    attack.set_params(batch_size=20, strategy="margin")
    assert attack.config.batch_size == 20 and attack.config.strategy == "margin"
    with pytest.raises(ValueError, match="cannot be set"):
        attack.set_params(colour="red")
    pool = mnist_small[0][:200]
    with pytest.raises(AttackParameterError, match="thieved_classifier"):
        attack.extract(pool)
    wrong = art_classification.PyTorchClassifier(
        model=models.build("cnn2", 4), loss=nn.CrossEntropyLoss(), input_shape=(1, 28, 28), nb_classes=4
    )
    with pytest.raises(AttackParameterError, match="4 classes"):
        attack.extract(pool, thieved_classifier=wrong)
    with pytest.raises(ConfigError, match=r"\[n, 1, 28, 28\]"):
        attack.extract(pool[:, 0], thieved_classifier=art_classifier(models.build("cnn2")))
    low_budget = ActiveThiefExtraction(art_classifier(target), nb_stolen=300, preset="low-budget")
    assert low_budget.config.strategy == "entropy+kcenter" and low_budget.config.budget == 300


def test_rgb_channels_last_backend_converts_layout_and_per_channel_clip() -> None:
    """An RGB 16x16 estimator taking NHWC in per-channel ranges: the backend's own conversion (the Oracle's
    shape check for RGB targets is the oracle's, tested there)."""
    rng = np.random.default_rng(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16 * 16 * 3, 5))
    low, high = np.array([0.0, -1.0, 10.0], np.float32), np.array([255.0, 1.0, 20.0], np.float32)
    victim = art_classification.PyTorchClassifier(
        model=model,
        loss=nn.CrossEntropyLoss(),
        input_shape=(16, 16, 3),
        nb_classes=5,
        channels_first=False,
        clip_values=(low, high),
    )
    backend = integration.ARTBackend(victim)
    assert backend.input_shape == (3, 16, 16) and backend.num_classes == 5 and not backend.owned
    images = rng.random((4, 3, 16, 16), dtype=np.float32)
    x = backend.to_estimator(images)
    assert x.shape == (4, 16, 16, 3)
    np.testing.assert_allclose(x[..., 1], images[:, 1] * 2.0 - 1.0, atol=1e-6)
    np.testing.assert_allclose(x[..., 2], images[:, 2] * 10.0 + 10.0, atol=1e-5)
    np.testing.assert_allclose(backend.from_estimator(x), images, atol=1e-5)
    answers = backend.answer(images, "id")
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(answers, torch.softmax(torch.from_numpy(logits), 1).numpy(), atol=1e-6)
    with pytest.raises(ConfigError, match="clip_values"):
        integration.ARTBackend(
            art_classification.PyTorchClassifier(
                model=model,
                loss=nn.CrossEntropyLoss(),
                input_shape=(3, 16, 16),
                nb_classes=5,
                clip_values=(low, high),
            )
        )
