"""ART (the Adversarial Robustness Toolbox) and activethief: ART classifiers as targets, and ActiveThief as an
ART extraction attack (`ActiveThiefExtraction`).

ART's extraction attacks (CopycatCNN, KnockoffNets) draw their queries at random or by a bandit over the
pool's true classes; `ActiveThiefExtraction` buys them with ActiveThief's active-learning rounds (Pal et al.,
AAAI 2020) instead. Either way every answer goes through an activethief `Oracle`: counted, kept in the
ledger, never beyond the budget, never bought twice.

Two spaces meet here. activethief's images are float32 `[N, C, H, W]` in [0, 1]; an ART estimator takes
`[N, *classifier.input_shape]` in its own layout (`channels_first`) and value range (`clip_values`).
`ARTBackend` converts one to the other (`to_estimator`, `from_estimator`): transposed for a channels-last
estimator, reshaped for a flat one (`image_shape`), scaled linearly from [0, 1] onto `clip_values`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

import numpy as np
import torch
from torch import nn

from activethief.errors import ConfigError, OracleError
from activethief.oracle.base import Oracle
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import make_normaliser, softmax
from activethief.oracle.modes import OutputMode, answers_to_targets
from activethief.steal import StealConfig, StealResult, steal
from activethief.steal.config import PRESETS
from activethief.training import FitConfig

try:
    from art.attacks.attack import ExtractionAttack
    from art.estimators.classification.classifier import ClassifierMixin
    from art.estimators.estimator import BaseEstimator
except ImportError as exc:  # ART is optional: only this module needs it
    raise ConfigError(
        "activethief.integrations.art needs the Adversarial Robustness Toolbox: "
        f"pip install adversarial-robustness-toolbox ({exc})"
    ) from None

__all__ = ["ARTBackend", "ARTOracle", "ActiveThiefExtraction", "AttackParameterError"]

logger = logging.getLogger(__name__)

Returns = Literal["auto", "logits", "probs"]
RETURNS = ("auto", "logits", "probs")
# How far a row's sum may stray from 1 and still read as probabilities (rounded answers, float32 sums).
PROB_TOLERANCE = 0.02


class AttackParameterError(ConfigError, ValueError):
    """A bad ART-side parameter: a `ConfigError` for activethief, a `ValueError` as ART's attacks raise."""


def _looks_like_probs(rows: np.ndarray) -> bool:
    """True when every row is a probability vector: entries in [0, 1] summing to 1 (within a tolerance)."""
    if not len(rows):
        return True
    inside = bool(((rows >= 0.0) & (rows <= 1.0 + 1e-6)).all())
    return inside and bool((np.abs(rows.sum(1) - 1.0) <= PROB_TOLERANCE).all())


def _declared_returns(classifier: Any) -> Returns:
    """What the estimator itself says it returns, or "auto" when only its answers can tell.

    ART's PyTorchClassifier returns the model's output as is (logits unless the model ends in a softmax);
    postprocessing defences (ReverseSigmoid, Rounded, ClassLabels, ...) work on and return probabilities.
    """
    if getattr(classifier, "postprocessing_defences", None):
        return "probs"
    model = getattr(classifier, "model", None)
    if isinstance(model, nn.Module):
        last = list(model.modules())[-1]
        if isinstance(last, nn.Softmax):
            return "probs"
        if isinstance(last, nn.LogSoftmax):  # softmax(log p) = p: log-probabilities are logits
            return "logits"
    return "auto"


def _image_layout(
    estimator_shape: tuple[int, ...], channels_first: bool, image_shape: Sequence[int] | None
) -> tuple[tuple[int, int, int], str]:
    """(C, H, W) of the estimator's images and how its inputs are laid out: nchw, nhwc, hw or flat."""
    given = None if image_shape is None else tuple(int(d) for d in image_shape)
    if given is not None and len(given) != 3:
        raise ConfigError(f"image_shape must be (C, H, W); got {list(given)}")
    if len(estimator_shape) == 3:
        if channels_first:
            shape, layout = estimator_shape, "nchw"
        else:
            height, width, channels = estimator_shape
            shape, layout = (channels, height, width), "nhwc"
        derived = (int(shape[0]), int(shape[1]), int(shape[2]))
        if given is not None and given != derived:
            raise ConfigError(
                f"image_shape {list(given)} contradicts the ART classifier's input_shape "
                f"{list(estimator_shape)} (channels_first={channels_first}); leave image_shape unset"
            )
        return derived, layout
    if len(estimator_shape) == 2 and given is None:
        return (1, int(estimator_shape[0]), int(estimator_shape[1])), "hw"
    if given is None:
        raise ConfigError(
            f"the ART classifier's input_shape {list(estimator_shape)} is not an image shape; pass "
            "image_shape=(C, H, W) with C*H*W equal to its size (inputs are then flattened in C, H, W order)"
        )
    if int(np.prod(given)) != int(np.prod(estimator_shape)):
        raise ConfigError(
            f"image_shape {list(given)} has {int(np.prod(given))} values but the ART classifier's "
            f"input_shape {list(estimator_shape)} has {int(np.prod(estimator_shape))}"
        )
    return (given[0], given[1], given[2]), "flat"


