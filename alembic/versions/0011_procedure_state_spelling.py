"""Requested procedure state IN_PROGRESS spelled IN PROGRESS, as DICOM spells the MPPS and UPS states

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-05
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute("UPDATE requested_procedure SET state = 'IN PROGRESS' WHERE state = 'IN_PROGRESS'")


def downgrade() -> None:
    op.execute("UPDATE requested_procedure SET state = 'IN_PROGRESS' WHERE state = 'IN PROGRESS'")
