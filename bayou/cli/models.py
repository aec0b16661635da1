"""`bayou models ...`: checkpoints."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from bayou.settings import Settings
    from extractor.model import LoadedModel
    from extractor.result import Result

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


@models_app.command("check")
def check(
    source: str = typer.Argument(
        ..., help="A hub id (from huggingface_hub's cache) or a checkpoint directory."
    ),
    sample: Path | None = typer.Option(
        None, "--sample", help="A document to extract (default: a bundled one)."
    ),
    doc_type: str | None = typer.Option(None, "--type", help="The sample's type (with --sample)."),
    max_new_tokens: int = typer.Option(2048, "--max-new-tokens", min=16, help="The sample's answer budget."),
) -> None:
    """Check a checkpoint the way the loader sees it, print a report, then extract one sample.

    Exit 0: ready; 1: a problem found (named in the report); 2: usage.
    """
    from bayou.cli.common import EXIT_FAILED, fail
    from bayou.settings import get_settings
    from extractor.model.check import check_checkpoint
    from extractor.schemas import available_types

    if (sample is None) != (doc_type is None):
        fail("--sample and --type go together")
    if doc_type is not None and doc_type not in available_types():
        fail(f"unknown document type {doc_type!r}; known: {', '.join(available_types())}")
    if sample is not None and not sample.is_file():
        fail(f"no such file: {sample}")
    settings = get_settings()
    report = check_checkpoint(source, device=settings.device, dtype=settings.dtype)
    for finding in report.findings:
        typer.echo(f"{'ok  ' if finding.ok else 'FAIL'} {finding.name}: {finding.detail}")
    if report.findings[0].name == "source" and not report.findings[0].ok:
        raise typer.Exit(2)  # nothing to check: a usage matter
    if not report.ok:
        raise typer.Exit(EXIT_FAILED)
    result = _extract_sample(report.loaded, source, sample, doc_type, settings, max_new_tokens)
    timings = ", ".join(f"{k} {v:.0f} ms" for k, v in result.timings_ms.items())
    typer.echo(
        f"{'ok  ' if result.error is None else 'FAIL'} sample: {result.file} ({result.doc_type}); {timings}"
    )
    typer.echo(json.dumps(result.to_dict(), ensure_ascii=False))
    if result.error is not None:
        raise typer.Exit(EXIT_FAILED)


def _extract_sample(
    loaded: LoadedModel,
    source: str,
    sample: Path | None,
    doc_type: str | None,
    settings: Settings,
    max_new_tokens: int,
) -> Result:
    """The sample's Result: the given file, or a synthetic receipt drawn here (deterministic)."""
    from bayou.engines import extractor_for
    from extractor.engine import TransformersEngine
    from extractor.pipeline import DocumentInput

    if sample is not None and doc_type is not None:
        document = DocumentInput.from_path(sample, doc_type)
    else:
        import io
        import random

        from bayou.synthetic.dataset import generate

        synthetic = generate("receipt", random.Random(0), 0, capture="scan")
        png = io.BytesIO()
        synthetic.pages[0].save(png, format="PNG")
        document = DocumentInput(
            sources=[png.getvalue()], doc_type="receipt", name="bundled synthetic receipt"
        )
    engine = TransformersEngine(loaded, name=source, json_layout=settings.json_layout)
    extractor = extractor_for(engine, settings.model_copy(update={"max_new_tokens": max_new_tokens}))
    return extractor.extract([document])[0]


def register(app: typer.Typer) -> None:
    app.add_typer(models_app, name="models")
