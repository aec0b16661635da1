"""Queue names and routing: which queue a document's work goes to."""

from __future__ import annotations

from bayou.engines import model_name
from bayou.settings import Settings
from extractor.registry import GPU_QUEUES, lookup

CPU_QUEUE = "cpu"
# completion callbacks wait on strangers' servers: a queue of their own, so they never stand in line
# before (or hold up) a document's work. A worker that serves `cpu` serves it too.
CALLBACK_QUEUE = "callbacks"
ALL_QUEUES = (CPU_QUEUE, CALLBACK_QUEUE, *GPU_QUEUES.values())
# what the embedded worker's main thread serves (workers.embedded gives callbacks a thread of their own)
DOCUMENT_QUEUES = tuple(queue for queue in ALL_QUEUES if queue != CALLBACK_QUEUE)


def extract_queue(model: str | None, doc_type: str, settings: Settings | None = None) -> str:
    """The GPU queue that extracts a document: the model it asked for, else its type's default."""
    return lookup(model_name(model, doc_type, settings)).queue


def parse_queues(text: str | None) -> list[str]:
    """`cpu,gpu.2b` to a list of known queues; empty or None means every queue. `cpu` brings
    `callbacks` along: deployments that name `cpu` alone kept their callbacks when those moved."""
    names = [name.strip() for name in (text or "").split(",") if name.strip()]
    unknown = [name for name in names if name not in ALL_QUEUES]
    if unknown:
        raise ValueError(f"unknown queue(s) {', '.join(unknown)}; known: {', '.join(ALL_QUEUES)}")
    if CPU_QUEUE in names and CALLBACK_QUEUE not in names:
        names.append(CALLBACK_QUEUE)
    return names or list(ALL_QUEUES)
