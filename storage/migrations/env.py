"""Alembic's environment: migrations run on the connection `storage.schema` hands over.

`chatops migrate` (storage.schema.upgrade) opens the connection, in a write transaction,
and puts it in `config.attributes["connection"]`. Developers making a new revision use
the `alembic` command from the repository root (alembic.ini), which connects to
DATABASE_URL (default: the SQLite file chatops.db) itself.
"""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine
from sqlmodel import SQLModel

from storage import models  # noqa: F401  (registers the tables: autogenerate compares them)


def _configure(connection: object) -> None:
    dialect = connection.dialect.name  # type: ignore[attr-defined]
    context.configure(
        connection=connection,  # type: ignore[arg-type]
        target_metadata=SQLModel.metadata,
        # SQLite alters a table by copying it into a new one (batch mode).
        render_as_batch=dialect == "sqlite",
        compare_type=True,
    )


connection = context.config.attributes.get("connection")
if connection is not None:
    _configure(connection)
    with context.begin_transaction():
        context.run_migrations()
else:
    from storage.engine import sync_url

    url = os.environ.get("DATABASE_URL", "sqlite:///chatops.db")
    engine = create_engine(sync_url(url))
    with engine.begin() as conn:
        _configure(conn)
        with context.begin_transaction():
            context.run_migrations()
