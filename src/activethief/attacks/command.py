"""The `activethief attack` command: craft on a substitute and measure transfer to the target; or run a
query attack (`hybrid`: transfer, then a few counted queries with the substitute as prior; `art-square`,
`art-simba`, `art-hopskipjump`: ART's query-only baselines) and list each image's queries."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from activethief.attacks.query_command import QUERY_METHODS, QueryOptions, run_query_attack
from activethief.cli import friendly
from activethief.errors import ConfigError

if TYPE_CHECKING:
    from torch import nn

    from activethief.oracle import Oracle


def register(app: typer.Typer) -> None:
    """Add the `attack` command to the CLI app."""
    app.command("attack")(attack_command)


@friendly
def attack_command(
    target: Annotated[
        str, typer.Option(help="The target: a model file, or an http(s):// prediction API URL.")
    ],
    substitute: Annotated[
        Path | None, typer.Option(help="The stolen model file (written by models.save); not for art-*.")
    ] = None,
    ensemble_from: Annotated[
        Path | None,
        typer.Option(
            help="Craft on an ensemble built from this steal run folder instead of --substitute: its "
            "substitute plus --ensemble-archs trained on its answers (no target queries)."
        ),
    ] = None,
    ensemble_archs: Annotated[
        str,
        typer.Option(help="--ensemble-from: architectures trained on the run's answers (comma-separated)."),
    ] = "cnn2,cnn2-wide,mlp,resnet8",
    ensemble_rounds: Annotated[
        str, typer.Option(help="--ensemble-from: round substitutes to add, e.g. 2,3,4 (default none).")
    ] = "",
    dataset: Annotated[str, typer.Option(help="Dataset whose first --n test images are attacked.")] = "mnist",
    method: Annotated[
        str,
        typer.Option(
            help="Attack: fgsm, pgd, mi-fgsm, di-mi-fgsm, ti-di-mi-fgsm (transfer only); "
            "hybrid (transfer, then "
            "queries); art-square, art-simba, art-hopskipjump (ART's query-only baselines, no substitute)."
        ),
    ] = "pgd",
    eps: Annotated[
        float, typer.Option(help="The ball's radius in [0, 1] pixel units (L2: the perturbation's length).")
    ] = 0.3,
    norm: Annotated[str, typer.Option(help="The threat's norm: inf (L-infinity) or 2 (L2).")] = "inf",
    steps: Annotated[int | None, typer.Option(help="Iterations (pgd: 40, mi-fgsm: 10).")] = None,
    step_size: Annotated[
        float | None,
        typer.Option(
            help="Step length per iteration (pgd: 0.01 in L-inf, 2.5*eps/steps in L2; mi-fgsm: eps/steps)."
        ),
    ] = None,
    random_start: Annotated[
        bool | None, typer.Option("--random-start/--no-random-start", help="pgd: start at a random point.")
    ] = None,
    targeted: Annotated[
        str | None,
        typer.Option(help="Targeted attack: 'least-likely' or a class index; untargeted if omitted."),
    ] = None,
    n: Annotated[int, typer.Option("--n", help="How many test images to attack (the first n).")] = 1000,
    seed: Annotated[int, typer.Option(help="Seed of the attack's random start.")] = 0,
    out: Annotated[Path, typer.Option(help="Folder for result.json and examples.png.")] = Path("attack"),
    query_budget: Annotated[
        int | None, typer.Option(help="Most queries the target may answer (clean + adversarial = 2n).")
    ] = None,
    output_mode: Annotated[
        str, typer.Option(help="What a local target reveals: probs, label, topk:K or round:D.")
    ] = "probs",
    api_key_env: Annotated[
        str | None, typer.Option(help="Environment variable holding the API key of an HTTP target.")
    ] = None,
    data_dir: Annotated[Path | None, typer.Option(help="Dataset cache (default $ACTIVETHIEF_DATA).")] = None,
    retry_for: Annotated[
        float | None, typer.Option(help="Seconds to keep retrying an HTTP target that is down (default 120).")
    ] = None,
    max_queries_per_image: Annotated[
        int,
        typer.Option(help="hybrid and art-*: the most target queries per image (the transfer one included)."),
    ] = 20,
    total_queries: Annotated[
        int | None, typer.Option(help="hybrid and art-*: the most target queries over all images.")
    ] = None,
    continuation: Annotated[
        str,
        typer.Option(
            help="hybrid: square (scores), guided (labels suffice), none, or auto (by output mode)."
        ),
    ] = "auto",
    transfer: Annotated[
        str,
        typer.Option(
            help="hybrid: the transfer attack of query 0 (pgd, mi-fgsm, di-mi-fgsm, ti-di-mi-fgsm; --steps "
            "sets its iterations)."
        ),
    ] = "pgd",
    only_correct: Annotated[
        bool,
        typer.Option(
            "--only-correct/--all-images",
            help="hybrid and art-*: attack the first --n test images the target classifies correctly "
            "(needs a target you own: a model file, asked for free).",
        ),
    ] = False,
) -> None:
    """Craft adversarial test images on the substitute and measure how often they fool the target.

    Uses the first --n test images of --dataset; writes result.json and examples.png into --out.
    """
    if method.strip().lower() in QUERY_METHODS:
        options = QueryOptions(
            method.strip().lower(),
            eps,
            targeted,
            max_queries_per_image,
            total_queries,
            continuation,
            transfer,
            steps,
            only_correct,
            norm,
        )
        model, name = _substitute(substitute, ensemble_from, ensemble_archs, ensemble_rounds, required=False)
        oracle, _ = _make_oracle(target, output_mode, query_budget, api_key_env, retry_for)
        try:
            for line in run_query_attack(
                options, model, name, oracle, target, dataset, n, seed, out, data_dir
            ):
                typer.echo(line)
        finally:
            oracle.close()
        return
    from activethief import data
    from activethief.attacks.plot import plot_examples
    from activethief.attacks.registry import make_attack
    from activethief.attacks.transfer import evaluate_transfer

    attack = make_attack(
        method,
        eps=eps,
        steps=steps,
        step_size=step_size,
        random_start=random_start,
        target_class=targeted,
        norm=norm,
    )
    if n < 1:
        raise ConfigError(f"--n must be >= 1; got {n}")
    spec = data.get_spec(dataset)
    images, labels = data.load(spec.name, "test", root=data_dir)
    if n > len(images):
        raise ConfigError(f"--n {n} is more than the {len(images)} test images of {spec.name}")
    substitute_model, substitute_name = _substitute(
        substitute, ensemble_from, ensemble_archs, ensemble_rounds
    )
    assert substitute_model is not None
    oracle, white_box = _make_oracle(target, output_mode, query_budget, api_key_env, retry_for)
    try:
        result = evaluate_transfer(
            substitute_model, oracle, images[:n], labels[:n], attack, white_box_target=white_box, seed=seed
        )
    finally:
        oracle.close()

    out.mkdir(parents=True, exist_ok=True)
    record: dict[str, Any] = {
        "substitute": substitute_name,
        "target": target,
        "dataset": spec.name,
        "output_mode": output_mode,
        **result.to_dict(),
    }
    (out / "result.json").write_text(json.dumps(record, indent=2) + "\n")
    assert result.examples is not None
    title = f"{attack.name} eps={attack.eps:g}" + (
        f" targeted={attack.target_class}" if attack.targeted else ""
    )
    plot_examples(result.examples, out / "examples.png", class_names=spec.classes, title=title)
    for line in _summary(result.to_dict()):
        typer.echo(line)
    typer.echo(f"wrote {out / 'result.json'} and {out / 'examples.png'}")


def _substitute(
    path: Path | None, run: Path | None, archs: str, rounds: str, *, required: bool = True
) -> tuple[nn.Module | None, str | None]:
    """(the model to craft on, how result.json names it): a substitute file, or an ensemble built from a
    steal run folder (`attacks.ensemble.ensemble_from_run`, which trains members on the run's answers
    and never asks the target)."""
    if path is not None and run is not None:
        raise ConfigError("pass either --substitute or --ensemble-from, not both")
    if run is not None:
        from activethief.attacks.ensemble import ensemble_from_run

        try:
            picked = [int(r) for r in rounds.split(",") if r.strip()]
        except ValueError:
            raise ConfigError(
                f"--ensemble-rounds takes round numbers such as 2,3,4; got {rounds!r}"
            ) from None
        names = [a.strip() for a in archs.split(",") if a.strip()]
        ensemble = ensemble_from_run(run, archs=names, rounds=picked)
        return ensemble, f"ensemble of {run}: substitute, rounds {picked or 'none'}, archs {names or 'none'}"
    if path is None:
        if required:
            raise ConfigError(
                "this attack crafts on a substitute: pass --substitute MODEL.pt or --ensemble-from RUN"
            )
        return None, None
    from activethief import models

    model, _ = models.load(path)
    return model, str(path)


def _make_oracle(
    target: str, output_mode: str, budget: int | None, api_key_env: str | None, retry_for: float | None
) -> tuple[Oracle, nn.Module | None]:
    """(oracle, the target module when the user owns it as a model file, else None)."""
    from activethief.oracle import ModelOracle, open_oracle
    from activethief.oracle.open import is_remote

    oracle = open_oracle(
        target, output_mode=output_mode, budget=budget, api_key_env=api_key_env, retry_for=retry_for
    )
    if isinstance(oracle, ModelOracle) and not is_remote(target):
        return oracle, oracle.model
    return oracle, None


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def _summary(r: dict[str, Any]) -> list[str]:
    lines = [
        f"{r['attack']['method']} eps={r['attack']['eps']:g} on {r['n']} images: "
        f"target accuracy {_fmt(r['target_accuracy'])}, substitute {_fmt(r['substitute_accuracy'])}, "
        f"agreement {_fmt(r['agreement'])}",
        f"transfer success {_fmt(r['transfer_success_rate'])} (of {r['target_correct']} the target got right)"
        f", white-box on substitute {_fmt(r['whitebox_success_rate'])}"
        + (
            f"; white-box on target {_fmt(r['target_whitebox_success_rate'])}"
            if r["target_whitebox_success_rate"] is not None
            else ""
        ),
    ]
    if r["targeted_transfer_success_rate"] is not None:
        lines.append(
            f"targeted success: transfer {_fmt(r['targeted_transfer_success_rate'])}, "
            f"white-box on substitute {_fmt(r['targeted_whitebox_success_rate'])}"
        )
    lines.append(
        f"mean perturbation: L-inf {r['mean_linf']:.4f}, L2 {r['mean_l2']:.3f}; queries: "
        f"{r['clean_queries']} clean + {r['adversarial_queries']} adversarial "
        f"(oracle used {r['oracle_used']}"
        + (f" of {r['oracle_budget']})" if r["oracle_budget"] is not None else ")")
    )
    return lines
