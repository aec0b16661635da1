"""Health, readiness, metrics and the OpenAPI document."""

from __future__ import annotations

from sqlalchemy import create_engine

from api.app import create_app
from bayou.settings import Settings


def test_healthz_and_readyz(api_client):
    assert api_client.get("/healthz").json() == {"status": "ok", "checks": {}}
    assert api_client.get("/readyz").json() == {"status": "ok", "checks": {"database": "ok"}}


def test_readyz_is_503_when_the_database_is_gone(api_client):
    # an engine whose database cannot be opened stands in for a database server that went away
    api_client.app.state.bayou.engine = create_engine("sqlite:////nonexistent-dir/x/bayou.db")
    response = api_client.get("/readyz")
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "database_unavailable"


def test_readyz_is_503_when_the_broker_does_not_answer(make_api_client):
    client = make_api_client(broker_url="redis://127.0.0.1:1/0")
    response = client.get("/readyz")
    assert response.status_code == 503 and response.json()["error"]["code"] == "broker_unavailable"


def test_metrics_count_requests_by_route_template(api_client, make_png):
    api_client.get("/v1/documents/doc_abc")
    api_client.post(
        "/v1/documents", files={"file": ("a.png", b"", "image/png")}, data={"doc_type": "receipt"}
    )
    text = api_client.get("/metrics").text
    assert 'route="/v1/documents/{document_id}"' in text and "doc_abc" not in text
    assert 'bayou_uploads_total{outcome="empty_file"} 1.0' in text


def test_openapi_documents_every_route_with_error_responses(tmp_path):
    app = create_app(Settings(_env_file=None, data_dir=tmp_path), enqueue=lambda *a, **k: None)
    spec = app.openapi()
    paths = spec["paths"]
    assert set(paths) >= {
        "/v1/documents",
        "/v1/documents/{document_id}",
        "/v1/documents/{document_id}/pages/{number}",
        "/v1/documents/{document_id}/review",
        "/v1/batches",
        "/v1/batches/{batch_id}",
        "/healthz",
        "/readyz",
        "/metrics",
    }
    for path, operations in paths.items():
        if not path.startswith("/v1"):
            continue
        for operation in operations.values():
            assert "401" in operation["responses"], (path, operation["summary"])
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    schema = response["content"]["application/json"]["schema"]
                    assert schema == {"$ref": "#/components/schemas/ErrorResponse"}, (path, status)
    upload = paths["/v1/documents"]["post"]["responses"]
    assert {"200", "202", "413", "415", "422"} <= set(upload)
    assert "example" in spec["components"]["schemas"]["DocumentOut"]
    assert "bearer" in str(spec["components"]["securitySchemes"]).lower()
