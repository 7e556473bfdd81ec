"""Scheduled reconciliation: APScheduler's job store, one claim per firing, and a heartbeat on runs

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-24
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    # APScheduler 3's SQLAlchemyJobStore table as that job store defines it (it then finds it present).
    op.create_table('wfm_apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('wfm_apscheduler_jobs', schema=None) as batch_op:
        batch_op.create_index('ix_wfm_apscheduler_jobs_next_run_time', ['next_run_time'], unique=False)

    op.create_table('reconciliation_claim',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('archive_ae_title', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scheduled_fire_time', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('claimed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('claimed_by', sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
    sa.Column('run_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('archive_ae_title', 'scheduled_fire_time', name='uq_reconciliation_claim_firing')
    )

    # NULL for runs recorded before this revision: recovery then goes by started_at.
    with op.batch_alter_table('reconciliation_run', schema=None) as batch_op:
        batch_op.add_column(sa.Column('heartbeat_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('reconciliation_run', schema=None) as batch_op:
        batch_op.drop_column('heartbeat_at')
    op.drop_table('reconciliation_claim')
    with op.batch_alter_table('wfm_apscheduler_jobs', schema=None) as batch_op:
        batch_op.drop_index('ix_wfm_apscheduler_jobs_next_run_time')
    op.drop_table('wfm_apscheduler_jobs')
