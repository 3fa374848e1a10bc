"""`activethief steal --pool`: a folder of images or an .npy file, in the target's shape, first N with
--pool-size, and a clean error for a pool of another shape."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from typer.testing import CliRunner

from activethief import cli, models
from activethief.oracle import Ledger

if not any(command.name == "steal" for command in cli.app.registered_commands):
    cli._register_optional_commands()  # once per session, whichever CLI test module is first
runner = CliRunner()


def invoke(*args: str) -> tuple[int, str]:
    result = runner.invoke(cli.app, list(args))
    return result.exit_code, result.output


def gray_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 28, 28), dtype=np.uint8)


def steal_args(target: Path, pool: str, out: Path, *extra: str) -> list[str]:
    return [
        "steal", "--target", str(target), "--pool", pool, "--out", str(out), "--budget", "10",
        "--batch-size", "10", "--strategy", "random", "--quiet", *extra,
    ]  # fmt: skip


def test_steal_takes_a_png_folder_and_an_npy_as_the_pool(tmp_path: Path) -> None:
    target = tmp_path / "target.pt"
    models.save(models.build("cnn2", 10, seed=0), target, arch="cnn2", num_classes=10)
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, image in enumerate(gray_images(30)):
        Image.fromarray(image).save(folder / f"{i:03d}.png")
    (folder / "notes.txt").write_text("not an image")
    code, out = invoke(*steal_args(target, str(folder), tmp_path / "run", "--pool-size", "12"))
    assert code == 0, out
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["queries_used"] == 10
    ledger = Ledger(tmp_path / "run" / "ledger.sqlite")
    keys = ledger.all_answers()[0]
    assert ledger.get_meta("pool_source") == f"{folder}[:12]" and keys.max() < 12  # the first 12 only
    ledger.close()

    np.save(tmp_path / "pool.npy", gray_images(20, seed=1)[:, None])
    code, out = invoke(*steal_args(target, str(tmp_path / "pool.npy"), tmp_path / "run-npy"))
    assert code == 0, out
    assert json.loads((tmp_path / "run-npy" / "summary.json").read_text())["queries_used"] == 10


def test_a_pool_of_another_shape_is_a_clean_error(tmp_path: Path) -> None:
    target = tmp_path / "target.pt"
    models.save(models.build("mlp", 10, seed=0), target, arch="mlp", num_classes=10)
    np.save(tmp_path / "rgb.npy", np.zeros((5, 3, 32, 32), np.uint8))
    code, out = invoke(*steal_args(target, str(tmp_path / "rgb.npy"), tmp_path / "run"))
    assert code == 1 and "Traceback" not in out
    assert "(3, 32, 32)" in out and "(1, 28, 28)" in out
    code, out = invoke(*steal_args(target, str(tmp_path / "missing"), tmp_path / "run2"))
    assert code == 1 and "cannot open pool" in out and "Traceback" not in out


def test_steal_an_rgb_torchscript_target_from_a_png_folder_with_the_target_options(tmp_path: Path) -> None:
    import torch

    model = models.build("cnn2", 10, input_shape=(3, 16, 16), seed=0).eval()
    scripted = tmp_path / "target.ts"
    torch.jit.save(torch.jit.trace(model, torch.zeros(1, 3, 16, 16)), str(scripted))
    folder = tmp_path / "photos"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(30):
        Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    args = steal_args(scripted, str(folder), tmp_path / "run", "--substitute", "cnn2", "--device", "cpu")
    code, out = invoke(*args, "--input-shape", "3,16,16", "--returns", "logits", "--normalise", "0.5:0.25")
    assert code == 0, out
    assert Ledger(tmp_path / "run" / "ledger.sqlite").all_answers()[0].size == 10
    _, metadata = models.load(tmp_path / "run" / "substitute.pt")
    assert list(metadata["input_shape"]) == [3, 16, 16]
    # Without the shape the file does not record, the error says how to give it.
    code, out = invoke(*steal_args(scripted, str(folder), tmp_path / "run2"))
    assert code == 1 and "--input-shape" in out and "Traceback" not in out
    code, out = invoke(*args[:-4], "--out", str(tmp_path / "run3"), "--input-shape", "3,16")
    assert code == 1 and "input-shape" in out and "Traceback" not in out
