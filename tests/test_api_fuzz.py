"""Property-based requests generated from the OpenAPI document (schemathesis): whatever arrives, the
API answers without a server error, with a documented status, and in the documented shape."""

from __future__ import annotations

import os

import pytest

schemathesis = pytest.importorskip("schemathesis")
from hypothesis import HealthCheck, settings  # noqa: E402

schema = schemathesis.pytest.from_fixture("api_schema")
# the same examples every run, so that CI is repeatable; BAYOU_FUZZ_EXAMPLES=N explores N fresh ones
EXPLORE = int(os.environ.get("BAYOU_FUZZ_EXAMPLES", "0"))


@pytest.fixture
def api_schema(api_client):
    loaded = schemathesis.openapi.from_asgi("/openapi.json", api_client.app)
    loaded.app_client = api_client
    return loaded


@schema.parametrize()
@settings(
    max_examples=EXPLORE or 25,
    derandomize=not EXPLORE,
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
def test_generated_requests_get_documented_answers(case, api_client):
    # left out: a schema-valid upload may still be refused for its bytes (415, 422), which no schema can
    # describe; and unknown query parameters are ignored, as HTTP APIs usually do, not refused
    case.call_and_validate(
        headers={"Authorization": f"Bearer {api_client.key}"},
        excluded_checks=[
            schemathesis.checks.positive_data_acceptance,
            schemathesis.checks.negative_data_rejection,
        ],
    )
