"""Every feature's tables, registered on SQLModel.metadata: what Alembic compares migrations with."""

from sqlmodel import SQLModel

import workflow.access.tables  # noqa: F401
import workflow.audit.tables  # noqa: F401
import workflow.ian.tables  # noqa: F401
import workflow.inventory.tables  # noqa: F401
import workflow.mpps.tables  # noqa: F401
import workflow.readiness.tables  # noqa: F401
import workflow.reconcile.inventory_tables  # noqa: F401
import workflow.reconcile.schedule_tables  # noqa: F401
import workflow.reconcile.tables  # noqa: F401
import workflow.ups.tables  # noqa: F401

metadata = SQLModel.metadata
