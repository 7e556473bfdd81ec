"""Patient's Name is matched case-insensitively, as lower(patient_name): index that expression, not the
column (an index the matching could never use). On PostgreSQL with text_pattern_ops, so that a wild card
with a literal prefix ("SMITH^J*") is an index range scan too; SQLite gets that range from the query.

Revision ID: 0017
Revises: 0016
Create Date: 2026-12-06
"""
import sqlalchemy as sa
from alembic import op


revision = '0017'
down_revision = '0016'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.drop_index('ix_workitem_patient_name', table_name='workitem')
    op.create_index('ix_workitem_patient_name_folded', 'workitem',
                    [sa.text("lower(patient_name) text_pattern_ops"
                             if op.get_bind().dialect.name == 'postgresql' else "lower(patient_name)")])


def downgrade() -> None:
    op.drop_index('ix_workitem_patient_name_folded', table_name='workitem')
    op.create_index('ix_workitem_patient_name', 'workitem', ['patient_name'])
