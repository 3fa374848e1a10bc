"""`open_oracle`: the one place a command turns a target argument (a model file of any kind we read, or a
URL) into an oracle, and the target options it passes on (input shape, logits or probabilities,
normalisation), parsed and checked here once for every adapter."""

from __future__ import annotations

import os
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from activethief.errors import ConfigError, ModelError
from activethief.oracle.base import Oracle, Shape, check_input_shape
from activethief.oracle.defences import Defence, DefendedBackend, NoDefence, parse_defence
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import Normaliser, Returns, check_returns, make_normaliser

InputShape = Shape
Normalise = tuple[tuple[float, ...], tuple[float, ...]]
TargetKind = Literal["activethief", "torchscript", "onnx", "http"]

# Per-channel (mean, std) that `--normalise NAME` stands for.
NAMED_NORMALISATIONS: dict[str, Normalise] = {
    "imagenet": ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)),
}
# How far a row of "probabilities" may be from summing to 1 (float16 targets round to ~1e-3).
PROBS_TOLERANCE = 2e-3


def is_remote(target: str) -> bool:
    """Whether a target argument names an HTTP(S) endpoint rather than a model file."""
    return target.startswith(("http://", "https://"))


def parse_input_shape(text: str) -> InputShape:
    """`"3,32,32"` (or `"3x32x32"`) as (3, 32, 32): the `--input-shape C,H,W` option."""
    parts = text.replace("x", ",").split(",")
    try:
        dims = [int(p) for p in parts]
    except ValueError:
        raise ConfigError(f"--input-shape {text!r}: expected C,H,W as three integers, e.g. 3,32,32") from None
    return check_input_shape(dims, f"--input-shape {text!r}")


def check_normalise(
    normalise: tuple[Sequence[float], Sequence[float]] | str | None, channels: int
) -> Normaliser | None:
    """The target's normalisation: `(mean, std)` (one value or one per channel), a name from
    `NAMED_NORMALISATIONS` (`--normalise imagenet`), or None (the target takes plain [0, 1] images)."""
    if isinstance(normalise, str):
        normalise = parse_normalise(normalise)
    return make_normaliser(normalise, (channels, 1, 1))


def parse_normalise(text: str) -> Normalise:
    """`"0.5,0.5,0.5:0.25,0.25,0.25"` (MEAN,...:STD,...) or a name (`imagenet`): `--normalise`."""
    named = NAMED_NORMALISATIONS.get(text.strip().lower())
    if named is not None:
        return named
    halves = text.split(":")
    try:
        if len(halves) != 2:
            raise ValueError
        mean, std = (tuple(float(v) for v in half.split(",")) for half in halves)
    except ValueError:
        names = ", ".join(NAMED_NORMALISATIONS)
        raise ConfigError(
            f"--normalise {text!r}: expected MEAN,...:STD,... (e.g. 0.5,0.5,0.5:0.25,0.25,0.25) or one of: "
            f"{names}"
        ) from None
    return mean, std


def looks_like_probs(outputs: np.ndarray) -> bool:
    """Whether every row is non-negative and sums to 1: a target that applies softmax itself."""
    out = np.asarray(outputs, dtype=np.float64)
    return bool(out.size and (out >= -1e-6).all() and (np.abs(out.sum(1) - 1.0) <= PROBS_TOLERANCE).all())


def decide_returns(returns: str | None, probe: np.ndarray, target: str) -> Returns:
    """What the target outputs, checked on the outputs of a probe batch (softmax is applied once).

    `returns=None` reads it from the model: probabilities when every probe row is a distribution,
    logits otherwise. A stated value that the probe contradicts is a ConfigError, since applying
    softmax to probabilities (or passing logits off as probabilities) would silently corrupt answers.
    """
    probs = looks_like_probs(probe)
    if returns is None:
        return "probs" if probs else "logits"
    stated = check_returns(returns)
    if stated == "logits" and probs:
        raise ConfigError(
            f"{target}: returns='logits' but the target's outputs on a probe batch are probabilities "
            "(non-negative rows summing to 1); pass returns='probs' (--returns probs) so softmax is not "
            "applied twice"
        )
    if stated == "probs" and not probs:
        raise ConfigError(
            f"{target}: returns='probs' but the target's outputs on a probe batch are not probabilities "
            "(negative values or rows not summing to 1); pass returns='logits' (--returns logits)"
        )
    return stated


