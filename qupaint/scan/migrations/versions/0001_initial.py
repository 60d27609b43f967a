"""The first schema: chip, scan, image, flake.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "chip",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(255), nullable=False, unique=True),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("oxide_nm", sa.Float, nullable=True),
        sa.Column("um_per_px", sa.Float, nullable=False),
        sa.Column("camera", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )
    op.create_table(
        "scan",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "chip_id",
            sa.Integer,
            sa.ForeignKey("chip.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("directory", sa.Text, nullable=False),
        sa.Column("user", sa.String(255), nullable=True),
        sa.Column("started", sa.DateTime, nullable=False),
        sa.Column("finished", sa.DateTime, nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("settings", sa.Text, nullable=False),
        sa.UniqueConstraint("chip_id", "directory"),
    )
    op.create_table(
        "image",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "scan_id",
            sa.Integer,
            sa.ForeignKey("scan.id", ondelete="CASCADE"),
            nullable=False,
            index=True,
        ),
        sa.Column("file", sa.Text, nullable=False),
        sa.Column("seq", sa.Integer, nullable=False),
        sa.Column("x_mm", sa.Float, nullable=False),
        sa.Column("y_mm", sa.Float, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("fit_x_mm", sa.Float, nullable=True),
        sa.Column("fit_y_mm", sa.Float, nullable=True),
        sa.Column("detections", sa.Integer, nullable=False),
        sa.Column("processed", sa.DateTime, nullable=False),
        sa.UniqueConstraint("scan_id", "file"),
    )
    op.create_table(
        "flake",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("chip_id", sa.Integer, sa.ForeignKey("chip.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("scan_id", sa.Integer, sa.ForeignKey("scan.id", ondelete="CASCADE"),
                  nullable=False, index=True),
        sa.Column("image_id", sa.Integer, sa.ForeignKey("image.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("material", sa.String(64), nullable=False),
        sa.Column("layers", sa.Integer, nullable=False, index=True),
        sa.Column("category", sa.Integer, nullable=False),
        sa.Column("probability", sa.Float, nullable=False),
        sa.Column("area_um2", sa.Float, nullable=False, index=True),
        sa.Column("aspect", sa.Float, nullable=False),
        sa.Column("max_side_um", sa.Float, nullable=False),
        sa.Column("min_side_um", sa.Float, nullable=False),
        sa.Column("contrast_r", sa.Float, nullable=False),
        sa.Column("contrast_g", sa.Float, nullable=False),
        sa.Column("contrast_b", sa.Float, nullable=False),
        sa.Column("x_mm", sa.Float, nullable=False, index=True),
        sa.Column("y_mm", sa.Float, nullable=False, index=True),
        sa.Column("x0_mm", sa.Float, nullable=False),
        sa.Column("y0_mm", sa.Float, nullable=False),
        sa.Column("x1_mm", sa.Float, nullable=False),
        sa.Column("y1_mm", sa.Float, nullable=False),
        sa.Column("mask_x", sa.Integer, nullable=False),
        sa.Column("mask_y", sa.Integer, nullable=False),
        sa.Column("mask_w", sa.Integer, nullable=False),
        sa.Column("mask_h", sa.Integer, nullable=False),
        sa.Column("mask_rle", sa.Text, nullable=False),
        sa.Column("clipped", sa.Boolean, nullable=False),
        sa.Column("views", sa.Integer, nullable=False),
        sa.Column("thumbnail", sa.LargeBinary, nullable=True),
        sa.Column("used", sa.Boolean, nullable=False),
        sa.Column("favourite", sa.Boolean, nullable=False),
        sa.Column("note", sa.Text, nullable=True),
        sa.Column("created", sa.DateTime, nullable=False),
    )  # fmt: skip


def downgrade() -> None:
    for table in ("flake", "image", "scan", "chip"):
        op.drop_table(table)
