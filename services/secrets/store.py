"""The only code that reads or writes the secrets service's tables."""

from __future__ import annotations

from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import aware
from services.secrets.domain import DecryptionEvent, NewDecryptionEvent, StackKey
from services.secrets.models import DecryptionEventRow, StackKeyRow


async def get_stack_key(session: AsyncSession, stack_id: str) -> StackKey | None:
    row = await session.get(StackKeyRow, stack_id)
    return None if row is None else _stack_key(row)


async def insert_stack_key(session: AsyncSession, key: StackKey) -> StackKey:
    """Store a new key, or return the one a concurrent writer stored first."""
    try:
        # A savepoint keeps the caller's transaction usable if another writer won the race.
        async with session.begin_nested():
            session.add(
                StackKeyRow(
                    stack_id=key.stack_id,
                    wrapped_key=key.wrapped_key,
                    master_key_id=key.master_key_id,
                    created_at=key.created_at,
                )
            )
    except IntegrityError:
        winner = await get_stack_key(session, key.stack_id)
        if winner is None:
            raise
        return winner
    return key


async def delete_stack_key(session: AsyncSession, stack_id: str) -> None:
    await session.execute(delete(StackKeyRow).where(StackKeyRow.stack_id == stack_id))


async def add_decryption_event(session: AsyncSession, event: NewDecryptionEvent) -> None:
    session.add(
        DecryptionEventRow(
            stack_id=event.stack_id,
            kind=event.kind,
            user_login=event.user_login,
            secret_name=event.secret_name,
            command_name=event.command_name,
            value_count=event.value_count,
            created_at=event.created_at,
        )
    )
    await session.flush()


async def list_decryption_events(session: AsyncSession, stack_id: str) -> list[DecryptionEvent]:
    """A stack's decryption events, oldest first."""
    rows = await session.scalars(
        select(DecryptionEventRow)
        .where(DecryptionEventRow.stack_id == stack_id)
        .order_by(DecryptionEventRow.created_at, DecryptionEventRow.id)
    )
    return [
        DecryptionEvent(
            id=row.id,
            stack_id=row.stack_id,
            kind=row.kind,
            user_login=row.user_login,
            secret_name=row.secret_name,
            command_name=row.command_name,
            value_count=row.value_count,
            created_at=aware(row.created_at),
        )
        for row in rows
    ]


def _stack_key(row: StackKeyRow) -> StackKey:
    return StackKey(
        stack_id=row.stack_id,
        wrapped_key=bytes(row.wrapped_key),
        master_key_id=row.master_key_id,
        created_at=aware(row.created_at),
    )
