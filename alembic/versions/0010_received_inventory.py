"""Inventory instances received by the Storage SCP (C-MOVE retrieval)

Revision ID: 0010
Revises: 0009
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('received_inventory',
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('calling_ae_title', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('transfer_syntax_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('received_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('dataset', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sop_instance_uid')
    )
    with op.batch_alter_table('received_inventory', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_received_inventory_received_at'), ['received_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('received_inventory', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_received_inventory_received_at'))
    op.drop_table('received_inventory')
