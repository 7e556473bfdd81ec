"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL database) and a real server
listening on 127.0.0.1, one per test module."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings as hypothesis_settings

from workflow.app import App
from testkit.db import POSTGRES_URL, REQUIRE_POSTGRES, drop_database, new_database_url, postgres_unavailable, test_settings

# CI explores the same examples every run (a red CI must be reproducible); locally they vary.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    reason = postgres_unavailable()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (WFM_REQUIRE_POSTGRES=1 makes PostgreSQL tests mandatory)")
        pytest.skip(f"{reason}; set WFM_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return POSTGRES_URL


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path_factory):
    admin_url = request.getfixturevalue("postgres_admin_url") if request.param == "postgresql" else None
    url = new_database_url(request.param, tmp_path_factory.mktemp("db"), admin_url)
    yield url
    drop_database(url, admin_url)


@pytest.fixture(scope="module")
def engine(database_url):
    """The module's database, migrated, without a server (modules that need rows of their own
    override it)."""
    from workflow.store import migrate
    from workflow.store.engine import make_engine

    engine = make_engine(database_url)
    migrate.upgrade(engine)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
def server(database_url):
    app = App(test_settings(database_url))
    app.start()
    yield app
    app.stop()


@pytest.fixture(scope="module")
def make_archive():
    """Start reference archives (`make_archive(ae_title=..., record_limit=..., ...)`), stopped when the
    module's tests are done."""
    from refarchive import ReferenceArchive

    started = []

    def make(ae_title: str = "REFARCH", **options):
        archive = ReferenceArchive(ae_title=ae_title, **options).__enter__()
        started.append(archive)
        return archive

    yield make
    for archive in reversed(started):
        archive.__exit__(None, None, None)


@pytest.fixture(scope="module")
def archive(request, make_archive):
    """The module's reference archive, with the options its ARCHIVE dict names (AE title REFARCH)."""
    return make_archive(**getattr(request.module, "ARCHIVE", {}))


@pytest.fixture
def archive_faults_reset(archive):
    """The module's reference archive (its own `archive` fixture) with no fault armed, before and after
    each test: `pytestmark = pytest.mark.usefixtures("archive_faults_reset")`."""
    archive.faults.reset()
    yield
    archive.faults.reset()


@pytest.fixture(scope="module")
def syslog_receiver():
    """An audit repository of the tests' own (RFC 5425 framing over TCP on 127.0.0.1)."""
    from testkit.audit import SyslogReceiver

    receiver = SyslogReceiver().start()
    yield receiver
    receiver.stop()
