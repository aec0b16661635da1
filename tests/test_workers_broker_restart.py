"""The Redis broker restarted in the middle of a run: every document still ends done or needs_review with
exactly one run — nothing lost, nothing doubled.

The test starts a Redis of its own (append-only, so its queues survive the restart), SQLite for state,
the tiny checkpoint as the model, and the embedded worker in a thread (real Celery, every queue). Twelve
documents are enqueued; once the first is rasterised (the rest queued, prefetched or in the batcher's
hands), Redis is killed (SIGKILL) and started again on the same port and directory.

What a restart does to messages the worker held: their acknowledgements fail ("Couldn't ack") and the
consumer, reconnecting, drops what it had prefetched, so those messages sit in Redis's unacked set. Redis
(kombu) gives them back only once they are older than the visibility timeout (2 h in production), and the
stuck-document sweep re-sends their documents after `stuck_after_s` (30 min). Without either, such
documents stay queued/processing: measured here, 4 of 12. So each case shortens one of the two recovery
paths to seconds, and shows it brings every document through with one run — the redelivered or re-sent
message of a document that was in fact finished stores nothing (idempotent stores).

Two faults the restart used to bring out (issue #4), fixed and so covered here:
- a rasterise task sending its extraction while the client reconnects: kombu then publishes on a channel
  its own reconnect closed and raises AttributeError, once taken for a bug that failed the document
  (internal_error). `workers.dispatch` now raises BrokerUnavailable for any error from inside the broker
  client, a transient error: the task is retried, finds its pages stored and sends the extraction.
- the extraction batcher's flush timer, lost when Celery clears its timers on a connection error: what
  the batcher held then waited for more extractions to arrive (here the shortened recovery paths bring
  them soon; in production a lone one waited for the sweep). `workers.reconnect` re-arms it at every
  reconnect; tests/test_workers_units.py covers it directly.
- a task retried because the broker was away, whose retry could not be sent either: Celery then rejects
  the message without requeueing it, and the document would stay `processing` until the stuck sweep (found
  in Celery's code while chasing this test's flake; not the loss the flake turned out to be, below).
  `workers.transient.RetryingTask` sends the retry with the follow-up sends' patience and, failing that,
  gives the message back; tests/test_workers_units.py covers it directly.

One window remains that no code of ours can close: kombu's Redis transport takes a message (BRPOP) and
records it as unacknowledged in a second round trip, so a Redis killed between the two loses that message
to everything but the stuck sweep (the `sweep_resends` case). Seen twice in about 45 runs here, both on
a loaded machine: Redis's append-only log showed the message pushed, then popped, and no `unacked` record
after it (once an extraction, leaving its document `processing` with its pages; once a rasterisation,
leaving it `queued`).
The `redis_redelivers` case therefore reads that log when documents are left unfinished, and is xfail only
when each of them lost a message exactly so; any other loss fails it.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest

from workers.broker import _first_argument
from workers.embedded import start_worker_thread
from workers.runtime import check_schema, get_runtime

DOCUMENTS = 12
COLOURS = [(20 * n, 255 - 20 * n, 128) for n in range(DOCUMENTS)]
SHORT_VISIBILITY_S = 5
SHORT_STUCK_AFTER_S = 5
SHORT_SWEEP_EVERY_S = 2


@pytest.mark.slow
@pytest.mark.redis
@pytest.mark.parametrize(
    "recovery",
    ["redis_redelivers", "sweep_resends"],
)
def test_a_broker_restart_mid_run_loses_and_doubles_no_document(
    recovery: str,
    monkeypatch: pytest.MonkeyPatch,
    worker_env: Callable[..., dict[str, str]],
    redis_server: Callable[[], object],
    worker_documents,
) -> None:
    sweep: dict[str, float] = {"sweep_every_s": 3600}  # the first sweep only re-sends after 30 minutes
    if recovery == "redis_redelivers":
        # read when the Celery app is made (worker_env forgets the cached one)
        monkeypatch.setattr("workers.broker.VISIBILITY_TIMEOUT_S", SHORT_VISIBILITY_S)
    else:
        sweep = {"sweep_every_s": SHORT_SWEEP_EVERY_S, "stuck_after_s": SHORT_STUCK_AFTER_S}
    server = redis_server()
    worker_env(broker_url=server.url)
    runtime = get_runtime()
    check_schema(runtime.settings)
    documents = [worker_documents.submit(runtime, worker_documents.png(colour=c)) for c in COLOURS]

    worker = start_worker_thread(**sweep)
    try:
        # mid-run: the first document rasterised (its extraction sent or in hand), the rest behind it
        deadline = time.monotonic() + 120
        while not worker_documents.rasterised(runtime, documents):
            assert time.monotonic() < deadline, "nothing was rasterised before the restart"
            time.sleep(0.02)
        statuses = worker_documents.statuses(runtime, documents)
        unfinished_at_restart = sum(s not in worker_documents.FINISHED for s in statuses.values())
        server.restart()

        try:
            statuses = worker_documents.wait_finished(runtime, documents, timeout=150)
        except AssertionError as unfinished:
            # where the lost work is, for whoever meets this failure: the broker's lists, its unacked
            # messages, its keys, and the unfinished documents' rows
            whereabouts = _whereabouts(server.url, runtime, documents)
            if recovery == "redis_redelivers":
                _xfail_if_lost_in_kombus_window(
                    server, worker_documents.statuses(runtime, documents), whereabouts
                )
            raise AssertionError(f"{unfinished}\n{whereabouts}") from None
        # late redeliveries (a message whose ack was lost with the old connection) must change nothing
        time.sleep(SHORT_VISIBILITY_S + 1)
    finally:
        worker.stop()

    assert server.restarts == 1
    assert unfinished_at_restart > 0, (
        "every document finished before the broker went away: nothing was tested"
    )
    assert set(statuses.values()) <= worker_documents.FINISHED, statuses
    assert worker_documents.statuses(runtime, documents) == statuses
    assert worker_documents.runs(runtime, documents) == {document_id: 1 for document_id in documents}


def _whereabouts(url: str, runtime, documents: list[str]) -> str:
    import json

    import redis
    from sqlalchemy import select

    from storage.models import Document

    client = redis.Redis.from_url(url)
    lines = []
    for key in sorted(client.keys("*")):
        kind = client.type(key).decode()
        if kind == "list":
            ids = [_first_argument(item) for item in client.lrange(key, 0, -1)]
            lines.append(f"list {key!r}: {ids}")
        elif key == b"unacked":
            for tag, raw in client.hgetall(key).items():
                payload, _exchange, routing_key = json.loads(raw)
                task = payload["headers"].get("task")
                lines.append(f"unacked {tag!r} {routing_key} {task} {_first_argument(payload)}")
        else:
            lines.append(f"{kind} {key!r} ttl={client.ttl(key)}")
    client.close()
    with runtime.sessions() as session:
        for document in session.scalars(select(Document).where(Document.id.in_(documents))):
            if document.status in ("queued", "processing"):
                lines.append(
                    f"document {document.id}: {document.status}, pages {document.pages}, "
                    f"attempts {document.attempts}, updated {document.updated_at}"
                )
    return "\n".join(lines)


def _xfail_if_lost_in_kombus_window(server, statuses: dict[str, str], whereabouts: str) -> None:
    """Marks the test xfail when every unfinished document lost a message in kombu's window, as Redis's
    own log proves it: the message was pushed, is in no list now, and no worker ever recorded it as taken
    (no HSET into `unacked` with its delivery tag) — Redis handed it out (BRPOP, logged as a pop) and was
    killed before the worker's second round trip recorded it. Any other loss fails the test."""
    unfinished = {
        document_id for document_id, status in statuses.items() if status in ("queued", "processing")
    }
    if unfinished and unfinished <= _popped_but_never_recorded(server):
        pytest.xfail(
            "kombu's Redis transport lost a message between taking it (BRPOP) and recording it as unacked "
            f"(Redis's log: pushed, then gone, never recorded); only the stuck sweep recovers it\n{whereabouts}"
        )


