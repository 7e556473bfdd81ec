"""The OpenAPI description fuzzed: schemathesis generates requests for every operation the HTTP face
describes (whatever routes it has) and sends them to a live server; none may answer 5xx, and the
content types must be the ones described. Bounded per operation so CI stays fast."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import content_type_conformance, not_a_server_error

from testkit.db import new_database_url
from testkit.http import http_app

pytestmark = pytest.mark.slow

EXAMPLES = 12  # per operation


@pytest.fixture(scope="module")
def fuzzed_app(tmp_path_factory):
    url = new_database_url("sqlite", tmp_path_factory.mktemp("fuzz"), None)
    with http_app(url) as app:
        yield app


def test_no_operation_answers_a_server_error(fuzzed_app):
    schema = schemathesis.openapi.from_url(f"http://127.0.0.1:{fuzzed_app.http.port}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 10
    failures = []
    for operation in operations:
        @settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(operation.as_strategy())
        def fuzz(case):
            case.call_and_validate(checks=[not_a_server_error, content_type_conformance])

        try:
            fuzz()
        except Exception as exc:  # noqa: BLE001 - collected: every operation is tried
            failures.append(f"{operation.method.upper()} {operation.path}: {str(exc)[:500]}")
    assert not failures, "\n\n".join(failures)
