"""The few statements whose SQL differs between SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

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
    table = model.__table__  # type: ignore[attr-defined]
    dialect = dialect_of(session)
    ins = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(table)
    # preserve_rowcount: without it SQLAlchemy reports -1 for this INSERT on PostgreSQL.
    stmt = ins.values(**values).on_conflict_do_nothing().execution_options(preserve_rowcount=True)
    if returning is not None:
        row = (await session.exec(stmt.returning(returning))).first()
        return None if row is None else row[0]
    result = await session.exec(stmt)
    return True if result.rowcount > 0 else None
