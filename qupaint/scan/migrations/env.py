"""Alembic environment of the flake database: migrations run on the connection that
:func:`qupaint.scan.db.upgrade` passes in (no alembic.ini needed)."""

from alembic import context

from qupaint.scan.db import Base


def run() -> None:
    connection = context.config.attributes.get("connection")
    if connection is None:  # `alembic` on the command line: sqlalchemy.url from its config
        from sqlalchemy import create_engine

        url = context.config.get_main_option("sqlalchemy.url")
        connection = create_engine(url).connect()
    context.configure(connection=connection, target_metadata=Base.metadata,
                      render_as_batch=True)  # fmt: skip
    with context.begin_transaction():
        context.run_migrations()


if hasattr(context, "config"):  # Alembic runs this file; plain imports (tests) do not
    run()
