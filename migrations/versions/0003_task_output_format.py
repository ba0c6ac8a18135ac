"""task output format, decided when the job is planned; bytes a task read from the store;
when a job's intermediates were deleted

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Jobs under way were planned without output keys, which workers now need: they fail, to be
    # submitted again, rather than crash in every worker that picks one of their tasks up.
    op.execute(
        "UPDATE tasks SET state = 'cancelled' WHERE state IN ('waiting', 'ready', 'running') "
        "AND job_id IN (SELECT id FROM jobs WHERE state IN ('queued', 'running'))"
    )
    op.execute(
        "UPDATE jobs SET state = 'failed', error = 'frameq was upgraded while this job ran: submit it again' "
        "WHERE state IN ('queued', 'running')"
    )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("collected_at", sa.DateTime(), nullable=True))
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.add_column(sa.Column("output_format", sa.String(length=32), nullable=True))
        batch_op.add_column(sa.Column("read_bytes", sa.BigInteger(), nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("collected_at")
    with op.batch_alter_table("tasks", schema=None) as batch_op:
        batch_op.drop_column("read_bytes")
        batch_op.drop_column("output_format")
