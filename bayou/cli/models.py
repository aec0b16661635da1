"""`bayou models ...`: checkpoints."""

from __future__ import annotations

from pathlib import Path

import typer

models_app = typer.Typer(help="Model checkpoints.", no_args_is_help=True)


@models_app.command("tiny")
def tiny(
    directory: Path = typer.Argument(..., help="Where to write the checkpoint."),
    seed: int = typer.Option(0, "--seed", help="Random seed of the weights."),
    msac: bool = typer.Option(False, "--msac", help="The 2B layout (Mistral text model, MSAC tiling)."),
    shards: int = typer.Option(1, "--shards", min=1, help="Split the weights into N safetensors files."),
) -> None:
    """Write a tiny randomly initialised checkpoint in the published H2OVL layout (its output is noise)."""
    from extractor.model.tiny import write_tiny_checkpoint

    written = write_tiny_checkpoint(directory, seed=seed, msac=msac, shards=shards)
    typer.echo(str(written))


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
