"""`bayou eval DATASET --model M`: the H2OVL report's Table-6 protocol on a dataset, resumable."""

from __future__ import annotations

import sys
from pathlib import Path

import typer


def evaluate(
    dataset: Path = typer.Argument(
        ..., help="A folder with metadata.jsonl (see the README's dataset format)."
    ),
    models: list[str] = typer.Option(
        ..., "--model", help="h2ovl-800m, h2ovl-2b or a checkpoint dir; repeatable."
    ),
    out: Path | None = typer.Option(
        None, "--out", help="JSONL of per-document records; a re-run resumes from it."
    ),
    report_file: Path | None = typer.Option(None, "--report", help="Also write the report as JSON here."),
    max_tiles: int | None = typer.Option(None, "--max-tiles", min=1, max=12),
    no_constrained: bool = typer.Option(
        False, "--no-constrained", help="Free generation (parse rate may drop)."
    ),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    limit: int | None = typer.Option(None, "--limit", min=1, help="Only the first N documents."),
) -> None:
    """Score models on a dataset: per type, the mean of perfect-match rate, effective TED accuracy and
    effective F1, where output that does not parse counts as a miss."""
    from rich.console import Console
    from rich.progress import Progress

    from bayou.engines import extractor_for, get_engine
    from bayou.settings import get_settings
    from extractor.datasets import read_dataset
    from extractor.errors import BayouError
    from extractor.evaluation import Record, RecordStore, build_report, render_report, report_to_json
    from extractor.grounding.measure import located
    from extractor.pipeline import DocumentInput

    settings = get_settings()
    try:
        entries = read_dataset(dataset)[:limit]
        engines = [get_engine(model, settings) for model in models]
    except BayouError as error:
        typer.echo(f"error: {error.message}", err=True)
        raise typer.Exit(2) from None

    store = RecordStore(out) if out else None
    records: list[Record] = store.records() if store else []
    done = {r.key for r in records}
    with Progress(console=Console(stderr=True), transient=False) as progress:
        for engine in engines:
            extractor = extractor_for(engine, settings, constrained=not no_constrained, max_tiles=max_tiles)
            pending = [e for e in entries if (engine.name, e.doc_type, e.file_name) not in done]
            task = progress.add_task(
                f"{engine.name}", total=len(entries), completed=len(entries) - len(pending)
            )
            for start in range(0, len(pending), batch_size):
                batch = pending[start : start + batch_size]
                documents = [
                    DocumentInput(sources=list(e.paths), doc_type=e.doc_type, name=e.file_name) for e in batch
                ]
                for entry, result in zip(batch, extractor.extract(documents), strict=True):
                    record = Record(
                        doc_type=entry.doc_type,
                        model=engine.name,
                        file_name=entry.file_name,
                        pred=result.data,
                        gt=entry.ground_truth,
                        prompt_version=result.prompt_version,
                        error=result.error["code"] if result.error else None,
                        seconds=round(result.timings_ms.get("total", 0.0) / 1000, 3),
                        boxed=len(entry.boxes) or None,
                        located=located(result.locations, entry.boxes) if entry.boxes else None,
                    )
                    records.append(record)
                    if store:
                        store.append(record)
                progress.advance(task, len(batch))

    wanted = {engine.name for engine in engines}
    names = {e.file_name for e in entries}
    report = build_report(r for r in records if r.model in wanted and r.file_name in names)
    render_report(report, Console(file=sys.stdout, width=120))
    if report_file:
        report_file.write_text(report_to_json(report) + "\n")


def register(app: typer.Typer) -> None:
    app.command("eval")(evaluate)
