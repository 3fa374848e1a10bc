"""Stealing an RGB target: mnist-on-photos (3x32x32), a resnet14-wide target, a resnet8 substitute.

1. Trains the target (`train_target`, `--train-limit` images, `--epochs`) unless its file exists, and
   exports it to TorchScript (with `input_shape.json`) and ONNX (`torch.onnx.export`).
2. Adapters: steals it `--adapter-budget` queries through each way a target is shipped (the activethief
   model file, TorchScript, ONNX, and over HTTP from `activethief serve` in a subprocess, with a folder of
   PNGs as the pool for the HTTP run), recording agreement and queries.
3. Curve: agreement at each round of `--batch` queries up to `--budget`, per strategy and seed, with the
   default settings (`--substitute auto`: resnet8 for this shape).

Rows go to a JSONL file as they finish (rerunning skips finished ones); a table is printed at the end.

    flock /tmp/heavy.lock .venv/bin/python benchmarks/rgb_steal.py --strategies entropy+kcenter random \
        --seeds 0 --budget 5000
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from activethief import data, models, steal
from activethief.oracle import open_oracle
from activethief.target import train_target
from activethief.training import predict_proba

DATASET = "mnist-on-photos"
SHAPE = (3, 32, 32)


def ensure_target(folder: Path, limit: int, epochs: int) -> dict[str, Path]:
    """The target in all three formats (trained and exported when missing)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {
        k: folder / f"{DATASET}-resnet14-wide.{ext}"
        for k, ext in (("model", "pt"), ("ts", "ts"), ("onnx", "onnx"))
    }
    if not paths["model"].exists():
        info = train_target(
            DATASET, arch="resnet14-wide", out=paths["model"], epochs=epochs, limit=limit, log=print
        )
        print(f"target: test accuracy {info['test_accuracy']:.4f} ({info['train_seconds']} s)", flush=True)
    model, _ = models.load(paths["model"])
    model.eval()
    example = torch.zeros(1, *SHAPE)
    if not paths["ts"].exists():
        traced = torch.jit.trace(model, example)  # type: ignore[no-untyped-call]
        torch.jit.save(traced, str(paths["ts"]), _extra_files={"input_shape.json": json.dumps(list(SHAPE))})
    if not paths["onnx"].exists():
        torch.onnx.export(
            model,
            (example,),
            str(paths["onnx"]),
            input_names=["images"],
            output_names=["logits"],
            dynamic_axes={"images": {0: "n"}, "logits": {0: "n"}},
            dynamo=False,
        )
    return paths


