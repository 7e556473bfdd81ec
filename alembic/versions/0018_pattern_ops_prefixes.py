"""Procedure Step Label and Patient ID are matched with wild cards, case-sensitively ("CT*"): on
PostgreSQL their indexes get text_pattern_ops, the only way PostgreSQL uses an index for a LIKE prefix
under a collation other than C or POSIX (C.UTF-8 included). The operator class still serves `=`. SQLite
keeps its indexes: it uses them for GLOB on the bare column.

Revision ID: 0018
Revises: 0017
Create Date: 2026-12-07
"""
from alembic import op


revision = '0018'
down_revision = '0017'
branch_labels = None
depends_on = None

COLUMNS = ('procedure_step_label', 'patient_id')


def upgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for column in COLUMNS:
        op.drop_index(f'ix_workitem_{column}', table_name='workitem')
        op.create_index(f'ix_workitem_{column}', 'workitem', [column],
                        postgresql_ops={column: 'text_pattern_ops'})


def downgrade() -> None:
    if op.get_bind().dialect.name != 'postgresql':
        return
    for column in COLUMNS:
        op.drop_index(f'ix_workitem_{column}', table_name='workitem')
        op.create_index(f'ix_workitem_{column}', 'workitem', [column])