def probe_images(shape: InputShape, count: int = 2) -> np.ndarray:
    """A fixed batch of `count` synthetic images [count, C, H, W] in [0, 1] that adapters run at open time
    to check the target's input and output shapes (never pool images, so nothing about the pool leaks)."""
    return np.random.default_rng(0).random((count, *shape), dtype=np.float32)


def target_kind(target: str) -> TargetKind:
    """Which adapter reads `target`, decided from the name and the file's table of contents only.

    A URL is `http`; a `.onnx` file is `onnx`; a zip archive with `code/` and `constants.pkl` entries
    (what `torch.jit.save` writes, whatever its suffix: `.pt`, `.pth`, `.ts`) is `torchscript`; any
    other file is an activethief model file (`models.load` says so if it is not). Nothing in the
    file is unpickled or executed here.
    """
    if is_remote(target):
        return "http"
    path = Path(target)
    if not path.is_file():
        raise ModelError(f"target file {path} does not exist")
    if path.suffix.lower() == ".onnx":
        return "onnx"
    if zipfile.is_zipfile(path):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except (zipfile.BadZipFile, OSError) as exc:
            raise ModelError(f"{path} is not a readable model file: {exc}") from exc
        has_code = any(n.split("/", 2)[1:2] == ["code"] for n in names)
        has_constants = any(n.split("/")[1:] == ["constants.pkl"] for n in names)
        if has_code and has_constants:
            return "torchscript"
    return "activethief"


def _check_against_model_file(
    target: str,
    input_shape: Sequence[int] | None,
    returns: str | None,
    normalise: tuple[Sequence[float], Sequence[float]] | str | None,
    recorded: Sequence[int],
) -> None:
    """Target options given for an activethief model file must agree with what the file records."""
    if input_shape is not None and check_input_shape(input_shape) != tuple(recorded):
        raise ConfigError(
            f"{target} is an activethief model file for input shape {tuple(recorded)}; "
            f"input_shape={tuple(input_shape)} contradicts it (leave --input-shape out)"
        )
    if returns is not None and check_returns(returns) != "logits":
        raise ConfigError(
            f"{target} is an activethief model file, whose networks output logits; "
            f"returns={returns!r} contradicts it (leave --returns out)"
        )
    if normalise is not None:
        raise ConfigError(
            f"{target} is an activethief model file, whose networks take images in [0, 1] with no "
            "normalisation; leave --normalise out"
        )


def _open_http(
    target: str,
    budget: int | None,
    ledger: Ledger | Path | str | None,
    api_key_env: str | None,
    retry_for: float | None,
    input_shape: Sequence[int] | None,
) -> Oracle:
    """An `HttpOracle`; only the options the caller gave are passed on, so its own defaults apply."""
    try:
        from activethief.oracle.http import HttpOracle
    except ModuleNotFoundError as exc:
        raise ConfigError(
            f"HTTP targets need the serve extra (missing module {exc.name}); "
            "install it with: pip install 'activethief[serve]'"
        ) from None
    api_key = None
    if api_key_env is not None:
        api_key = os.environ.get(api_key_env)
        if not api_key:
            raise ConfigError(f"--api-key-env {api_key_env}: that environment variable is not set")
    options: dict[str, Any] = {}
    if retry_for is not None:
        options["retry_for"] = retry_for
    if input_shape is not None:
        options["input_shape"] = check_input_shape(input_shape)
    return HttpOracle(target, api_key=api_key, budget=budget, ledger=ledger, **options)