class ARTBackend:
    """Any ART classifier (`ClassifierMixin`: PyTorchClassifier, BlackBoxClassifier, TensorFlow, scikit-learn
    wrappers, ...) as an activethief backend.

    The images it is given are float32 `[n, C, H, W]` in [0, 1]; `to_estimator` puts them in the estimator's
    layout and range before `classifier.predict`. Its answers become probabilities once: softmax for logits,
    as they are for probabilities.

    Args:
        classifier: the ART estimator (the target).
        returns: "logits", "probs", or "auto" (default): what the estimator declares when it can (a model
            ending in `nn.Softmax`, or postprocessing defences: probabilities; ending in `nn.LogSoftmax`:
            logits), else decided from its first answers (rows of non-negative values summing to 1 are
            probabilities, anything else logits) and kept for every later answer. A target declared (or
            found) to return probabilities that then answers otherwise raises an OracleError.
        owned: True only for a model the user owns outright (then evaluation answers are free). Default
            False: an ART classifier may wrap a remote, paid API (BlackBoxClassifier), so every answer counts.
        normalise: per-channel (mean, std) applied after scaling to `clip_values`, for a model that expects
            normalised inputs but whose estimator does not normalise itself; leave None when the estimator was
            built with ART's `preprocessing=(mean, std)` (ART applies that already).
        image_shape: (C, H, W) for an estimator whose `input_shape` is flat (e.g. `(784,)`).
        predict_batch_size: `batch_size` handed to `classifier.predict`.
    """

    remote_mode: OutputMode | None = None

    def __init__(
        self,
        classifier: Any,
        *,
        returns: Returns = "auto",
        owned: bool = False,
        normalise: tuple[Sequence[float], Sequence[float]] | None = None,
        image_shape: Sequence[int] | None = None,
        predict_batch_size: int = 128,
    ) -> None:
        if not isinstance(classifier, ClassifierMixin):
            raise ConfigError(
                f"expected an ART classifier (art.estimators.classification.ClassifierMixin); got "
                f"{type(classifier).__name__}"
            )
        if returns not in RETURNS:
            raise ConfigError(f"returns must be one of {', '.join(RETURNS)}; got {returns!r}")
        if not isinstance(owned, bool):
            raise ConfigError(f"owned must be True or False; got {owned!r}")
        self.classifier = classifier
        self.num_classes = int(classifier.nb_classes)
        if self.num_classes < 2:
            raise ConfigError(f"the ART classifier has nb_classes={self.num_classes}; need at least 2")
        self.estimator_shape = tuple(int(d) for d in classifier.input_shape)
        self.channels_first = bool(getattr(classifier, "channels_first", True))
        self.input_shape, self.layout = _image_layout(self.estimator_shape, self.channels_first, image_shape)
        self.owned = owned
        self.returns: Returns = _declared_returns(classifier) if returns == "auto" else returns
        self.predict_batch_size = predict_batch_size
        clip = getattr(classifier, "clip_values", None)
        low, high = (0.0, 1.0) if clip is None else clip
        # Clip values (scalars, or one per feature in the estimator's layout) held in our [C, H, W] layout.
        self.low, high_ = self._image_values(low, "clip_values"), self._image_values(high, "clip_values")
        self.span = high_ - self.low
        if (self.span < 0).any():
            raise ConfigError(f"the ART classifier's clip_values {clip!r} have max below min")
        self.normaliser = make_normaliser(normalise, self.input_shape)

    def _image_values(self, values: Any, name: str) -> np.ndarray:
        """A scalar, or per-feature values in the estimator's layout moved to [C, H, W]."""
        arr = np.asarray(values, dtype=np.float32)
        if arr.ndim == 0:
            return arr
        try:
            if arr.size == int(np.prod(self.estimator_shape)):
                arr = arr.reshape(self.estimator_shape)
            arr = np.broadcast_to(arr, self.estimator_shape)
        except ValueError:
            raise ConfigError(
                f"the ART classifier's {name} of shape {list(arr.shape)} do not fit its input_shape "
                f"{list(self.estimator_shape)}"
            ) from None
        moved: np.ndarray = self._from_layout(arr[None])[0]
        return moved

    def _to_layout(self, images: np.ndarray) -> np.ndarray:
        if self.layout == "nhwc":
            return np.ascontiguousarray(images.transpose(0, 2, 3, 1))
        return images.reshape(len(images), *self.estimator_shape)

    def _from_layout(self, x: np.ndarray) -> np.ndarray:
        if self.layout == "nhwc":
            return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
        return x.reshape(len(x), *self.input_shape)

    def to_estimator(self, images: np.ndarray) -> np.ndarray:
        """float32 `[n, C, H, W]` in [0, 1] -> the estimator's inputs `[n, *input_shape]`: scaled onto its
        clip range, then normalised (`normalise`), then in its layout."""
        x = np.asarray(images, dtype=np.float32) * self.span + self.low
        if self.normaliser is not None:
            x = self.normaliser(x)
        return self._to_layout(x.astype(np.float32, copy=False))

    def from_estimator(self, x: np.ndarray) -> np.ndarray:
        """The estimator's inputs `[n, *input_shape]` -> float32 `[n, C, H, W]` in [0, 1]: the inverse of
        `to_estimator` without `normalise` (values outside the clip range are clipped to it)."""
        x = np.asarray(x, dtype=np.float32)
        if x.ndim < 1 or tuple(x.shape[1:]) != self.estimator_shape:
            raise ConfigError(
                f"x must have shape [n, {', '.join(map(str, self.estimator_shape))}] (the ART classifier's "
                f"input_shape); got {list(x.shape)}"
            )
        span = np.where(self.span > 0, self.span, np.float32(1.0))
        unit: np.ndarray = np.clip((self._from_layout(x) - self.low) / span, 0.0, 1.0).astype(np.float32)
        return unit

    def answer(self, images: np.ndarray, request_id: str) -> np.ndarray:
        out = self.classifier.predict(self.to_estimator(images), batch_size=self.predict_batch_size)
        rows = np.asarray(out, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.num_classes:
            return rows  # the Oracle reports the wrong shape
        if self.returns == "auto":
            self.returns = "probs" if _looks_like_probs(rows) else "logits"
        if self.returns == "logits":
            return softmax(rows)
        if not _looks_like_probs(rows):
            raise OracleError(
                f"the ART classifier was taken to return probabilities but answered rows with values in "
                f"[{rows.min():.3g}, {rows.max():.3g}] and sums in [{rows.sum(1).min():.3g}, "
                f"{rows.sum(1).max():.3g}]; pass returns='logits' if it returns logits"
            )
        return rows


class ARTOracle(Oracle):
    """An Oracle over an ART classifier: counted answers, output mode, budget and ledger.

    Args:
        classifier: any ART classifier (`ARTBackend` says how its inputs and answers are converted).
        mode: the output mode applied to the target's probabilities (`probs`, `topk:K`, `label`, `round:D`).
        budget: the most queries ever answered (None = unlimited).
        ledger: a path (SQLite file), a `Ledger`, or None for an in-memory ledger.
        owned: True only for a model the user owns outright; default False (every answer counts, evaluation
            included), since an ART classifier may wrap a remote API.
        returns, normalise, image_shape, predict_batch_size: as for `ARTBackend`.
    """

    def __init__(
        self,
        classifier: Any,
        *,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
        owned: bool = False,
        returns: Returns = "auto",
        normalise: tuple[Sequence[float], Sequence[float]] | None = None,
        image_shape: Sequence[int] | None = None,
        predict_batch_size: int = 128,
    ) -> None:
        backend = ARTBackend(
            classifier,
            returns=returns,
            owned=owned,
            normalise=normalise,
            image_shape=image_shape,
            predict_batch_size=predict_batch_size,
        )
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)
        self.art_backend = backend


