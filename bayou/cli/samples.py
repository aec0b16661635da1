"""`bayou samples ...`: synthetic documents with ground truth (receipts, licences, checks)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

_DOC_TYPES = ("receipt", "drivers_license", "check")


def _files_of(row: dict[str, Any]) -> list[str]:
    return [row["file_name"]] if "file_name" in row else list(row["file_names"])


def _report_progress(done: int, total: int, row: dict[str, Any]) -> None:
    typer.echo(f"[{done}/{total}] {row['doc_type']}: {', '.join(_files_of(row))}", err=True)


def make(
    directory: Annotated[Path, typer.Argument(help="Folder to write into (created if missing).")],
    count: Annotated[
        int, typer.Option("--count", "-n", min=1, help="Number of documents, types in turn.")
    ] = 12,
    seed: Annotated[int, typer.Option("--seed", help="Same seed, same bytes.")] = 0,
    doc_type: Annotated[
        list[str] | None,
        typer.Option("--type", "-t", help=f"Limit to these types (repeatable): {', '.join(_DOC_TYPES)}."),
    ] = None,
) -> None:
    """Write COUNT synthetic documents and metadata.jsonl (file names and ground truth) into DIRECTORY."""
    # imported here so that `bayou --help` does not pay for Pillow, numpy and reportlab
    from bayou.synthetic.dataset import make_dataset

    types = tuple(doc_type) if doc_type else _DOC_TYPES
    unknown = sorted(set(types) - set(_DOC_TYPES))
    if unknown:
        raise typer.BadParameter(f"unknown type(s) {', '.join(unknown)}; choose from {', '.join(_DOC_TYPES)}")
    rows = make_dataset(directory, count=count, seed=seed, types=types, progress=_report_progress)
    files = [directory / name for row in rows for name in _files_of(row)]
    size_mb = sum(path.stat().st_size for path in files) / 1e6
    typer.echo(
        f"wrote {len(rows)} documents ({len(files)} files, {size_mb:.1f} MB) and metadata.jsonl to {directory}"
    )


def register(app: typer.Typer) -> None:
    samples = typer.Typer(help="Synthetic sample documents with exact ground truth.", no_args_is_help=True)
    samples.command("make")(make)
    app.add_typer(samples, name="samples")