def open_oracle(
    target: str,
    *,
    output_mode: str = "probs",
    budget: int | None = None,
    ledger: Ledger | Path | str | None = None,
    api_key_env: str | None = None,
    retry_for: float | None = None,
    input_shape: Sequence[int] | None = None,
    returns: str | None = None,
    normalise: tuple[Sequence[float], Sequence[float]] | str | None = None,
    defence: Defence | str | None = None,
    defence_seed: int = 0,
) -> Oracle:
    """An oracle for a model file (activethief, TorchScript or ONNX) or an HTTP(S) OIP endpoint.

    The kind of target is decided by `target_kind`. TorchScript and ONNX files are read by
    `TorchScriptOracle` and `OnnxOracle`, which take the target options below; a file the user holds
    is a model they own, so (like an activethief model file) evaluation answers on it are free.

    Args:
        target: a model file (`models.save`, `torch.jit.save`, `.onnx`) or `http(s)://.../v2/models/NAME`.
        output_mode: what a local target reveals (`probs`, `topk:K`, `label`, `round:D`); an HTTP
            target applies its own policy.
        budget: the most queries the oracle answers (None: no limit of ours).
        ledger: where answers are recorded (None: in memory, until `steal` swaps in its run's ledger).
        api_key_env: the environment variable holding an HTTP target's API key.
        retry_for: seconds an HTTP target is retried while it is down (None: `HttpOracle`'s default).
        input_shape: (C, H, W) the target takes, when its file (or an HTTP server) does not say (see
            `parse_input_shape`); checked against what it does say.
        returns: `logits` or `probs`, what the target outputs (None: read from the model).
        normalise: per-channel `(mean, std)` the target expects its input normalised with, or a name
            (`imagenet`); applied by the adapter, never to the pool.
        defence: the owner's answer policy for a model file (`parse_defence`: `noise:S`,
            `reverse-sigmoid:BETA[,GAMMA]`, `misinformation:TAU[,NU]`, chained with `+`), applied to every
            answer before `output_mode` (`DefendedBackend`); None or `none`: truthful answers. An HTTP
            target's defence is its server's business.
        defence_seed: the seed of a random defence's answers (noise).

    Raises:
        ConfigError: for a missing extra, an unset key variable, a key given for a model file, a
            target option that does not apply to (or contradicts) the target, a bad defence spec or a
            defence asked of an HTTP target.
        ModelError: for a file that is missing or not a model of any kind we read.
    """
    if api_key_env is not None and not is_remote(target):
        raise ConfigError("--api-key-env is only for HTTP targets (a URL), not for a model file")
    policy = parse_defence(defence)
    kind = target_kind(target)
    if kind == "http":
        if not isinstance(policy, NoDefence):
            raise ConfigError(
                f"defence {str(policy)!r}: only for a model file in this process; an HTTP target applies its "
                "own answer policy on its server (activethief serve: `defence = ...` in the keys file)"
            )
        if returns is not None or normalise is not None:
            given = " and ".join(
                n for n, v in (("returns", returns), ("normalise", normalise)) if v is not None
            )
            raise ConfigError(
                f"{given}: only for TorchScript and ONNX files; an HTTP target applies its "
                "own output policy and its own input normalisation"
            )
        return _open_http(target, budget, ledger, api_key_env, retry_for, input_shape)
    oracle = _open_file(target, kind, output_mode, budget, ledger, input_shape, returns, normalise)
    return defend(oracle, policy, defence_seed)


def defend(oracle: Oracle, defence: Defence | str | None, seed: int = 0) -> Oracle:
    """`oracle` with its answers behind `defence` (a `DefendedBackend` around its backend), for any
    in-process oracle (`ModelOracle`, `CallableOracle`, TorchScript, ONNX); unchanged for `none`.
    Raises an OracleError for a backend that applies its own policy (HTTP)."""
    policy = parse_defence(defence)
    if not isinstance(policy, NoDefence):
        oracle.backend = DefendedBackend(oracle.backend, policy, seed)
    return oracle


def _open_file(
    target: str,
    kind: TargetKind,
    output_mode: str,
    budget: int | None,
    ledger: Ledger | Path | str | None,
    input_shape: Sequence[int] | None,
    returns: str | None,
    normalise: tuple[Sequence[float], Sequence[float]] | str | None,
) -> Oracle:
    """The oracle for a model file of `kind` (`target_kind`), with the target options checked."""
    if kind == "torchscript":
        from activethief.oracle.torchscript import TorchScriptOracle

        return TorchScriptOracle(
            target,
            input_shape=input_shape,
            returns=returns,
            normalise=normalise,
            mode=output_mode,
            budget=budget,
            ledger=ledger,
        )
    if kind == "onnx":
        from activethief.oracle.onnx import OnnxOracle

        return OnnxOracle(
            target,
            input_shape=input_shape,
            returns=returns,
            normalise=normalise,
            mode=output_mode,
            budget=budget,
            ledger=ledger,
        )
    from activethief.oracle.local import ModelOracle

    try:
        oracle = ModelOracle(target, mode=output_mode, budget=budget, ledger=ledger)
    except ModelError as exc:
        raise ModelError(
            f"{exc}. A target file is one of: an activethief model file (models.save, train-target), a "
            "TorchScript file (torch.jit.save) or an ONNX file (.onnx)"
        ) from None
    try:
        _check_against_model_file(target, input_shape, returns, normalise, oracle.metadata["input_shape"])
    except ConfigError:
        oracle.close()
        raise
    return oracle
