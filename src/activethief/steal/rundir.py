"""The run folder: it owns every file of a steal run (refuse or resume, ledger, checkpoints, outputs).

Files: `ledger.sqlite` (every answer bought), `checkpoint.json` + `checkpoint-rN.pt` (the last finished
round: settings, history, weights), `history.jsonl` (a row per round), and once the run ends
`summary.json` and `substitute.pt`. Everything is written atomically, weights before the state that
points at them, so a crash at any moment loses nothing that was paid for.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from activethief import models
from activethief.errors import ConfigError
from activethief.files import write_text_atomic
from activethief.models.architectures import MNIST_SHAPE
from activethief.oracle import Ledger, Oracle
from activethief.steal.config import StealConfig
from activethief.steal.records import RoundRecord, StealResult

CHECKPOINT = "checkpoint.json"
LEDGER = "ledger.sqlite"
HISTORY = "history.jsonl"
SUMMARY = "summary.json"
SUBSTITUTE = "substitute.pt"


def saved_arch(config: StealConfig, model: nn.Module) -> str:
    """The architecture a substitute file records: `auto` resolved for the model's input shape, so the
    file loads the same model whatever `auto` picks later."""
    return models.resolve_arch(config.substitute, getattr(model, "input_shape", MNIST_SHAPE))


@dataclass
class Restored:
    """Where an interrupted run stopped: its finished rounds and the last round's substitute."""

    history: list[RoundRecord]
    model: nn.Module | None


class RunDir:
    """One output folder. A folder that holds a run is refused unless resuming (its answers are paid for).

    Args:
        path: the folder (created if missing).
        resume: continue the run the folder holds.
    """

    def __init__(self, path: Path | str, *, resume: bool) -> None:
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        has_run = (self.path / CHECKPOINT).exists() or (self.path / LEDGER).exists()
        if has_run and not resume:
            raise ConfigError(
                f"{self.path} already holds a run (paid answers in {self.path / LEDGER}); "
                "pass resume=True (--resume) to continue it, or choose a new output folder"
            )
        self.resume = resume

    def attach(self, oracle: Oracle) -> None:
        """Record the oracle's answers in this folder's ledger, unless it already keeps its own."""
        if len(oracle.ledger) == 0 and oracle.ledger.path == ":memory:":
            oracle.use_ledger(Ledger(self.path / LEDGER))

    def restore(self, config: StealConfig) -> Restored:
        """The finished rounds of a resumed run (checked to have `config`'s settings), or none."""
        state_path = self.path / CHECKPOINT
        state: dict[str, Any] = (
            json.loads(state_path.read_text()) if self.resume and state_path.exists() else {}
        )
        if state and state["config"] != json.loads(json.dumps(config.to_dict())):
            raise ConfigError(
                f"{self.path} was started with different settings:\n  was {state['config']}\n  now "
                f"{config.to_dict()}\nresume with the same settings"
            )
        threads = state.get("torch_threads")
        if threads is not None and threads != torch.get_num_threads():
            warnings.warn(
                f"{self.path} was run with {threads} torch threads, this process uses "
                f"{torch.get_num_threads()}: the resumed rounds are valid but not bit-identical to an "
                "uninterrupted run (set OMP_NUM_THREADS or torch.set_num_threads to match)",
                stacklevel=3,
            )
        history = [RoundRecord(**r) for r in state.get("history", [])]
        model = models.load(self.path / state["weights"])[0] if state.get("weights") else None
        # history.jsonl always mirrors the checkpoint, so a resumed run never duplicates rows.
        write_text_atomic(self.path / HISTORY, "".join(json.dumps(asdict(r)) + "\n" for r in history))
        return Restored(history, model)

    def checkpoint(
        self, config: StealConfig, history: list[RoundRecord], model: nn.Module, num_classes: int
    ) -> None:
        """Weights first (under a per-round name), then the history row, then the state pointing at both."""
        round_ = history[-1].round
        weights = f"checkpoint-r{round_}.pt"
        models.save(
            model, self.path / weights, arch=saved_arch(config, model), num_classes=num_classes, round=round_
        )
        with (self.path / HISTORY).open("a") as handle:
            handle.write(json.dumps(asdict(history[-1])) + "\n")
        state = {
            "config": config.to_dict(),
            "history": [asdict(r) for r in history],
            "weights": weights,
            "torch_threads": torch.get_num_threads(),  # floats are bit-identical only at the same count
        }
        write_text_atomic(self.path / CHECKPOINT, json.dumps(state))
        for old in self.path.glob("checkpoint-r*.pt"):
            if old.name != weights:
                old.unlink()

    def finish(self, result: StealResult, num_classes: int) -> None:
        """The final substitute (with where it came from) and the summary."""
        config, last = result.config, result.history[-1]
        models.save(
            result.substitute,
            self.path / SUBSTITUTE,
            arch=saved_arch(config, result.substitute),
            num_classes=num_classes,
            queries=result.queries_used,
            strategy=config.strategy,
            seeding=config.seeding,
            seed=config.seed,
            accuracy=last.accuracy,
            agreement=last.agreement,
        )
        write_text_atomic(self.path / SUMMARY, json.dumps(result.summary(), indent=2))


class NoRunDir:
    """No output folder: nothing is kept on disk (an in-memory ledger unless the oracle has its own)."""

    def attach(self, oracle: Oracle) -> None:
        pass

    def restore(self, config: StealConfig) -> Restored:
        return Restored([], None)

    def checkpoint(
        self, config: StealConfig, history: list[RoundRecord], model: nn.Module, num_classes: int
    ) -> None:
        pass

    def finish(self, result: StealResult, num_classes: int) -> None:
        pass


def open_run(out: Path | str | None, *, resume: bool) -> RunDir | NoRunDir:
    """The run folder `out`, or the stand-in that keeps nothing."""
    return NoRunDir() if out is None else RunDir(out, resume=resume)
