"""The HTTP face reads no body larger than `max_dataset_bytes`: a declared length over it is refused
413 before it is read, a chunked body once it passes the limit; nothing is stored, and the next request
is served."""

from __future__ import annotations

import json

import pytest

from testkit.http import client, http_app

pytestmark = pytest.mark.slow
LIMIT = 50_000


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url, max_dataset_bytes=LIMIT) as app:
        yield app


def big_ian() -> bytes:
    items = [{"00081150": {"vr": "UI", "Value": ["1.2.840.10008.5.1.4.1.1.2"]},
              "00081155": {"vr": "UI", "Value": [f"1.2.3.{i}"]}, "00080056": {"vr": "CS", "Value": ["ONLINE"]},
              "00080054": {"vr": "AE", "Value": ["PACS"]}} for i in range(2_000)]
    return json.dumps({"0020000D": {"vr": "UI", "Value": ["1.2.3.9"]},
                       "00081115": {"vr": "SQ", "Value": [{"0020000E": {"vr": "UI", "Value": ["1.2.3.8"]},
                                                           "00081199": {"vr": "SQ", "Value": items}}]}}).encode()


def test_a_declared_body_over_the_limit_is_refused_before_it_is_read(app):
    body = big_ian()
    assert len(body) > LIMIT
    with client(app) as http:
        answer = http.post("/api/ian", content=body, headers={"Content-Type": "application/dicom+json"})
        assert answer.status_code == 413 and "max_dataset_bytes" in answer.headers["warning"]
        assert http.get("/api/studies/1.2.3.9").status_code == 404  # nothing stored
        assert http.get("/api/health").status_code == 200


def test_a_chunked_body_is_refused_once_it_passes_the_limit(app):
    body = big_ian()

    def chunks():
        for at in range(0, len(body), 8192):
            yield body[at:at + 8192]

    with client(app) as http:
        answer = http.post("/api/ian", content=chunks(), headers={"Content-Type": "application/dicom+json"})
        assert answer.status_code == 413
        assert http.get("/api/studies/1.2.3.9").status_code == 404
