"""The HTTP face's tests: a module's server (`app`, both faces on the module's database) and its UPS-RS
client (`rs`). A module that needs other settings defines its own `app`; `rs` then uses that one."""

from __future__ import annotations

import pytest

from testkit.http import http_app
from testkit.upsrs import UpsRs


@pytest.fixture(scope="module")
def app(database_url):
    with http_app(database_url) as app:
        yield app


@pytest.fixture(scope="module")
def rs(app):
    with UpsRs(app) as rs:
        yield rs
