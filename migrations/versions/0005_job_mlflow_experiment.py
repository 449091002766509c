"""``jobs.mlflow_experiment_id``: the MLflow experiment of the job's run, so that the job's
link opens the run in the UI's model-training view (a run link without its experiment loses
the view on the UI's redirect).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("jobs", sa.Column("mlflow_experiment_id", sa.String(64), nullable=True))


def downgrade() -> None:
    op.drop_column("jobs", "mlflow_experiment_id")
