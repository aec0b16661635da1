"""API keys: every /v1 route refuses a missing, wrong or revoked key with 401 and the JSON error;
health and metrics need none; `bayou apikey` creates, lists and revokes; keys are rate limited."""

from __future__ import annotations

import json

import pytest
import typer
from sqlalchemy import select
from typer.testing import CliRunner

from api.keys import KEY_PREFIX, create_key, revoke_key, verify_key
from api.ratelimit import RateLimit, TokenBuckets
from bayou.cli import apikey as apikey_cli
from storage.models import ApiKey

V1_ROUTES = [
    ("post", "/v1/documents"),
    ("get", "/v1/documents"),
    ("get", "/v1/documents/doc_x"),
    ("get", "/v1/documents/doc_x/pages/1"),
    ("post", "/v1/documents/doc_x/review"),
    ("delete", "/v1/documents/doc_x"),
    ("post", "/v1/batches"),
    ("get", "/v1/batches/bat_x"),
]


def _call(client, method: str, path: str, headers: dict[str, str]):
    return client.request(method, path, headers=headers)


@pytest.mark.parametrize(("method", "path"), V1_ROUTES)
@pytest.mark.parametrize(
    "authorization",
    [None, "Bearer bayou_wrongwrongwrongwrongwrongwrongwrongwrongwrong", "Bearer nonsense", "Basic abc"],
    ids=["missing", "wrong", "malformed", "not-bearer"],
)
def test_every_v1_route_needs_a_valid_key(api_client, method, path, authorization):
    headers = {"Authorization": authorization} if authorization else {}
    api_client.headers.pop("Authorization")
    response = _call(api_client, method, path, headers)
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["WWW-Authenticate"] == "Bearer"


def test_a_revoked_key_is_refused(api_client):
    assert api_client.get("/v1/documents").status_code == 200
    state = api_client.app.state.bayou
    with state.sessions() as session:
        name = session.scalar(select(ApiKey.name))
        revoke_key(session, name)
    response = api_client.get("/v1/documents")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_key_differing_after_its_prefix_is_refused(api_client):
    forged = api_client.key[:-4] + ("AAAA" if not api_client.key.endswith("AAAA") else "BBBB")
    response = api_client.get("/v1/documents", headers={"Authorization": f"Bearer {forged}"})
    assert response.status_code == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/metrics"])
def test_health_and_metrics_need_no_key(api_client, path):
    api_client.headers.pop("Authorization")
    assert api_client.get(path).status_code == 200


def test_keys_are_stored_hashed_and_last_use_is_recorded(db_session):
    key = create_key(db_session, "robot")
    assert key.startswith(KEY_PREFIX) and len(key) > 40
    row = db_session.scalar(select(ApiKey).where(ApiKey.name == "robot"))
    assert key not in (row.key_hash, row.prefix) and row.last_used_at is None
    assert verify_key(db_session, key) is not None
    assert row.last_used_at is not None
    assert verify_key(db_session, key + "x") is None


def test_token_bucket_refills_over_time():
    now = [0.0]
    buckets = TokenBuckets(RateLimit(per_second=2, burst=2), clock=lambda: now[0])
    assert buckets.take("a") == 0 and buckets.take("a") == 0
    assert buckets.take("a") == pytest.approx(0.5)
    assert buckets.take("b") == 0  # buckets are per key
    now[0] = 0.5
    assert buckets.take("a") == 0


def test_too_many_requests_get_429_with_retry_after(make_api_client):
    client = make_api_client(app_kwargs={"rate_limit": RateLimit(per_second=0.01, burst=3)})
    statuses = [client.get("/v1/documents").status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    response = client.get("/v1/documents")
    assert response.json()["error"]["code"] == "rate_limited"
    assert int(response.headers["Retry-After"]) >= 1
    client.headers.pop("Authorization")
    assert client.get("/healthz").status_code == 200


# --- bayou apikey ---------------------------------------------------------------------------------------


@pytest.fixture
def cli(api_data_dir, monkeypatch):
    from bayou.settings import get_settings

    monkeypatch.setenv("BAYOU_DATA_DIR", str(api_data_dir))
    monkeypatch.setenv("BAYOU_DATABASE_URL", f"sqlite:///{api_data_dir / 'bayou.db'}")
    get_settings.cache_clear()
    app = typer.Typer()
    apikey_cli.register(app)
    yield lambda *args: CliRunner().invoke(app, list(args))
    get_settings.cache_clear()


def test_cli_create_prints_only_the_key_and_revoke_makes_it_401(cli, make_api_client):
    created = cli("apikey", "create", "--name", "scanner")
    assert created.exit_code == 0, created.output
    key = created.stdout.strip()
    assert created.stdout == key + "\n" and key.startswith(KEY_PREFIX)

    client = make_api_client()
    headers = {"Authorization": f"Bearer {key}"}
    assert client.get("/v1/documents", headers=headers).status_code == 200

    listed = [json.loads(line) for line in cli("apikey", "list").stdout.splitlines()]
    scanner = next(item for item in listed if item["name"] == "scanner")
    assert scanner["revoked_at"] is None and scanner["last_used_at"] is not None
    assert key not in cli("apikey", "list").stdout

    assert cli("apikey", "revoke", "scanner").exit_code == 0
    assert client.get("/v1/documents", headers=headers).status_code == 401


def test_cli_refuses_a_taken_name_and_an_unknown_revoke(cli):
    assert cli("apikey", "create", "--name", "twice").exit_code == 0
    again = cli("apikey", "create", "--name", "twice")
    assert again.exit_code == 2 and again.stdout == ""
    assert cli("apikey", "revoke", "nobody").exit_code == 1
