"""Readiness evaluated once per burst: studies marked pending by IAN and MPPS transactions

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('readiness_pending',
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('generation', sa.Integer(), nullable=False),
    sa.Column('marked_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('study_instance_uid')
    )
    with op.batch_alter_table('readiness_pending', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_readiness_pending_marked_at'), ['marked_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('readiness_pending', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_readiness_pending_marked_at'))
    op.drop_table('readiness_pending')
