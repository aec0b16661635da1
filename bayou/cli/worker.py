"""`bayou worker`: a Celery worker on some or all queues (cpu, gpu.800m, gpu.2b)."""

from __future__ import annotations

import typer

EXIT_CONFIGURATION = 2


def register(app: typer.Typer) -> None:
    app.command("worker")(worker)


def worker(
    queues: str = typer.Option("", "--queues", "-Q", help="comma-separated; default: every queue"),
    concurrency: int = typer.Option(
        0, "--concurrency", "-c", min=0, help="worker processes; default 1 with a GPU queue, else one per CPU"
    ),
    loglevel: str = typer.Option("", "--loglevel", "-l", help="default: BAYOU_LOG_LEVEL"),
    metrics_port: int | None = typer.Option(
        None,
        "--metrics-port",
        min=1,
        max=65535,
        help="serve Prometheus metrics on this port (pool process i on port + i)",
    ),
) -> None:
    """Run a worker. Production GPU workers name one model queue each (`--queues gpu.2b`) and load that
    model at start; without --queues every queue is served and a model is loaded on first use."""
    from bayou.engines import check_engines
    from extractor.errors import ConfigurationError
    from extractor.registry import models_on
    from workers.app import get_app
    from workers.queues import parse_queues
    from workers.runtime import check_schema, get_runtime
    from workers.telemetry import serve_metrics_on

    try:
        selected = parse_queues(queues)
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--queues") from exc
    try:
        check_schema(get_runtime().settings)
        # the engines of the models this worker may serve can start here (vLLM present, ...): said now,
        # in one line, rather than as a traceback when the first document arrives
        check_engines(models_on(selected), get_runtime().settings)
    except ConfigurationError as exc:
        typer.echo(f"error: {exc.message}", err=True)
        raise typer.Exit(EXIT_CONFIGURATION) from exc
    # before the pool forks: each pool process starts its exporter as it starts (workers.observing)
    serve_metrics_on(metrics_port)
    loglevel = loglevel or get_runtime().settings.log_level
    argv = ["worker", f"--queues={','.join(selected)}", f"--loglevel={loglevel}"]
    argv.append(f"--concurrency={concurrency or _default_concurrency(selected)}")
    argv += _batching(selected, get_runtime().settings.batch_size)
    get_app().worker_main(argv)


def _batching(queues: list[str], batch_size: int) -> list[str]:
    from workers.queues import CPU_QUEUE

    # extractions are batched only from the messages a worker holds, so a GPU-only worker takes a batch's
    # worth at once (unacknowledged until done, so a crash loses none); with `cpu` too it would also
    # hoard rasterisations that other workers could run
    if CPU_QUEUE in queues:
        return []
    return [f"--prefetch-multiplier={batch_size}"]


def _default_concurrency(queues: list[str]) -> int:
    import os

    from workers.queues import CALLBACK_QUEUE, CPU_QUEUE

    # one process per GPU: a second would load a second copy of the model into the same memory
    if any(queue not in (CPU_QUEUE, CALLBACK_QUEUE) for queue in queues):
        return 1
    return os.cpu_count() or 1
