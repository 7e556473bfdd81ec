"""Incremental readiness: a pass reads only what the IANs since the study's last pass changed (the
pending mark's earliest IAN time, whether a non-IAN mark came, the last pass per study and the last
input write per workitem, and the indexes
that find an IAN's instances and locations)

Revision ID: 0015
Revises: 0014
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0015'
down_revision = '0014'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('readiness_pending', schema=None) as batch_op:
        batch_op.add_column(sa.Column('ians_since', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))
        batch_op.add_column(sa.Column('full_read', sa.Boolean(), server_default=sa.true(), nullable=False))
    op.create_table('readiness_study',
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('pass_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.PrimaryKeyConstraint('study_instance_uid')
    )
    op.create_table('readiness_inputs',
    sa.Column('workitem_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('write_id', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.ForeignKeyConstraint(['workitem_uid'], ['workitem.sop_instance_uid'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('workitem_uid')
    )
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_last_notification_id'), ['last_notification_id'], unique=False)
    with op.batch_alter_table('instance_location', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_instance_location_notification_id'), ['notification_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('instance_location', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_location_notification_id'))
    with op.batch_alter_table('instance', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_instance_last_notification_id'))
    op.drop_table('readiness_inputs')
    op.drop_table('readiness_study')
    with op.batch_alter_table('readiness_pending', schema=None) as batch_op:
        batch_op.drop_column('full_read')
        batch_op.drop_column('ians_since')
