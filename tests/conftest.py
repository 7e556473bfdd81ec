"""Shared fixtures: a real database per backend (SQLite file, PostgreSQL database) and a real server
listening on 127.0.0.1, one per test module."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url

from workflow.app import App
from workflow.config import Settings

# CI explores the same examples every run (a red CI must be reproducible); locally they vary.
hypothesis_settings.register_profile("ci", derandomize=True, deadline=None)
if os.environ.get("CI"):
    hypothesis_settings.load_profile("ci")

POSTGRES_URL = os.environ.get("WFM_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
REQUIRE_POSTGRES = os.environ.get("WFM_REQUIRE_POSTGRES") == "1"


def _postgres_unavailable() -> str | None:
    try:
        engine = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        engine.dispose()
        return None
    except Exception as exc:  # noqa: BLE001 - any failure means "not reachable"
        return f"PostgreSQL not reachable at {make_url(POSTGRES_URL).render_as_string()}: {exc.__class__.__name__}"


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    reason = _postgres_unavailable()
    if reason:
        if REQUIRE_POSTGRES:
            pytest.fail(f"{reason} (WFM_REQUIRE_POSTGRES=1 makes PostgreSQL tests mandatory)")
        pytest.skip(f"{reason}; set WFM_TEST_POSTGRES_URL to run the PostgreSQL tests")
    return POSTGRES_URL


def new_database_url(backend: str, tmp_path: Path, admin_url: str | None) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / f'wfm-{uuid.uuid4().hex[:8]}.db'}"
    name = f"wfm_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


def drop_database(url: str, admin_url: str | None) -> None:
    if not url.startswith("postgresql"):
        return
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request, tmp_path_factory):
    admin_url = request.getfixturevalue("postgres_admin_url") if request.param == "postgresql" else None
    url = new_database_url(request.param, tmp_path_factory.mktemp("db"), admin_url)
    yield url
    drop_database(url, admin_url)


def test_settings(database_url: str, **overrides) -> Settings:
    values = dict(database_url=database_url, host="127.0.0.1", port=0, shutdown_grace=5.0,
                  network_timeout=10.0, readiness_delay=0.02)
    values.update(overrides)
    return Settings(**values)


test_settings.__test__ = False  # a helper, not a test


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


@pytest.fixture
def archive_faults_reset(archive):
    """The module's reference archive (its own `archive` fixture) with no fault armed, before and after
    each test: `pytestmark = pytest.mark.usefixtures("archive_faults_reset")`."""
    archive.faults.reset()
    yield
    archive.faults.reset()
