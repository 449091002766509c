"""``jobs.preemptions``: how many of a job's attempts ended in a preemption (a SIGTERM to
its worker or run: checkpointed and requeued). They do not count against
``LEAP_MAX_ATTEMPTS``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-06
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "jobs", sa.Column("preemptions", sa.Integer(), nullable=False, server_default="0")
    )


def downgrade() -> None:
    op.drop_column("jobs", "preemptions")
