"""`bayou extract FILE... --type T`: one Result per document as a JSON line on stdout."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import typer

log = logging.getLogger("bayou.extract")


def extract(
    files: list[Path] = typer.Argument(..., help="Documents: images (JPEG, PNG, TIFF, HEIC, ...) or PDFs."),
    doc_type: str = typer.Option(..., "--type", help="Document type: receipt, drivers_license, check, ..."),
    model: str | None = typer.Option(
        None, "--model", help="h2ovl-800m, h2ovl-2b, or a checkpoint directory."
    ),
    max_tiles: int | None = typer.Option(
        None, "--max-tiles", min=1, max=12, help="At most N tiles per image."
    ),
    no_constrained: bool = typer.Option(
        False, "--no-constrained", help="Free generation, JSON recovered after."
    ),
    together: bool = typer.Option(
        False, "--together", help="All FILEs are one document (a licence's two sides)."
    ),
    batch_size: int = typer.Option(4, "--batch-size", min=1, help="Documents per batched generate call."),
) -> None:
    """Extract validated JSON from documents; progress and logs go to stderr."""
    from bayou.engines import extractor_for, get_engine, model_name
    from bayou.settings import get_settings
    from extractor.errors import BayouError
    from extractor.pipeline import DocumentInput
    from extractor.schemas import available_types

    settings = get_settings()
    if doc_type not in available_types():
        typer.echo(
            f"error: unknown document type {doc_type!r}; known: {', '.join(available_types())}", err=True
        )
        raise typer.Exit(2)
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        typer.echo(f"error: no such file: {', '.join(missing)}", err=True)
        raise typer.Exit(2)
    try:
        engine = get_engine(model_name(model, doc_type, settings), settings)
    except BayouError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None

    extractor = extractor_for(engine, settings, constrained=not no_constrained, max_tiles=max_tiles)
    documents = (
        [DocumentInput(sources=list(files), doc_type=doc_type, name=",".join(map(str, files)))]
        if together
        else [DocumentInput.from_path(f, doc_type) for f in files]
    )
    failed = 0
    for start in range(0, len(documents), batch_size):
        try:
            results = extractor.extract(documents[start : start + batch_size])
        except ConnectionError as error:
            # the engine's server (vLLM) went away or failed mid-request; a worker would retry the batch,
            # here the user is told, once, and the documents not yet written are left undone
            left = len(documents) - start
            typer.echo(
                f"error: {error}; {left} document(s) not extracted (the server's log says why)", err=True
            )
            raise typer.Exit(1) from None
        for result in results:
            failed += result.failed
            sys.stdout.write(json.dumps(result.to_dict(), ensure_ascii=False) + "\n")
            sys.stdout.flush()
            # ids and outcomes only: field values may be personal data
            log.info("%s: %s", result.file, result.error["code"] if result.error else "ok")
    raise typer.Exit(1 if failed else 0)


def register(app: typer.Typer) -> None:
    app.command("extract")(extract)
