"""Accounts the team validated (only they can book), members added online pending the
office's validation.

Revision 0002, after 0001. Existing accounts stay validated; existing members are the
office's own (not pending).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("validated", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("pending_validation", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("members", schema=None) as batch_op:
        batch_op.drop_column("pending_validation")
    with op.batch_alter_table("families", schema=None) as batch_op:
        batch_op.drop_column("validated")
