"""The `activethief` command line: a thin Typer client of the Python API (parse, build, call, print)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer

from activethief.errors import ActiveThiefError

app = typer.Typer(
    name="activethief",
    help="Query-efficient model extraction: steal a black-box classifier, then attack it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
data_app = typer.Typer(help="Fetch and inspect datasets.", no_args_is_help=True)
app.add_typer(data_app, name="data")

F = TypeVar("F", bound=Callable[..., Any])


def friendly(fn: F) -> F:
    """Turn our own errors into one clean line on stderr and exit code 1, never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except ActiveThiefError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


DataDir = Annotated[
    Path | None,
    typer.Option("--data-dir", help="Dataset cache (default $ACTIVETHIEF_DATA or ~/.cache/activethief)."),
]


@data_app.command("fetch")
@friendly
def data_fetch(
    names: Annotated[list[str], typer.Argument(help="Datasets to fetch: mnist, fashion-mnist.")],
    data_dir: DataDir = None,
    source: Annotated[
        Path | None, typer.Option("--from", help="A local folder of IDX files (raw or .gz), tried first.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Fetch again even if cached.")] = False,
) -> None:
    """Fetch datasets into the cache, verifying SHA-256 of every file."""
    from activethief import data

    for name in names:
        data.get_spec(name)  # unknown names fail before any download
    for name in names:
        data.fetch(name, root=data_dir, local=source, force=force, log=typer.echo)


@data_app.command("list")
@friendly
def data_list(data_dir: DataDir = None) -> None:
    """List known datasets and whether each is cached."""
    from activethief import data

    for name, spec in sorted(data.DATASETS.items()):
        state = "cached" if data.is_cached(name, data_dir) else "not fetched"
        typer.echo(f"{name:15s} {len(spec.classes)} classes  {state}  ({data.data_dir(data_dir) / name})")


@app.command("train-target")
@friendly
def train_target(
    dataset: Annotated[str, typer.Option(help="Dataset to train on (its full training set).")] = "mnist",
    arch: Annotated[
        str,
        typer.Option(
            help="Architecture: cnn2, cnn2-wide, lenet, mlp, resnet8, resnet14-wide, auto or module:function."
        ),
    ] = "cnn2",
    out: Annotated[Path, typer.Option(help="Where to write the model file.")] = Path("target.pt"),
    epochs: Annotated[int, typer.Option(help="Most epochs (early stopping on a validation split).")] = 15,
    seed: Annotated[int, typer.Option(help="Run seed.")] = 0,
    limit: Annotated[
        int | None, typer.Option(help="Train on the first N images only (quick trials).")
    ] = None,
    data_dir: DataDir = None,
    device: Annotated[str, typer.Option(help="auto (a GPU when present), cpu or cuda.")] = "auto",
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Train a target model on a dataset's full training set and save it with its test accuracy."""
    from activethief.target import train_target as run

    info = run(
        dataset,
        arch=arch,
        out=out,
        epochs=epochs,
        seed=seed,
        data_dir=data_dir,
        limit=limit,
        log=None if quiet else typer.echo,
        device=device,
    )
    typer.echo(json.dumps(info, indent=2))


def main() -> None:
    """Console-script entry point."""
    _register_optional_commands()
    app(prog_name="activethief")


def _register_optional_commands() -> None:
    """Commands that live with their feature: each module exposes `register(app)`."""
    import importlib

    for module in (
        "activethief.steal.command",
        "activethief.attacks.command",
        "activethief.serve.command",
        "activethief.experiments.command",
    ):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        mod.register(app)


if __name__ == "__main__":  # pragma: no cover
    main()
