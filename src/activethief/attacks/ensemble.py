"""Ensembles of substitutes: craft one adversarial image against several stolen models at once.

An example that fools several models trained on the same answers is more likely to fool the target too
(Liu et al., ICLR 2017, "Delving into transferable adversarial examples"; Dong et al., CVPR 2018, section
3.2, who fuse the members' logits). `Ensemble` is an `nn.Module`, so every attack takes it wherever it
takes one substitute. Its members come from a steal run folder without a single new query
(`ensemble_from_run`): the substitutes of the loop's rounds, and substitutes of other architectures
trained on the answers the run bought.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from activethief import models
from activethief.attacks.base import cross_entropy_of
from activethief.data import Pool
from activethief.errors import ConfigError
from activethief.oracle import Ledger, answers_to_targets
from activethief.steal.config import StealConfig
from activethief.steal.loop import PoolInput, load_pool, pool_fingerprint
from activethief.steal.records import RoundEvent
from activethief.steal.rundir import CHECKPOINT, LEDGER, SUBSTITUTE, saved_arch
from activethief.training import FitConfig, fit

Combine = Literal["logits", "probs", "loss"]
COMBINE: tuple[str, ...] = ("logits", "probs", "loss")
ROUNDS_FOLDER = "rounds"
MEMBERS_FOLDER = "ensemble"


class Ensemble(nn.Module):
    """Several classifiers (logits out) attacked as one.

    Args:
        members: the substitutes; same number of classes, same input shape, same device.
        combine: how the members are fused. "logits": the mean of their logits (Dong et al.'s choice);
            "probs": the log of their mean softmax; "loss": the attack objective is the mean of the
            members' cross-entropies (predictions use the mean logits).
        names: a label per member (for reports), default "member-<i>".

    Example:
        >>> ensemble = Ensemble([substitute, other_substitute])
        >>> adversarial = MIFGSM(eps=0.3)(ensemble, images, labels)
    """

    def __init__(
        self, members: Sequence[nn.Module], *, combine: Combine = "logits", names: Sequence[str] | None = None
    ) -> None:
        super().__init__()
        if len(members) == 0:
            raise ConfigError("an ensemble needs at least one member")
        if combine not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}; got {combine!r}")
        names = [f"member-{i}" for i in range(len(members))] if names is None else list(names)
        if len(names) != len(members):
            raise ConfigError(f"{len(names)} names for {len(members)} members")
        shapes = {tuple(s) for m in members if (s := getattr(m, "input_shape", None)) is not None}
        if len(shapes) > 1:
            raise ConfigError(f"ensemble members take different input shapes: {sorted(shapes)}")
        self.members = nn.ModuleList(members)
        self.combine: Combine = combine
        self.names = names
        if shapes:
            self.input_shape = next(iter(shapes))

    def member_logits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each member's logits [b, C] on `x`."""
        outputs = [member(x) for member in self.members]
        widths = {int(o.shape[1]) for o in outputs}
        if len(widths) > 1:
            raise ConfigError(f"ensemble members output different numbers of classes: {sorted(widths)}")
        return outputs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outputs = self.member_logits(x)
        if self.combine == "probs":
            probs = torch.stack([F.softmax(o, dim=1) for o in outputs]).mean(0)
            return probs.clamp_min(1e-12).log()
        return torch.stack(outputs).mean(0)

    def attack_cross_entropy(self, x: torch.Tensor, goal: torch.Tensor) -> torch.Tensor:
        """The attack objective (summed over the batch): of the fused output, or the members' mean loss."""
        if self.combine != "loss":
            return F.cross_entropy(self(x), goal, reduction="sum")
        return torch.stack([cross_entropy_of(m, x, goal) for m in self.members]).mean()


def load_ensemble(paths: Sequence[Path | str], *, combine: Combine = "logits") -> Ensemble:
    """An ensemble of saved substitutes (`models.save` files), named by their file names."""
    return Ensemble([models.load(p)[0] for p in paths], combine=combine, names=[Path(p).stem for p in paths])


def round_path(run_dir: Path | str, round_: int) -> Path:
    """Where `keep_rounds` writes round `round_`'s substitute: `run_dir/rounds/substitute-r<N>.pt`."""
    return Path(run_dir) / ROUNDS_FOLDER / f"substitute-r{round_}.pt"


def keep_rounds(run_dir: Path | str, *, arch: str | None = None) -> Callable[[RoundEvent], None]:
    """An `on_round` callback for `steal` that saves every trained round's substitute under `run_dir/rounds/`.

    The run folder itself keeps only the last round's checkpoint; these files are what
    `ensemble_from_run(..., rounds=...)` loads (it retrains a round's model from the ledger when the file
    is missing). Round 0's untrained model is skipped. `arch` is the substitute's architecture name;
    by default it is read from the run folder's checkpoint (written after round 0).

    Example:
        >>> steal(oracle, "mnist", budget=5000, out="runs/x", on_round=keep_rounds("runs/x"))
    """

    def save(event: RoundEvent) -> None:
        record = event.record
        if record.train_size == 0:
            return
        model = event.substitute
        path = round_path(run_dir, record.round)
        path.parent.mkdir(parents=True, exist_ok=True)
        models.save(
            model,
            path,
            arch=arch or saved_arch(run_config(run_dir), model),
            num_classes=_num_classes(model),
            round=record.round,
            train_size=record.train_size,
            accuracy=record.accuracy,
            agreement=record.agreement,
        )

    return save


def run_config(run_dir: Path | str) -> StealConfig:
    """The `StealConfig` a run folder was started with (from its checkpoint)."""
    path = Path(run_dir) / CHECKPOINT
    if not path.exists():
        raise ConfigError(f"{run_dir} holds no steal run (no {CHECKPOINT}); steal into it first")
    values = dict(json.loads(path.read_text())["config"])
    values["fit"] = FitConfig.from_dict(values["fit"])
    return StealConfig(**values)


def _num_classes(model: nn.Module) -> int:
    last = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not last:
        raise ConfigError("cannot tell the substitute's number of classes (it has no linear layer)")
    return int(last[-1].out_features)


@dataclass(frozen=True)
class RunAnswers:
    """What a steal run bought, read back from its folder: the pool and the answers, by round."""

    config: StealConfig
    pool: Pool
    keys: np.ndarray  # int64 [n], pool indices
    targets: np.ndarray  # float32 [n, C], training targets (`answers_to_targets`)
    rounds: np.ndarray  # int64 [n], the round that bought each answer
    input_shape: tuple[int, int, int]

    @property
    def num_classes(self) -> int:
        return int(self.targets.shape[1])


def run_answers(run_dir: Path | str, pool: PoolInput | None = None) -> RunAnswers:
    """The answers of the run in `run_dir` and the pool they belong to. Reads files only: no queries.

    Args:
        run_dir: a folder `steal` wrote (`checkpoint.json`, `ledger.sqlite`).
        pool: the run's pool; default the source its ledger recorded (a dataset name such as
            `mnist:train`, a folder or a file). It must be the very pool the run bought from (checked
            against the fingerprint its ledger keeps): the ledger holds pool indices, not images.
    """
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    if not (run_dir / LEDGER).exists():
        raise ConfigError(f"{run_dir} has no {LEDGER}: no answers to train ensemble members on")
    ledger = Ledger(run_dir / LEDGER)
    try:
        keys, answers, rounds = ledger.all_answers()
        source, recorded = ledger.get_meta("pool_source"), ledger.get_meta("pool")
    finally:
        ledger.close()
    if len(keys) == 0:
        raise ConfigError(f"the ledger of {run_dir} holds no answers yet")
    if pool is None and source in (None, "<array>"):
        why = "was stolen from an in-memory array" if source else "does not name its pool"
        raise ConfigError(f"{run_dir} {why}; pass pool=... (the very images the run bought answers for)")
    shape = _run_shape(run_dir)
    opened = load_pool(pool if pool is not None else str(source), shape)
    if recorded is not None and pool_fingerprint(opened) != recorded:
        raise ConfigError(
            f"the pool {opened.summary.source} is not the pool {run_dir} bought its answers for "
            f"({source}); pass that pool"
        )
    return RunAnswers(config, opened, keys, answers_to_targets(answers), rounds, shape)


def _run_shape(run_dir: Path) -> tuple[int, int, int]:
    """The input shape (C, H, W) of the run's substitute files."""
    files = [*sorted(run_dir.glob("checkpoint-r*.pt")), run_dir / SUBSTITUTE]
    for path in files:
        if path.exists():
            c, h, w = models.load(path)[1]["input_shape"]
            return int(c), int(h), int(w)
    raise ConfigError(f"{run_dir} holds no substitute file ({SUBSTITUTE} or checkpoint-r*.pt)")


def train_member(
    arch: str,
    answers: RunAnswers,
    *,
    below_round: int | None = None,
    fit_config: FitConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
) -> nn.Module:
    """A substitute of `arch` trained (cold start) on the run's answers: all of them, or those bought
    before round `below_round` (what the loop's substitute of that round was trained on). No queries."""
    use = np.ones(len(answers.keys), bool) if below_round is None else answers.rounds < below_round
    if not use.any():
        raise ConfigError(f"no answers were bought before round {below_round}")
    model = models.build(arch, answers.num_classes, input_shape=answers.input_shape, seed=seed, device=device)
    fit(
        model,
        answers.pool[answers.keys[use]],
        answers.targets[use],
        config=fit_config or answers.config.fit,
        seed=seed + 1,
    )
    return model.eval()


def ensemble_from_run(
    run_dir: Path | str,
    *,
    archs: Sequence[str] = (),
    rounds: Sequence[int] = (),
    final: bool = True,
    pool: PoolInput | None = None,
    combine: Combine = "logits",
    fit_config: FitConfig | None = None,
    seed: int = 0,
    device: str = "cpu",
    cache: bool = True,
) -> Ensemble:
    """An ensemble built from a steal run folder, without spending a single query on the target.

    Members, in this order:
    - `final`: the run's substitute (`substitute.pt`);
    - `rounds`: the loop's substitute of each of these rounds (1 = trained on the seed batch's answers):
      the file `keep_rounds` saved, else one retrained (cold start, the run's architecture and training
      settings) on the answers bought before that round;
    - `archs`: a substitute of each architecture (`models.ARCHITECTURES` name; the run's own one gives
      another initialisation) trained on all the run's answers with the run's training settings, or
      `fit_config`.

    Trained members are written to `run_dir/ensemble/` (`cache`) and reused while the ledger holds the
    same number of answers, so a second call trains nothing.

    Args:
        run_dir: the folder `steal(..., out=run_dir)` wrote.
        pool: the run's pool (default: the one its ledger names; see `run_answers`).
        combine: how the members are fused (`Ensemble`).
        seed: seeds the trained members' weights and training.
        device: where trained members train and where every member is put.

    Example:
        >>> ensemble = ensemble_from_run("runs/x", rounds=(3, 4), archs=("lenet", "mlp"))
    """
    run_dir = Path(run_dir)
    config = run_config(run_dir)
    members: list[nn.Module] = []
    names: list[str] = []
    if final:
        if not (run_dir / SUBSTITUTE).exists():
            raise ConfigError(f"{run_dir} has no {SUBSTITUTE} (unfinished run?); pass final=False")
        members.append(models.load(run_dir / SUBSTITUTE)[0])
        names.append("final")
    answers: RunAnswers | None = None
    wanted = [(f"round-{r}", config.substitute, r) for r in rounds] + [(a, a, None) for a in archs]
    for name, arch, below in wanted:
        if below is not None and round_path(run_dir, below).exists():
            members.append(models.load(round_path(run_dir, below))[0])
        else:
            answers = answers or run_answers(run_dir, pool)
            trained = MemberTraining(answers, fit_config, seed, device, run_dir if cache else None)
            members.append(trained.member(name, arch, below))
        names.append(name)
    if not members:
        raise ConfigError("no ensemble members: set final=True or give rounds or archs")
    target = models.resolve_device(device)
    return Ensemble([m.to(target).eval() for m in members], combine=combine, names=names)


@dataclass(frozen=True)
class MemberTraining:
    """How `ensemble_from_run` trains its members, and where it caches them (`folder/ensemble/`, or None)."""

    answers: RunAnswers
    fit_config: FitConfig | None
    seed: int
    device: str
    folder: Path | None

    def member(self, name: str, arch: str, below: int | None) -> nn.Module:
        """The member `name` of `arch` (on the answers bought before round `below`, or all of them),
        loaded when trained before on the same answers with the same settings, else trained."""
        answers = self.answers
        settings = asdict(self.fit_config or answers.config.fit)
        used = int((answers.rounds < below).sum()) if below is not None else len(answers.keys)
        digest = hashlib.sha256(json.dumps([arch, below, self.seed, used, settings]).encode()).hexdigest()
        path = None if self.folder is None else self.folder / MEMBERS_FOLDER / f"{name}-{digest[:10]}.pt"
        if path is not None and path.exists():
            return models.load(path)[0]
        arch = models.resolve_arch(arch, answers.input_shape)
        member_seed = int(np.random.SeedSequence([self.seed, *name.encode()]).generate_state(1)[0])
        model = train_member(
            arch,
            answers,
            below_round=below,
            fit_config=self.fit_config,
            seed=member_seed,
            device=str(models.resolve_device(self.device)),
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            models.save(model, path, arch=arch, num_classes=answers.num_classes, trained_on=used, member=name)
        return model
