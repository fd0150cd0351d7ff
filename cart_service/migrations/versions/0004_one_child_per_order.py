"""An event may take one child per order (P'tit Victor: "un seul enfant par commande").

Revision 0004, after 0003. Existing events are not.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("registration_events", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "one_child_per_order", sa.Boolean(), server_default=sa.false(), nullable=False
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("registration_events", schema=None) as batch_op:
        batch_op.drop_column("one_child_per_order")
