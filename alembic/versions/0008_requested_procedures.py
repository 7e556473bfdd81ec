"""Requested procedures tracked from UPS, MPPS and IAN

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-23
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('requested_procedure',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('accession_number', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('requested_procedure_id', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('sources', sqlmodel.sql.sqltypes.AutoString(length=32), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('study_instance_uid', 'accession_number', 'requested_procedure_id',
                        name='uq_requested_procedure_key')
    )
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_requested_procedure_study_instance_uid'), ['study_instance_uid'],
                              unique=False)


def downgrade() -> None:
    with op.batch_alter_table('requested_procedure', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_requested_procedure_study_instance_uid'))
    op.drop_table('requested_procedure')
