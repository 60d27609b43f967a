"""``python -m qupaint.cli``."""

from qupaint.cli import app

app()
