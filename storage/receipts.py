"""Action receipts: exactly-once effects for actions whose effect lives in this database."""

from __future__ import annotations

from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from storage.models import ActionReceipt


async def get_receipt(*, session: AsyncSession, key: str) -> dict[str, Any] | None:
    receipt = await session.get(ActionReceipt, key)
    return None if receipt is None else receipt.result


async def put_receipt(*, session: AsyncSession, key: str, result: dict[str, Any]) -> None:
    """Record the result; call inside the transaction that makes the effect."""
    session.add(ActionReceipt(key=key, result=result))
