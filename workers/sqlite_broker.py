"""The embedded broker's transport: kombu's SQLAlchemy transport on a SQLite file, tuned for latency.

kombu's own virtual transport sleeps `polling_interval` (1 s by default) after every empty poll, and an
empty poll is not cheap here: a `BEGIN IMMEDIATE` write lock and two queries per queue (about 1 ms of
CPU for the three queues). Polling faster would burn a core of this 2-core class of machine while
idle. Instead, after an empty poll this transport waits for a sign that a poll can find something:

* a publish or an acknowledgement in this process (an event, at once: `bayou serve` runs its worker
  in the API's process, and the worker's own follow-up messages are published in its thread);
* a commit by any other connection to the file (`PRAGMA data_version` on a connection of its own,
  checked every `CHANGE_CHECK_S`: a few microseconds each, so another process's publish is seen
  within milliseconds);
* at the latest `polling_interval` (kombu's option, honoured as the longest wait between polls).

The file is in WAL mode with `synchronous=NORMAL`: a publish is a commit, and WAL makes it an append
without an fsync, and lets readers run beside the writer. A power cut may lose the last messages
(never corrupt the file); their documents stay queued and `workers.stuck.requeue_stuck` sends them
again.
"""

from __future__ import annotations

import sqlite3
import threading
import weakref
from queue import Empty
from time import monotonic
from typing import Any

from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import sqlalchemy as kombu_sqlalchemy
from sqlalchemy import Engine, create_engine, event, make_url

from storage.db import set_pragmas

# the URL prefix that selects this transport (`<ALIAS>+sqlite:///...`); kombu takes a URL's transport
# only by alias, never by import path
ALIAS = "bayousqlite"
POLLING_INTERVAL_S = 1.0
CHANGE_CHECK_S = 0.005
# once nothing has happened for IDLE_AFTER_S, another process's commit is looked for this often instead:
# an idle installation should cost next to nothing (a publish in this process wakes the consumer at once)
CHANGE_CHECK_IDLE_S = 0.05
IDLE_AFTER_S = 2.0
INTERRUPT_S = 5.0
SQLITE_LOCK_TIMEOUT_S = 30
# transport options that are no create_engine arguments: kombu's own channel drops its own, and would hand
# `polling_interval` on to create_engine, which refuses it
_NOT_FOR_ENGINE = (
    "polling_interval",
    "queue_tablename",
    "message_tablename",
    "callback",
    "errback",
    "max_retries",
    "interval_start",
    "interval_step",
    "interval_max",
    "retry_errors",
)

# the transports of this process, woken by a publish from any of its channels
_live: weakref.WeakSet[Transport] = weakref.WeakSet()
_live_lock = threading.Lock()


def configure_connection(dbapi_connection: Any, _record: Any = None) -> None:
    """Per connection: WAL (a publish appends to the log and does not block readers), NORMAL sync
    (no fsync per commit; safe from corruption in WAL mode), and a writer waits for another's lock."""
    set_pragmas(
        dbapi_connection, journal_mode="WAL", synchronous="NORMAL", busy_timeout=SQLITE_LOCK_TIMEOUT_S * 1000
    )


def _wake_all() -> None:
    for transport in _transports():
        transport.wake.set()


def interrupt_waits(for_s: float = INTERRUPT_S) -> None:
    """For the next `for_s` seconds every consumer of this process returns from its waits at once, as on
    a timeout, so that its loop looks at its flags: how a stop reaches a worker whose queues are quiet.
    A window, not one wake-up: Celery's loop drains once more after it has seen the stop flag."""
    until = monotonic() + for_s
    for transport in _transports():
        transport.interrupted_until = until
        transport.wake.set()


def _transports() -> list[Transport]:
    with _live_lock:
        return list(_live)


class Channel(kombu_sqlalchemy.Channel):
    def _engine_from_config(self) -> Engine:
        client = self.connection.client
        options = {k: v for k, v in client.transport_options.items() if k not in _NOT_FOR_ENGINE}
        options.setdefault("connect_args", {"timeout": SQLITE_LOCK_TIMEOUT_S})
        engine = create_engine(client.hostname, **options)
        event.listen(engine, "connect", configure_connection)
        return engine

    def _put(self, queue: str, payload: Any, **kwargs: Any) -> None:
        super()._put(queue, payload, **kwargs)
        _wake_all()

    def basic_ack(self, delivery_tag: Any, multiple: bool = False) -> None:
        # a freed prefetch slot: the consumer may take a message it had to leave waiting
        super().basic_ack(delivery_tag, multiple=multiple)
        self.connection.wake.set()

    def basic_reject(self, delivery_tag: Any, requeue: bool = False) -> None:
        super().basic_reject(delivery_tag, requeue=requeue)
        self.connection.wake.set()


class Transport(kombu_sqlalchemy.Transport):
    Channel = Channel
    polling_interval = POLLING_INTERVAL_S

    def __init__(self, client: Any, **kwargs: Any) -> None:
        super().__init__(client, **kwargs)
        self.wake = threading.Event()
        self.interrupted_until = 0.0
        # kept here: kombu drops `client` when the connection closes, maybe while a consumer waits
        self._database = make_url(client.hostname).database
        self._watcher: sqlite3.Connection | None = None
        self._closed = False
        self._last_activity = monotonic()
        with _live_lock:
            _live.add(self)

    def drain_events(self, connection: Any, timeout: float | None = None) -> None:
        """kombu's loop, with `_wait_for_change` where it sleeps `polling_interval`."""
        started = monotonic()
        while True:
            if monotonic() < self.interrupted_until:
                raise TimeoutError()
            self.wake.clear()
            seen = self._data_version()  # before the poll: a commit during it is not missed
            try:
                self.cycle.get(self._deliver, timeout=timeout)
                self._last_activity = monotonic()
                return
            except Empty:
                left = self.polling_interval
                if timeout is not None:
                    left = min(left, timeout - (monotonic() - started))
                    if left <= 0:
                        raise TimeoutError() from None  # socket.timeout, what kombu's callers expect
                self._wait_for_change(seen, left)

    def _wait_for_change(self, seen: int | None, longest_s: float) -> None:
        deadline = monotonic() + longest_s
        while True:
            left = deadline - monotonic()
            if left <= 0 or self._closed:
                return
            if self.wake.wait(min(self._check_every(), left)) or self._data_version() != seen:
                self._last_activity = monotonic()
                return

    def _check_every(self) -> float:
        idle = monotonic() - self._last_activity > IDLE_AFTER_S
        return CHANGE_CHECK_IDLE_S if idle else CHANGE_CHECK_S

    def _data_version(self) -> int | None:
        """Changes whenever another connection commits to the file; None when it cannot be read (then
        only the event and the polling interval wake the consumer)."""
        if self._closed:
            return None
        try:
            if self._watcher is None:
                self._watcher = _open_watcher(self._database)
            return self._watcher.execute("PRAGMA data_version").fetchone()[0]
        except sqlite3.Error:
            return None

    def close_connection(self, connection: Any) -> None:
        self._closed = True
        self.wake.set()
        try:
            super().close_connection(connection)
        finally:
            watcher, self._watcher = self._watcher, None
            if watcher is not None:
                watcher.close()


def _open_watcher(database: str) -> sqlite3.Connection:
    # autocommit: it never holds a transaction, so no lock or snapshot that would stop the WAL shrinking
    return sqlite3.connect(database, isolation_level=None, check_same_thread=False, timeout=1)


def register() -> None:
    TRANSPORT_ALIASES.setdefault(ALIAS, f"{__name__}:Transport")