def _popped_but_never_recorded(server) -> set[str]:
    """The documents of messages Redis's append-only log shows pushed (LPUSH/RPUSH) but never recorded as
    taken (HSET `unacked` with their delivery tag), and that no list holds now."""
    import json

    import redis

    pushed: dict[str, str] = {}
    recorded: set[str] = set()
    for command in _aof_commands(server.directory):
        name = command[0].upper()
        if name in (b"LPUSH", b"RPUSH"):
            for payload in command[2:]:
                document_id = _first_argument(payload)
                if document_id is not None:
                    pushed[json.loads(payload)["properties"]["delivery_tag"]] = document_id
        elif name == b"HSET" and command[1] == b"unacked":
            recorded.update(tag.decode() for tag in command[2::2])
    client = redis.Redis.from_url(server.url)
    listed = {
        json.loads(payload)["properties"]["delivery_tag"]
        for key in client.keys("*")
        if client.type(key) == b"list"
        for payload in client.lrange(key, 0, -1)
    }
    client.close()
    return {document_id for tag, document_id in pushed.items() if tag not in recorded | listed}


def _aof_commands(directory):
    """The commands of the test Redis's append-only log (Redis 7: appendonlydir/*.incr.aof), in order."""
    from pathlib import Path

    files = sorted(
        (Path(directory) / "appendonlydir").glob("*.incr.aof"), key=lambda path: int(path.name.split(".")[-3])
    )
    for path in files:
        data = path.read_bytes()
        at = 0
        while at < len(data):
            end = data.index(b"\r\n", at)
            count, at = int(data[at + 1 : end]), end + 2
            command = []
            for _ in range(count):
                end = data.index(b"\r\n", at)
                length, at = int(data[at + 1 : end]), end + 2
                command.append(data[at : at + length])
                at += length + 2
            yield command
