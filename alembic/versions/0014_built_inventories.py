"""Inventories wfm builds for archives that cannot (wfm inventory build): the resumable crawl and the
Inventory SOP instances it produced

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""
from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0014'
down_revision = '0013'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('inventory_crawl',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('archive_ae_title', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('scope_key', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('started_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('listed_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('finished_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('root_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('comment', sa.Text(), server_default='', nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('inventory_crawl', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inventory_crawl_archive_ae_title'), ['archive_ae_title'], unique=False)
        batch_op.create_index(batch_op.f('ix_inventory_crawl_status'), ['status'], unique=False)

    op.create_table('inventory_node',
    sa.Column('sop_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('root_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('archive_ae_title', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('content_date', sqlmodel.sql.sqltypes.AutoString(length=8), nullable=False),
    sa.Column('content_time', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('purpose', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('description', sa.Text(), server_default='', nullable=False),
    sa.Column('level', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('completion', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('records', sa.Integer(), nullable=False),
    sa.Column('total_records', sa.Integer(), nullable=False),
    sa.Column('scope_json', sa.Text(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sop_instance_uid')
    )
    with op.batch_alter_table('inventory_node', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inventory_node_archive_ae_title'), ['archive_ae_title'], unique=False)
        batch_op.create_index(batch_op.f('ix_inventory_node_content_date'), ['content_date'], unique=False)
        batch_op.create_index(batch_op.f('ix_inventory_node_root_uid'), ['root_uid'], unique=False)

    op.create_table('inventory_crawl_study',
    sa.Column('crawl_id', sa.Integer(), nullable=False),
    sa.Column('study_instance_uid', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('state', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('study_json', sa.Text(), nullable=False),
    sa.Column('record_json', sa.Text(), nullable=True),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.ForeignKeyConstraint(['crawl_id'], ['inventory_crawl.id'], ),
    sa.PrimaryKeyConstraint('crawl_id', 'study_instance_uid')
    )
    with op.batch_alter_table('inventory_crawl_study', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_inventory_crawl_study_state'), ['state'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('inventory_crawl_study', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inventory_crawl_study_state'))

    op.drop_table('inventory_crawl_study')
    with op.batch_alter_table('inventory_node', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inventory_node_root_uid'))
        batch_op.drop_index(batch_op.f('ix_inventory_node_content_date'))
        batch_op.drop_index(batch_op.f('ix_inventory_node_archive_ae_title'))

    op.drop_table('inventory_node')
    with op.batch_alter_table('inventory_crawl', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_inventory_crawl_status'))
        batch_op.drop_index(batch_op.f('ix_inventory_crawl_archive_ae_title'))

    op.drop_table('inventory_crawl')
