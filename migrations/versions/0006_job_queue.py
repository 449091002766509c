"""``jobs.queue``: the Celery queue a job's messages go to. A worker taking a message starts
the job whose turn it is among that queue's jobs (``jobs.fair_queue``), never one meant
for other workers.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("queue", sa.String(200), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "queue")
