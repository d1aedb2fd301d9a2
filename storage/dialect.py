"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import bindparam
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import SQLModel
from sqlmodel.ext.asyncio.session import AsyncSession


def dialect_of(session: AsyncSession) -> str:
    """Where the session's statements go: "sqlite" or "postgresql"."""
    return session.bind.dialect.name if session.bind else "sqlite"


async def insert_ignore(
    session: AsyncSession, model: type[SQLModel], values: dict[str, Any], *, returning: Any = None
) -> Any | None:
    """INSERT ... ON CONFLICT DO NOTHING. Returns the `returning` column (or True), None on conflict."""
    stmt = _insert_ignore(dialect_of(session), model, tuple(values), returning)
    if returning is not None:
        row = (await session.exec(stmt, params=values)).first()
        return None if row is None else row[0]
    result = await session.exec(stmt, params=values)
    return True if result.rowcount > 0 else None


@functools.cache
def _insert_ignore(dialect: str, model: type[SQLModel], names: tuple[str, ...], returning: Any) -> Any:
    """The statement of `insert_ignore` for these columns: built once (bound parameters)."""
    table = model.__table__  # type: ignore[attr-defined]
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    # preserve_rowcount: without it SQLAlchemy reports -1 for this INSERT on PostgreSQL.
    stmt = (
        ins.values({n: bindparam(n) for n in names})
        .on_conflict_do_nothing()
        .execution_options(preserve_rowcount=True)
    )
    return stmt if returning is None else stmt.returning(returning)
