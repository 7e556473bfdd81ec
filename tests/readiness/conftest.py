"""The readiness tests' shared fixture."""

from __future__ import annotations

import pytest

from testkit.db import test_settings
from workflow.app import App
from workflow.store import migrate


@pytest.fixture(scope="module")
def services(database_url):
    """The App's services on the module's database, migrated, without a server: the tests call the
    services and drive the readiness passes themselves."""
    app = App(test_settings(database_url))
    migrate.upgrade(app.engine)
    yield app
    app.engine.dispose()
