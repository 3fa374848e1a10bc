"""ONNX targets: a `.onnx` classifier run by onnxruntime on the CPU (the `onnx` extra).

Everything about the input is read from the model (`session.get_inputs()[0]`): its name, its dtype
(float32, float16 or uint8: [0, 1] images become `round(x * 255)` for uint8) and its shape. The layout
is NCHW when the second dimension is 1 or 3, and NHWC (images are transposed) when only the last one
is; a batch dimension may be dynamic, or fixed (the last batch is then padded). Dynamic spatial or
channel dimensions need `input_shape=`. One probe batch of synthetic images is run at open time to
check the shape and to read the number of classes from the output width.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from activethief.errors import ConfigError, ModelError
from activethief.oracle.base import Oracle, Shape, check_input_shape
from activethief.oracle.files import FileBackend
from activethief.oracle.ledger import Ledger
from activethief.oracle.local import Returns
from activethief.oracle.modes import OutputMode
from activethief.oracle.open import check_normalise, decide_returns, probe_images

INPUT_DTYPES: dict[str, type[np.generic]] = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
}


def import_onnxruntime() -> Any:
    """The onnxruntime module, or a ConfigError naming the extra that installs it."""
    try:
        import onnxruntime
    except ModuleNotFoundError:
        raise ConfigError(
            "ONNX targets need onnxruntime; install it with: pip install 'activethief[onnx]'"
        ) from None
    return onnxruntime


def _dim(value: object) -> int | None:
    """A static dimension as an int; None for a dynamic one (a name, None or a non-positive number)."""
    return value if isinstance(value, int) and value > 0 else None


def read_layout(
    dims: Sequence[object], given: Shape | None, where: str
) -> tuple[Literal["NCHW", "NHWC"], Shape, int | None]:
    """(layout, (C, H, W), fixed batch size or None) from an ONNX input shape and the user's shape.

    NCHW when the second dimension is 1 or 3; NHWC when the last one is and the second is not (a
    dynamic second dimension with a last of 1 or 3 reads as NHWC too). Dynamic C, H or W are taken
    from `given`; static ones must agree with it.
    """
    if len(dims) != 4:
        raise ModelError(
            f"{where}: the model's input has shape {list(dims)}; an image classifier takes [N, C, H, W]"
        )
    batch, second, third, last = (_dim(d) for d in dims)
    layout: Literal["NCHW", "NHWC"]
    if second in (1, 3):
        layout = "NCHW"
    elif last in (1, 3):
        layout = "NHWC"
    elif given is not None:
        # Neither candidate channel axis is a static 1 or 3: the layout the user's shape fits, NCHW first.
        fits_nhwc = all(m is None or m == u for m, u in zip((last, second, third), given, strict=True))
        fits_nchw = all(m is None or m == u for m, u in zip((second, third, last), given, strict=True))
        layout = "NHWC" if fits_nhwc and not fits_nchw else "NCHW"
    else:
        raise ConfigError(
            f"{where}: cannot tell the channel axis from the model's input shape {list(dims)} (neither "
            "dimension 1 nor the last is 1 or 3); pass input_shape=(C, H, W) (--input-shape C,H,W)"
        )
    chw = (second, third, last) if layout == "NCHW" else (last, second, third)
    if given is not None:
        for name, model_dim, user_dim in zip("CHW", chw, given, strict=True):
            if model_dim is not None and model_dim != user_dim:
                raise ConfigError(
                    f"{where}: input_shape={given} contradicts the model's input shape {list(dims)} "
                    f"({layout}: {name} = {model_dim}, not {user_dim})"
                )
        return layout, given, batch
    if any(d is None for d in chw):
        raise ConfigError(
            f"{where}: the model's input shape {list(dims)} ({layout}) has dynamic channel or spatial "
            "dimensions; pass input_shape=(C, H, W) (--input-shape C,H,W)"
        )
    c, h, w = chw
    assert c is not None and h is not None and w is not None
    return layout, check_input_shape((c, h, w), f"{where}: the model's input shape"), batch


class OnnxBackend(FileBackend):
    """An ONNX classifier run by onnxruntime (CPU provider), in batches.

    Args:
        path: a `.onnx` file.
        input_shape: (C, H, W); needed only when the model's input has dynamic C, H or W, and checked
            against its static dimensions otherwise.
        returns: `logits` (softmax is applied here, once) or `probs`; None reads it from the probe
            batch (probabilities when every output row is a distribution).
        normalise: per-channel `(mean, std)` applied to [0, 1] images before the model sees them
            (not for a model with uint8 input, which normalises its own).
        owned: a file the user holds is a model they own (default, as for activethief model files):
            evaluation answers are free. `owned=False` counts those too, as for a paid API.
        output: the name of the output holding the class scores (default: the model's first).
        batch_size: images per run when the batch dimension is dynamic (bounds memory).
    """

    def __init__(
        self,
        path: Path | str,
        *,
        input_shape: Sequence[int] | None = None,
        returns: str | None = None,
        normalise: tuple[Sequence[float], Sequence[float]] | str | None = None,
        owned: bool = True,
        output: str | None = None,
        batch_size: int = 256,
    ) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        self.owned = owned
        if batch_size < 1:
            raise ConfigError(f"batch_size must be >= 1, got {batch_size}")
        if not self.path.is_file():
            raise ModelError(f"ONNX file {self.path} does not exist")
        options = ort.SessionOptions()
        options.log_severity_level = 3  # errors only: no warnings printed from a library call
        try:
            self.session = ort.InferenceSession(
                str(self.path), sess_options=options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises its own exception types for a bad file
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise ModelError(f"{self.path} is not a readable ONNX model: {first}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = [i.name for i in inputs]
            raise ModelError(
                f"{self.path}: the model has {len(inputs)} inputs {names}; a classifier takes one"
            )
        spec = inputs[0]
        self.input_name: str = spec.name
        if spec.type not in INPUT_DTYPES:
            raise ModelError(
                f"{self.path}: the model's input {spec.name!r} is {spec.type}; supported: "
                f"{', '.join(INPUT_DTYPES)}"
            )
        self.input_dtype = INPUT_DTYPES[spec.type]
        given = None if input_shape is None else check_input_shape(input_shape)
        self.layout, self.input_shape, self.fixed_batch = read_layout(spec.shape, given, str(self.path))
        self.batch_size = self.fixed_batch or batch_size
        outputs = [o.name for o in self.session.get_outputs()]
        if output is not None and output not in outputs:
            raise ConfigError(f"{self.path}: no output named {output!r}; the model's outputs are {outputs}")
        self.output_name: str = output or outputs[0]
        self.normaliser = check_normalise(normalise, self.input_shape[0])
        if self.normaliser is not None and self.input_dtype == np.uint8:
            raise ConfigError(
                f"{self.path}: the model takes uint8 pixels (0-255) and normalises them itself; "
                "leave normalise (--normalise) out"
            )
        probe_batch = probe_images(self.input_shape)
        # A model the user does not own is billed for the probe (`Oracle` counts `probe_queries`).
        self.probe_queries = 0 if self.owned else len(probe_batch)
        probe = self._outputs(probe_batch, probing=True)
        self.num_classes = int(probe.shape[1])
        self.returns: Returns = decide_returns(returns, probe, str(self.path))

    def _feed(self, batch: np.ndarray) -> np.ndarray:
        """[0, 1] float32 images [n, C, H, W] as the model's input: normalised, laid out, typed."""
        if self.normaliser is not None:
            batch = self.normaliser(batch)
        if self.layout == "NHWC":
            batch = batch.transpose(0, 2, 3, 1)
        if self.input_dtype == np.uint8:
            fed: np.ndarray = np.round(np.clip(batch, 0.0, 1.0) * 255.0).astype(np.uint8)
        else:
            fed = np.ascontiguousarray(batch, dtype=self.input_dtype)
        return fed

    def _describe_input(self) -> str:
        return f"input shape {self.input_shape}, {self.layout}"

    def _run(self, batch: np.ndarray) -> np.ndarray:
        """One batch through the session (a model with a fixed batch size gets the last one padded)."""
        count = len(batch)
        if self.fixed_batch is not None and count < self.fixed_batch:
            batch = np.concatenate(
                [batch, np.zeros((self.fixed_batch - count, *batch.shape[1:]), np.float32)]
            )
        (out,) = self.session.run([self.output_name], {self.input_name: self._feed(batch)})
        out = np.asarray(out)
        return out[:count] if out.ndim == 2 else out


class OnnxOracle(Oracle):
    """An oracle over an ONNX file (see `OnnxBackend` for the target options)."""

    def __init__(
        self,
        path: Path | str,
        *,
        input_shape: Sequence[int] | None = None,
        returns: str | None = None,
        normalise: tuple[Sequence[float], Sequence[float]] | str | None = None,
        owned: bool = True,
        output: str | None = None,
        batch_size: int = 256,
        mode: str | OutputMode = "probs",
        budget: int | None = None,
        ledger: Ledger | Path | str | None = None,
    ) -> None:
        backend = OnnxBackend(
            path,
            input_shape=input_shape,
            returns=returns,
            normalise=normalise,
            owned=owned,
            output=output,
            batch_size=batch_size,
        )
        super().__init__(backend, mode=mode, budget=budget, ledger=ledger)
