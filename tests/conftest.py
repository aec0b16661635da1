"""Shared fixtures. Grouped by area; each group says what it provides."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from sqlalchemy import Engine
    from sqlalchemy.orm import Session, sessionmaker

    from storage.blobs import BlobStore

# --- model: tiny random checkpoints in the published layout (written once per test session) ---


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 0.8B-layout (Llama, no MSAC) random checkpoint."""
    from extractor.model.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-800m"), seed=0, msac=False)


@pytest.fixture(scope="session")
def tiny_checkpoint_msac(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny 2B-layout (Mistral, MSAC) random checkpoint."""
    from extractor.model.tiny import write_tiny_checkpoint

    return write_tiny_checkpoint(tmp_path_factory.mktemp("tiny-2b"), seed=1, msac=True)


@pytest.fixture(scope="session")
def mistral_sentencepiece() -> bytes:
    """The real 32,000-piece Mistral tokenizer.model (mistral_common ships it): the published tokenizer."""
    import mistral_common

    return (Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1").read_bytes()


@pytest.fixture(scope="session")
def published_checkpoint(tmp_path_factory: pytest.TempPathFactory, mistral_sentencepiece: bytes) -> Path:
    """Tiny random weights with the published tokenizer side: the real Mistral tokenizer.model, the ten
    added tokens (ids 32000-32009), tokenizer_config as published; no tokenizer.json."""
    from extractor.model.tiny import write_tiny_checkpoint

    directory = tmp_path_factory.mktemp("published-layout")
    return write_tiny_checkpoint(directory, seed=2, sentencepiece_model=mistral_sentencepiece)


@pytest.fixture(scope="session")
def tiny_model(tiny_checkpoint: Path):
    from extractor.model import load_model

    return load_model(tiny_checkpoint)


# --- storage: databases at head on each backend (SQLite file, throwaway PostgreSQL) and a blob store ---
# PostgreSQL: BAYOU_TEST_POSTGRES (a libpq conninfo for the maintenance database) or localhost as postgres.
# Each session creates its own databases, `bayou_test_<random>`, and drops them at the end.

STORAGE_PG_ADMIN = os.environ.get(
    "BAYOU_TEST_POSTGRES", "host=localhost port=5432 user=postgres dbname=postgres"
)


@pytest.fixture(scope="session")
def postgres_admin() -> str:
    """The conninfo of the server's maintenance database; skips the test when the server is unreachable."""
    import psycopg

    try:
        with psycopg.connect(STORAGE_PG_ADMIN, connect_timeout=3):
            pass
    except psycopg.OperationalError as exc:
        pytest.skip(f"PostgreSQL unreachable at {STORAGE_PG_ADMIN!r}: {exc}")
    return STORAGE_PG_ADMIN


@pytest.fixture(scope="session")
def postgres_database_factory(postgres_admin: str) -> Iterator[Callable[[], str]]:
    """Call it for the SQLAlchemy URL of a new, empty database; all of them are dropped afterwards."""
    import psycopg
    from psycopg import sql
    from psycopg.conninfo import conninfo_to_dict
    from sqlalchemy import URL

    params = conninfo_to_dict(postgres_admin)
    created: list[str] = []

    def create() -> str:
        name = f"bayou_test_{secrets.token_hex(6)}"
        with psycopg.connect(postgres_admin, autocommit=True) as connection:
            connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        created.append(name)
        url = URL.create(
            "postgresql+psycopg",
            username=params.get("user"),
            password=params.get("password"),
            host=params.get("host"),
            port=int(params["port"]) if params.get("port") else None,
            database=name,
        )
        return url.render_as_string(hide_password=False)

    yield create
    with psycopg.connect(postgres_admin, autocommit=True) as connection:
        for name in created:
            # FORCE: a test that failed may have left a connection open
            connection.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture(scope="session")
def postgres_url(postgres_database_factory: Callable[[], str]) -> str:
    """One PostgreSQL database at head for the session (`any_db_url` empties it after each test)."""
    from storage.migrate import upgrade

    url = postgres_database_factory()
    upgrade(url)
    return url


@pytest.fixture(scope="session")
def _sqlite_at_head(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from storage.migrate import upgrade

    path = tmp_path_factory.mktemp("sqlite-template") / "bayou.db"
    upgrade(f"sqlite:///{path}")
    return path


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """An SQLite URL whose file does not exist yet."""
    return f"sqlite:///{tmp_path / 'empty' / 'bayou.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def any_db_url(request: pytest.FixtureRequest, tmp_path: Path, _sqlite_at_head: Path) -> Iterator[str]:
    """A database at head: a fresh SQLite file, then the session's PostgreSQL database, emptied afterwards."""
    if request.param == "sqlite":
        # a copy of a migrated file is much cheaper than migrating each time
        path = tmp_path / "db" / "bayou.db"
        path.parent.mkdir()
        shutil.copyfile(_sqlite_at_head, path)
        yield f"sqlite:///{path}"
        return
    url = request.getfixturevalue("postgres_url")
    yield url
    _empty_postgres(url)


def _empty_postgres(url: str) -> None:
    from sqlalchemy import text

    from storage.db import make_engine
    from storage.models import Base

    engine = make_engine(url)
    tables = ", ".join(table.name for table in Base.metadata.sorted_tables)
    with engine.begin() as connection:
        connection.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture
def db_engine(any_db_url: str) -> Iterator[Engine]:
    from storage.db import make_engine

    engine = make_engine(any_db_url)
    yield engine
    engine.dispose()


@pytest.fixture
def db_sessions(db_engine: Engine) -> sessionmaker[Session]:
    from storage.db import make_session_factory

    return make_session_factory(db_engine)


@pytest.fixture
def db_session(db_sessions: sessionmaker[Session]) -> Iterator[Session]:
    with db_sessions() as session:
        yield session


@pytest.fixture
def blob_store(tmp_path: Path) -> BlobStore:
    from storage.blobs import BlobStore

    return BlobStore(tmp_path / "blobs")


# --- api: an app per test on a fresh SQLite copy (or any_db_url), a recording enqueue and an API key ---


class FakeEnqueue:
    """Stands in for workers.enqueue: records what would have been queued."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str | None, str]] = []

    def __call__(self, document_id: str, *, model: str | None, doc_type: str) -> None:
        self.calls.append((document_id, model, doc_type))


@pytest.fixture
def fake_enqueue() -> FakeEnqueue:
    return FakeEnqueue()


@pytest.fixture
def api_data_dir(tmp_path: Path, _sqlite_at_head: Path) -> Path:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copyfile(_sqlite_at_head, data_dir / "bayou.db")
    return data_dir


@pytest.fixture
def make_api_client(api_data_dir: Path, fake_enqueue: FakeEnqueue):
    """Call with Settings overrides (and create_app keywords) for a TestClient whose `.key` is valid."""
    from fastapi.testclient import TestClient

    from api.app import create_app
    from api.keys import create_key
    from bayou.settings import Settings

    clients: list[TestClient] = []

    def make(*, app_kwargs: dict | None = None, **overrides) -> TestClient:
        values = {"data_dir": api_data_dir, "database_url": f"sqlite:///{api_data_dir / 'bayou.db'}"}
        values.update(overrides)
        settings = Settings(_env_file=None, **values)
        app = create_app(settings, **{"enqueue": fake_enqueue, **(app_kwargs or {})})
        client = TestClient(app)
        client.__enter__()
        with app.state.bayou.sessions() as session:
            client.key = create_key(session, f"test-{len(clients)}-{secrets.token_hex(3)}")
        client.headers["Authorization"] = f"Bearer {client.key}"
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def api_client(make_api_client):
    return make_api_client()


@pytest.fixture
def make_png() -> Callable[..., bytes]:
    """Small distinct PNGs: make_png(seed) differs in content for each seed."""
    import io

    from PIL import Image

    def make(seed: int = 0, size: tuple[int, int] = (64, 48)) -> bytes:
        image = Image.new("RGB", size, ((seed * 37) % 256, (seed * 91) % 256, (seed // 256) % 256))
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return buffer.getvalue()

    return make


# --- workers: settings pointing at the tiny checkpoint, a throwaway data dir and a chosen broker ---
# `worker_env(database_url=..., broker_url=...)` sets the BAYOU_ variables (inherited by worker
# subprocesses) and forgets every cached settings object, app and runtime, before and after the test.


def _forget_worker_state() -> None:
    from bayou.settings import get_settings
    from workers.app import get_app
    from workers.runtime import reset_runtime

    get_settings.cache_clear()
    get_app.cache_clear()
    reset_runtime()


@pytest.fixture
def worker_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_checkpoint: Path
) -> Iterator[Callable[..., dict[str, str]]]:
    def configure(*, database_url: str = "", broker_url: str = "") -> dict[str, str]:
        env = {
            "BAYOU_DATA_DIR": str(tmp_path / "data"),
            "BAYOU_DATABASE_URL": database_url,
            "BAYOU_BROKER_URL": broker_url,
            "BAYOU_MODEL_800M": str(tiny_checkpoint),
            "BAYOU_MODEL_2B": str(tiny_checkpoint),
            "BAYOU_DEVICE": "cpu",
            "BAYOU_DTYPE": "auto",
        }
        for name, value in env.items():
            monkeypatch.setenv(name, value)
        _forget_worker_state()
        return env

    yield configure
    monkeypatch.undo()
    _forget_worker_state()


@pytest.fixture
def redis_broker_url() -> Iterator[str]:
    """A Redis database of its own for the test's queues (emptied before and after); skips the test
    when no Redis answers on localhost."""
    import redis

    base = os.environ.get("BAYOU_TEST_REDIS", "redis://127.0.0.1:6379")
    server = redis.Redis.from_url(base, socket_connect_timeout=3)
    try:
        connected = {int(entry["db"]) for entry in server.client_list()}
    except redis.exceptions.ConnectionError as exc:
        pytest.skip(f"Redis unreachable at {base}: {exc}")
    except redis.exceptions.ResponseError:  # a server that does not list its clients (ACL): pick blind
        connected = set()
    finally:
        server.close()
    # the last databases of the default 16, one no client is connected to if any: a worker of an earlier
    # test (or of a parallel session) still stopping, blocked in BRPOP on its queue, would take this test's
    # messages (seen: a message sent here gone before the test read its queue)
    candidates = [db for db in range(10, 16) if db not in connected] or list(range(10, 16))
    url = f"{base}/{secrets.choice(candidates)}"
    client = redis.Redis.from_url(url, socket_connect_timeout=3)
    client.flushdb()
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
def worker_runtime(worker_env: Callable[..., dict[str, str]]) -> object:
    """The embedded defaults (SQLite, kombu's SQLAlchemy broker in the data dir) at schema head, no worker
    running; the worker runtime (settings, sessions, blobs)."""
    from workers.runtime import check_schema, get_runtime

    worker_env()
    runtime = get_runtime()
    check_schema(runtime.settings)
    return runtime


@pytest.fixture
def embedded_worker(worker_runtime) -> Iterator[object]:
    """`worker_runtime` served by the embedded worker thread."""
    from workers.embedded import start_worker_thread

    worker = start_worker_thread(sweep_every_s=3600)
    yield worker_runtime
    worker.stop()


# --- ingest: `bayou ingest` against a throwaway data dir (embedded SQLite + embedded broker) ---
# `ingest_env()` points BAYOU_DATA_DIR at a fresh directory and forgets cached settings and Celery apps,
# so the real workers.enqueue writes to that directory's broker.db; `png_files(folder, n)` writes n
# distinct tiny PNGs.


@pytest.fixture
def ingest_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Callable[..., Path]]:
    def configure(*, broker_url: str = "", data_dir: Path | None = None) -> Path:
        data_dir = data_dir or tmp_path / "bayou-data"
        monkeypatch.setenv("BAYOU_DATA_DIR", str(data_dir))
        monkeypatch.setenv("BAYOU_DATABASE_URL", "")
        monkeypatch.setenv("BAYOU_BROKER_URL", broker_url)
        _forget_worker_state()
        return data_dir

    yield configure
    monkeypatch.undo()
    _forget_worker_state()


@pytest.fixture
def png_files(make_png: Callable[..., bytes]) -> Callable[..., list[Path]]:
    def write(folder: Path, count: int, *, start: int = 0, prefix: str = "doc") -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for seed in range(start, start + count):
            path = folder / f"{prefix}{seed:05d}.png"
            path.write_bytes(make_png(seed, size=(16, 16)))
            paths.append(path)
        return paths

    return write


# --- review UI: a client without API key, users, documents with a fake run (no model), browser sign-in ---
# Every test using `review_client` runs twice: on SQLite and on PostgreSQL (`review_db_url`).
# `review_client`: a TestClient on a fresh app; `review_client.user(email, role)` creates an account (password
# REVIEW_PASSWORD); `review_client.document(data=..., doc_type=...)` stores a document with one page and a
# run from a fake model, `needs_review` unless told; `review_client.sign_in(email)` signs the client in.

REVIEW_PASSWORD = "correct horse battery"
FAKE_MODEL_ID = "fake-model-for-tests"


class ReviewClientHelpers:
    def __init__(self, client, make_png: Callable[..., bytes]) -> None:
        self.client = client
        self.make_png = make_png
        self.state = client.app.state.bayou
        self._seed = 0

    def user(self, email: str = "rita@example.com", role: str = "reviewer", password: str = REVIEW_PASSWORD):
        from api.review.auth import create_user

        with self.state.sessions() as session:
            return create_user(session, email=email, role=role, password=password).id

    def csrf(self, path: str = "/review/login") -> str:
        import re

        html = self.client.get(path).text
        match = re.search(r'name="csrf_token" value="([^"]+)"', html)
        assert match, f"no CSRF token on {path}"
        return match.group(1)

    def sign_in(self, email: str = "rita@example.com", password: str = REVIEW_PASSWORD):
        token = self.csrf()
        return self.client.post(
            "/review/login",
            data={"email": email, "password": password, "csrf_token": token, "next": ""},
            follow_redirects=False,
        )

    def document(
        self,
        *,
        data,
        doc_type: str = "receipt",
        status: str = "needs_review",
        confidence: dict | None = None,
        errors: list | None = None,
        checks: list | None = None,
        pages: int = 1,
        locations: dict | None = None,
    ) -> str:
        """A document as a worker would leave it, from a fake run (no model involved)."""
        import io
        import json

        from storage.documents import NewRun, create_document, set_status, store_pages, store_run
        from storage.models import DocumentStatus

        self._seed += 1
        with self.state.sessions() as session:
            document, _ = create_document(
                session,
                self.state.blobs,
                stream_or_path=io.BytesIO(self.make_png(self._seed)),
                filename=f"scan-{self._seed}.png",
                media_type="image/png",
                doc_type=doc_type,
                model="h2ovl-800m",
            )
            images = [self.page_image(data, n + 1) for n in range(pages)]
            store_pages(session, self.state.blobs, document.id, images)
            set_status(session, document.id, DocumentStatus.PROCESSING)
            run = NewRun(
                model_id=FAKE_MODEL_ID,
                prompt_version="test",
                schema_version="1.0.0",
                raw_output=json.dumps(data),
                valid=not errors,
                data=data,
                errors=errors or [],
                checks=checks or [],
                confidence=confidence or {},
                locations=locations,
            )
            store_run(session, document.id, "fake-run-1", run, status=DocumentStatus(status))
            return document.id

    @staticmethod
    def page_image(data, number: int, size: tuple[int, int] = (420, 600)):
        """A white page with the document's values typed on it, so screenshots show something to read."""
        import io

        from PIL import Image, ImageDraw

        from storage.documents import PageImage

        image = Image.new("RGB", size, "white")
        draw = ImageDraw.Draw(image)
        draw.text((20, 16), f"page {number}", fill="gray")
        lines = [f"{k}: {v}" for k, v in data.items()] if isinstance(data, dict) else [str(data)]
        for row, line in enumerate(lines[:40]):
            draw.text((20, 44 + 14 * row), line[:64], fill="black")
        buffer = io.BytesIO()
        image.save(buffer, format="PNG")
        return PageImage(buffer.getvalue(), *size)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def review_db_url(request: pytest.FixtureRequest, api_data_dir: Path) -> str:
    """The review UI's database: the api fixtures' SQLite copy, then the session's PostgreSQL database
    (emptied after each test). Test modules that need one backend only override this fixture."""
    if request.param == "sqlite":
        return f"sqlite:///{api_data_dir / 'bayou.db'}"
    url = request.getfixturevalue("postgres_url")
    # review_client asks for this fixture before make_api_client, so this runs after its clients closed
    request.addfinalizer(lambda: _empty_postgres(url))
    return url


@pytest.fixture
def review_client(review_db_url: str, make_api_client, make_png):
    client = make_api_client(database_url=review_db_url)
    client.headers.pop("Authorization", None)
    client.review = ReviewClientHelpers(client, make_png)
    return client


@pytest.fixture
def receipt_example() -> dict:
    import copy

    from extractor.schemas import load_schema

    return copy.deepcopy(load_schema("receipt")["examples"][0])


# --- workers, end to end: a Redis server of the test's own (restartable) and document helpers ---
# `redis_server()` starts `redis-server` on a free port, append-only in a temporary dir, so what it holds
# survives `.restart()` (SIGKILL, then a new process on the same port and dir); skips when the binary is
# missing. `worker_documents` submits documents straight to storage + workers.enqueue and waits on them.


class RedisServer:
    def __init__(self, directory: Path) -> None:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.directory = directory
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = None
        self.restarts = 0

    def start(self) -> None:
        import subprocess
        import time

        import redis

        command = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
        command += ["--appendonly", "yes", "--dir", str(self.directory)]
        log = (self.directory / "redis.log").open("ab")
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        client = redis.Redis(port=self.port, socket_connect_timeout=1)
        for _ in range(100):
            try:
                if client.ping():
                    client.close()
                    return
            except (redis.exceptions.ConnectionError, redis.exceptions.BusyLoadingError):
                time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer")

    def kill(self) -> None:
        import signal

        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(timeout=10)

    def restart(self) -> None:
        self.kill()
        self.start()
        self.restarts += 1


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Callable[[], RedisServer]]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed: this test starts (and restarts) a Redis of its own")
    servers: list[RedisServer] = []

    def start() -> RedisServer:
        directory = tmp_path / f"redis-{len(servers)}"
        directory.mkdir()
        server = RedisServer(directory)
        servers.append(server)
        server.start()
        return server

    yield start
    for server in servers:
        server.kill()


class WorkerDocuments:
    """Documents for worker tests, created in the runtime's storage and sent with workers.enqueue."""

    FINISHED = frozenset({"done", "needs_review"})

    @staticmethod
    def png(width: int = 448, height: int = 448, colour: str | tuple[int, int, int] = "white") -> bytes:
        import io

        from PIL import Image

        buffer = io.BytesIO()
        Image.new("RGB", (width, height), colour).save(buffer, format="PNG")
        return buffer.getvalue()

    @classmethod
    def submit(cls, runtime, data: bytes, doc_type: str = "receipt") -> str:
        from workers import enqueue

        document_id = cls.create(runtime, data, doc_type)
        enqueue(document_id, model=None, doc_type=doc_type)
        return document_id

    @staticmethod
    def create(runtime, data: bytes, doc_type: str = "receipt", *, callback_url: str | None = None) -> str:
        """A queued document's row and blob, not sent to any queue."""
        import io

        from storage.documents import create_document

        with runtime.sessions() as session:
            document, created = create_document(
                session,
                runtime.blobs,
                stream_or_path=io.BytesIO(data),
                filename="scan",
                media_type="application/octet-stream",
                doc_type=doc_type,
                callback_url=callback_url,
            )
        assert created
        return document.id

    @staticmethod
    def statuses(runtime, document_ids: list[str]) -> dict[str, str]:
        from sqlalchemy import select

        from storage.models import Document

        with runtime.sessions() as session:
            rows = session.execute(select(Document.id, Document.status).where(Document.id.in_(document_ids)))
            return {row.id: str(getattr(row.status, "value", row.status)) for row in rows}

    @staticmethod
    def rasterised(runtime, document_ids: list[str]) -> list[str]:
        """The documents whose pages are stored (rasterising finished)."""
        from sqlalchemy import select

        from storage.models import Document

        with runtime.sessions() as session:
            query = select(Document.id).where(Document.id.in_(document_ids), Document.pages > 0)
            return list(session.scalars(query))

    @staticmethod
    def runs(runtime, document_ids: list[str]) -> dict[str, int]:
        from sqlalchemy import func, select

        from storage.models import ExtractionRun

        with runtime.sessions() as session:
            rows = session.execute(
                select(ExtractionRun.document_id, func.count())
                .where(ExtractionRun.document_id.in_(document_ids))
                .group_by(ExtractionRun.document_id)
            )
            counts = {row[0]: row[1] for row in rows}
        return {document_id: counts.get(document_id, 0) for document_id in document_ids}

    def wait_finished(self, runtime, document_ids: list[str], timeout: float = 120) -> dict[str, str]:
        """Statuses once none is queued or processing; AssertionError with them after `timeout`."""
        import time

        deadline = time.monotonic() + timeout
        while True:
            statuses = self.statuses(runtime, document_ids)
            if all(status not in ("queued", "processing") for status in statuses.values()):
                return statuses
            if time.monotonic() > deadline:
                raise AssertionError(f"not finished after {timeout} s: {statuses}")
            time.sleep(0.2)


@pytest.fixture
def worker_documents() -> WorkerDocuments:
    return WorkerDocuments()


@pytest.fixture
def linked_folder(tmp_path: Path) -> Path:
    """A folder `in` with a file, links leading outside it (to a file and to a directory of `out`), and a
    link to its own file: what a walk confined to `in` must not follow out."""
    folder, outside = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    outside.mkdir()
    (outside / "secret.png").write_bytes(b"s")
    (folder / "own.png").write_bytes(b"o")
    (folder / "escape.png").symlink_to(outside / "secret.png")
    (folder / "escape-dir").symlink_to(outside, target_is_directory=True)
    (folder / "alias.png").symlink_to(folder / "own.png")
    return folder