# StealConfig fields the attack takes under the same name; None keeps the preset's value.
_STEAL_FIELDS = (
    "batch_size",
    "seed_size",
    "strategy",
    "seeding",
    "stop",
    "substitute",
    "seed",
    "warm_start",
    "narrow_factor",
    "fit",
)


def _fit_seed(seed: int) -> int:
    """The seed of the thieved classifier's fit, apart from every seed the steal loop derives."""
    return int(np.random.SeedSequence([seed, 0x4A52]).generate_state(1)[0])


def _positive_int(name: str, value: object) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise AttackParameterError(f"ActiveThiefExtraction: {name} must be a positive integer, got {value!r}")


class ActiveThiefExtraction(ExtractionAttack):  # type: ignore[misc]  # ART ships no type hints
    """ActiveThief (Pal et al., AAAI 2020) as an ART extraction attack: active-learning rounds buy the
    queries, then the thieved classifier is trained on the answers bought, as ART's CopycatCNN does.

    `extract(x, thieved_classifier=...)` runs `activethief.steal` with `x` (in the victim's input space) as
    the pool against the victim wrapped in an `ARTOracle`, which counts every answer and keeps it in a
    ledger. The loop trains its own substitute each round to choose the next queries (`substitute`, `fit`);
    once it stops, `thieved_classifier.fit` is called on the bought images (as given in `x`) and the
    victim's answers: their argmax one-hot, or the answers themselves with `use_probability=True`, for
    `nb_epochs` epochs in batches of `batch_size_fit`. The thieved classifier's architecture is free. The
    loop's own result (history, substitute, queries used) is `attack.result`, its oracle `attack.oracle`.

    Args:
        classifier: the victim, any ART classifier.
        nb_stolen: the most queries to buy (StealConfig.budget).
        preset: the steal preset settings left None start from (`default` or `low-budget`).
        batch_size, seed_size, strategy, seeding, stop, substitute, seed, warm_start, narrow_factor, fit:
            the StealConfig fields of the same names (None: the preset's value). `batch_size` is the
            queries bought per round.
        batch_size_fit: batch size of the thieved classifier's fit.
        nb_epochs: epochs of the thieved classifier's fit.
        use_probability: fit on the victim's answers rather than their argmax one-hot.
        mode: the output mode the victim's answers are reduced to (`probs`, `topk:K`, `label`, `round:D`).
        returns, owned, normalise, image_shape: how the victim is wrapped (`ARTBackend`).
        out: a run folder (history, checkpoints, the ledger); None keeps nothing on disk.
        resume: continue an interrupted run in `out` without buying anything twice.
        ledger: the oracle's ledger (a path or a `Ledger`) when there is no run folder.
        quiet: no progress bar.

    Raises:
        AttackParameterError: a `ConfigError` and `ValueError`, naming the bad parameter.
    """

    attack_params: ClassVar[list[str]] = [
        *ExtractionAttack.attack_params,
        "nb_stolen",
        "preset",
        *_STEAL_FIELDS,
        "batch_size_fit",
        "nb_epochs",
        "use_probability",
        "mode",
        "returns",
        "owned",
        "normalise",
        "image_shape",
        "out",
        "resume",
        "ledger",
        "quiet",
    ]
    _estimator_requirements = (BaseEstimator, ClassifierMixin)

    def __init__(
        self,
        classifier: Any,
        *,
        nb_stolen: int = 1000,
        preset: str = "default",
        batch_size: int | None = None,
        seed_size: int | None = None,
        strategy: str | None = None,
        seeding: str | None = None,
        stop: str | None = None,
        substitute: str | None = None,
        seed: int | None = None,
        warm_start: bool | None = None,
        narrow_factor: float | None = None,
        fit: FitConfig | None = None,
        batch_size_fit: int = 128,
        nb_epochs: int = 10,
        use_probability: bool = False,
        mode: str = "probs",
        returns: Returns = "auto",
        owned: bool = False,
        normalise: tuple[Sequence[float], Sequence[float]] | None = None,
        image_shape: Sequence[int] | None = None,
        out: Path | str | None = None,
        resume: bool = False,
        ledger: Ledger | Path | str | None = None,
        quiet: bool = True,
    ) -> None:
        super().__init__(estimator=classifier)
        self.nb_stolen = nb_stolen
        self.preset = preset
        self.batch_size = batch_size
        self.seed_size = seed_size
        self.strategy = strategy
        self.seeding = seeding
        self.stop = stop
        self.substitute = substitute
        self.seed = seed
        self.warm_start = warm_start
        self.narrow_factor = narrow_factor
        self.fit = fit
        self.batch_size_fit = batch_size_fit
        self.nb_epochs = nb_epochs
        self.use_probability = use_probability
        self.mode = mode
        self.returns = returns
        self.owned = owned
        self.normalise = normalise
        self.image_shape = image_shape
        self.out = out
        self.resume = resume
        self.ledger = ledger
        self.quiet = quiet
        self.result: StealResult | None = None
        self.oracle: ARTOracle | None = None
        self._check_params()

    @property
    def config(self) -> StealConfig:
        """The steal settings these parameters make (the preset, with every parameter given replacing it)."""
        given = {name: getattr(self, name) for name in _STEAL_FIELDS if getattr(self, name) is not None}
        return StealConfig.preset(self.preset, budget=self.nb_stolen, **given)

    @property
    def substitute_model(self) -> nn.Module | None:
        """The steal loop's last substitute (activethief's own architecture), after `extract`."""
        return None if self.result is None else self.result.substitute

    def _check_params(self) -> None:
        super()._check_params()
        _positive_int("nb_stolen", self.nb_stolen)
        _positive_int("batch_size_fit", self.batch_size_fit)
        _positive_int("nb_epochs", self.nb_epochs)
        for name in ("use_probability", "owned", "resume", "quiet"):
            if not isinstance(getattr(self, name), bool):
                raise AttackParameterError(
                    f"ActiveThiefExtraction: {name} must be True or False, got {getattr(self, name)!r}"
                )
        if self.preset not in PRESETS:
            raise AttackParameterError(
                f"ActiveThiefExtraction: unknown preset {self.preset!r}; known: {', '.join(PRESETS)}"
            )
        if self.returns not in RETURNS:
            raise AttackParameterError(
                f"ActiveThiefExtraction: returns must be one of {', '.join(RETURNS)}, got {self.returns!r}"
            )
        if self.resume and self.out is None:
            raise AttackParameterError("ActiveThiefExtraction: resume=True needs the run folder `out`")
        try:
            OutputMode.parse(self.mode)
            self.config  # noqa: B018  # builds and validates the StealConfig
            # The victim's wrapping is checked now rather than at the first query.
            ARTBackend(
                self.estimator, returns=self.returns, normalise=self.normalise, image_shape=self.image_shape
            )
        except ConfigError as exc:
            raise AttackParameterError(f"ActiveThiefExtraction: {exc}") from None

    def extract(
        self, x: np.ndarray, y: np.ndarray | None = None, thieved_classifier: Any = None, **kwargs: Any
    ) -> Any:
        """Steal the victim with `x` as the pool, then fit `thieved_classifier` on the answers bought.

        Args:
            x: the pool, `[N, *classifier.input_shape]` in the victim's layout and clip range.
            y: not used (ActiveThief never sees the pool's labels).
            thieved_classifier: an ART classifier with the victim's input shape and classes, trained in place
                and returned.

        Returns:
            `thieved_classifier`, fitted on the bought answers. `self.result` holds the loop's
            `StealResult` and `self.oracle` the oracle (its ledger: every purchase by pool index and round).
        """
        if kwargs:
            raise AttackParameterError(
                f"ActiveThiefExtraction.extract: unknown argument(s) {', '.join(sorted(kwargs))}"
            )
        if y is not None:
            logger.warning("ActiveThiefExtraction does not use the labels y.")
        self._check_thieved(thieved_classifier)
        oracle = ARTOracle(
            self.estimator,
            mode=self.mode,
            budget=self.nb_stolen,
            ledger=self.ledger,
            owned=self.owned,
            returns=self.returns,
            normalise=self.normalise,
            image_shape=self.image_shape,
        )
        x = np.asarray(x)
        pool = oracle.art_backend.from_estimator(x)
        self.oracle = oracle
        self.result = steal(oracle, pool, self.config, out=self.out, resume=self.resume, quiet=self.quiet)
        keys, answers = oracle.answered()
        if self.use_probability:
            targets = answers_to_targets(answers)
        else:
            targets = np.eye(oracle.num_classes, dtype=np.float32)[answers.argmax(1)]
        # ART's fit shuffles with torch's global generator; fork it so the fit is reproducible from the
        # run seed and the caller's global state is left as it was (as `models.build` does).
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(_fit_seed(self.result.config.seed))
            thieved_classifier.fit(
                x=np.ascontiguousarray(x[keys], dtype=np.float32),
                y=targets,
                batch_size=self.batch_size_fit,
                nb_epochs=self.nb_epochs,
            )
        return thieved_classifier

    def _check_thieved(self, thieved: Any) -> None:
        if thieved is None or not isinstance(thieved, ClassifierMixin) or not hasattr(thieved, "fit"):
            raise AttackParameterError(
                "ActiveThiefExtraction.extract needs thieved_classifier=, an ART classifier with a fit "
                f"method (e.g. a PyTorchClassifier); got {type(thieved).__name__}"
            )
        victim = self.estimator
        if int(thieved.nb_classes) != int(victim.nb_classes):
            raise AttackParameterError(
                f"the thieved classifier has {thieved.nb_classes} classes, the victim {victim.nb_classes}"
            )
        if tuple(thieved.input_shape) != tuple(victim.input_shape):
            raise AttackParameterError(
                f"the thieved classifier's input_shape {list(thieved.input_shape)} differs from the victim's "
                f"{list(victim.input_shape)}: it is trained on the victim's inputs"
            )