def write_png_pool(images: np.ndarray, folder: Path) -> Path:
    """The pool as PNG files (what a user's folder of images looks like), in index order."""
    folder.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        Image.fromarray(image.transpose(1, 2, 0)).save(folder / f"{i:06d}.png")
    return folder


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(model: Path, work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    key = "at-benchmark-rgb-key-0001"
    keys = work / "keys.toml"
    keys.write_text(f'[keys.thief]\nkey = "{key}"\nmode = "probs"\n')
    port = free_port()
    cmd = [
        str(Path(sys.executable).parent / "activethief"),
        "serve",
        str(model),
        "--keys",
        str(keys),
        "--port",
        str(port),
        "--state",
        str(work / "state.sqlite"),
        "--model-name",
        "rgb",
        "--log-level",
        "warning",
    ]
    server = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    for _ in range(120):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                break
        except OSError:
            time.sleep(0.5)
    return server, f"http://127.0.0.1:{port}/v2/models/rgb", key


def one_steal(
    target: str, pool: Any, test: tuple[np.ndarray, np.ndarray], labels: np.ndarray | None, **settings: Any
) -> dict[str, Any]:
    oracle = (
        open_oracle(target)
        if not target.startswith("http")
        else open_oracle(target, api_key_env="RGB_BENCH_KEY")
    )
    started = time.perf_counter()
    result = steal(
        oracle, pool, test=test, target_test_labels=labels, quiet=True, substitute="auto", **settings
    )
    rounds = [
        {
            "queries": r.train_size,
            "agreement": r.agreement,
            "accuracy": r.accuracy,
            "seconds": round(r.seconds_train + r.seconds_select + r.seconds_query, 1),
        }
        for r in result.history
        if r.train_size
    ]
    return {
        "queries_used": result.queries_used,
        "oracle_used": oracle.used,
        "rounds": rounds,
        "seconds": round(time.perf_counter() - started, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--targets", type=Path, default=Path("runs/targets"))
    parser.add_argument("--train-limit", type=int, default=20_000)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--pool-size", type=int, default=20_000)
    parser.add_argument("--adapter-budget", type=int, default=1000)
    parser.add_argument("--strategies", nargs="*", default=["entropy+kcenter", "random"])
    parser.add_argument("--seeds", nargs="*", type=int, default=[0])
    parser.add_argument("--budget", type=int, default=5000)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results/rgb_steal.jsonl"))
    args = parser.parse_args()

    paths = ensure_target(args.targets, args.train_limit, args.epochs)
    pool_u8, _ = data.load_uint8(DATASET, "train")
    pool = np.ascontiguousarray(pool_u8[-args.pool_size :])  # the target saw the first train_limit images
    test = data.load(DATASET, "test")
    labels = predict_proba(models.load(paths["model"])[0], test[0]).argmax(1)  # for the HTTP run
    done = (
        [json.loads(line) for line in args.results.read_text().splitlines()] if args.results.exists() else []
    )
    names = {(r["kind"], r["name"], r.get("seed"), r.get("budget")) for r in done}

    def record(row: dict[str, Any]) -> None:
        args.results.parent.mkdir(parents=True, exist_ok=True)
        with args.results.open("a") as out:
            out.write(json.dumps(row) + "\n")
        done.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if k != "rounds"}),
            [(x["queries"], x["agreement"]) for x in row["rounds"]],
            flush=True,
        )

    settings = {"budget": args.adapter_budget, "batch_size": args.adapter_budget // 2, "seed": 0}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for name in ("model", "ts", "onnx"):
            if ("adapter", name, 0, args.adapter_budget) not in names:
                record(
                    {
                        "kind": "adapter",
                        "name": name,
                        "seed": 0,
                        "budget": args.adapter_budget,
                        **one_steal(str(paths[name]), pool, test, None, **settings),
                    }
                )
        if ("adapter", "http+png-folder", 0, args.adapter_budget) not in names:
            folder = write_png_pool(pool, work / "pngs")
            server, url, key = start_server(paths["model"], work)
            os.environ["RGB_BENCH_KEY"] = key
            try:
                record(
                    {
                        "kind": "adapter",
                        "name": "http+png-folder",
                        "seed": 0,
                        "budget": args.adapter_budget,
                        **one_steal(url, str(folder), test, labels, **settings),
                    }
                )
            finally:
                server.terminate()
                server.wait(30)
    for strategy in args.strategies:
        for seed in args.seeds:
            if ("curve", strategy, seed, args.budget) not in names:
                record(
                    {
                        "kind": "curve",
                        "name": strategy,
                        "seed": seed,
                        "budget": args.budget,
                        **one_steal(
                            str(paths["model"]),
                            pool,
                            test,
                            None,
                            budget=args.budget,
                            batch_size=args.batch,
                            strategy=strategy,
                            seed=seed,
                        ),
                    }
                )
    print(
        "| run | seed | "
        + " | ".join(f"{q}" for q in range(args.batch, args.budget + 1, args.batch))
        + " | s |"
    )
    for row in done:
        at = {x["queries"]: x["agreement"] for x in row["rounds"]}
        cells = [
            f"{100 * at[q]:.2f}" if at.get(q) is not None else "-"
            for q in range(args.batch, args.budget + 1, args.batch)
        ]
        print(
            f"| {row['kind']} {row['name']} | {row['seed']} | " + " | ".join(cells) + f" | {row['seconds']} |"
        )


if __name__ == "__main__":
    main()
