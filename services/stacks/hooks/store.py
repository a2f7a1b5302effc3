"""The only code issuing SQL for the hook tables; returns frozen records, never rows."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Select, delete, or_, select
from sqlalchemy.exc import IntegrityError

from services.common.clock import unix_microseconds
from services.common.db import Sessions
from services.common.errors import AlreadyExists, NotFound
from services.stacks.hooks.domain import MAX_DELIVERIES, Delivery, HookRecord
from services.stacks.models import HookDeliveryRow, HookRow


def hook_not_found(name: str) -> NotFound:
    return NotFound(f"Not Found: webhook '{name}' not found")


class HookStore:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    async def create(self, hook: HookRecord, now: datetime) -> HookRecord:
        try:
            async with self._sessions.begin() as session:
                session.add(_row(hook, now))
        except IntegrityError:
            raise AlreadyExists(f"Conflict: webhook '{hook.name}' already exists") from None
        return hook

    async def list_hooks(self, organization: str, stack_id: str) -> list[HookRecord]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(HookRow)
                .where(HookRow.organization == organization, HookRow.stack_id == stack_id)
                .order_by(HookRow.name)
            )
            return [_record(row) for row in rows]

    async def get(self, organization: str, stack_id: str, name: str) -> HookRecord:
        async with self._sessions() as session:
            row = await session.scalar(_named(organization, stack_id, name))
            if row is None:
                raise hook_not_found(name)
            return _record(row)

    async def get_by_id(self, hook_id: str) -> HookRecord | None:
        async with self._sessions() as session:
            row = await session.get(HookRow, hook_id)
            return None if row is None else _record(row)

    async def replace(self, hook: HookRecord) -> HookRecord:
        async with self._sessions.begin() as session:
            row = await session.get(HookRow, hook.id)
            if row is None:
                raise hook_not_found(hook.name)
            row.display_name = hook.display_name
            row.payload_url = hook.payload_url
            row.active = hook.active
            row.format = hook.format
            row.filters = list(hook.filters)
            row.groups = list(hook.groups)
            row.secret = hook.secret_ciphertext
        return hook

    async def delete(self, hook: HookRecord) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(HookDeliveryRow).where(HookDeliveryRow.hook_id == hook.id))
            await session.execute(delete(HookRow).where(HookRow.id == hook.id))

    async def delete_stack_hooks(self, stack_id: str) -> list[str]:
        """Forget a deleted stack's hooks; returns their ids."""
        async with self._sessions.begin() as session:
            ids = list(
                await session.scalars(select(HookRow.id).where(HookRow.stack_id == stack_id))
            )
            if ids:
                await session.execute(
                    delete(HookDeliveryRow).where(HookDeliveryRow.hook_id.in_(ids))
                )
                await session.execute(delete(HookRow).where(HookRow.id.in_(ids)))
            return ids

    async def for_stack(self, organization: str, stack_id: str) -> list[HookRecord]:
        """The organization's hooks and the stack's own."""
        async with self._sessions() as session:
            rows = await session.scalars(
                select(HookRow).where(
                    HookRow.organization == organization,
                    or_(HookRow.stack_id == "", HookRow.stack_id == stack_id),
                )
            )
            return [_record(row) for row in rows]

    async def add_delivery(self, delivery: Delivery) -> bool:
        """Record an attempt and keep the newest ones only; False when the hook is gone."""
        async with self._sessions.begin() as session:
            if await session.get(HookRow, delivery.hook_id) is None:
                return False
            session.add(_delivery_row(delivery))
            await session.flush()
            kept = (
                select(HookDeliveryRow.id)
                .where(HookDeliveryRow.hook_id == delivery.hook_id)
                .order_by(HookDeliveryRow.timestamp.desc(), HookDeliveryRow.id.desc())
                .limit(MAX_DELIVERIES)
            )
            await session.execute(
                delete(HookDeliveryRow).where(
                    HookDeliveryRow.hook_id == delivery.hook_id,
                    HookDeliveryRow.id.not_in(kept.scalar_subquery()),
                )
            )
            return True

    async def deliveries(self, hook_id: str) -> list[Delivery]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(HookDeliveryRow)
                .where(HookDeliveryRow.hook_id == hook_id)
                .order_by(HookDeliveryRow.timestamp.desc(), HookDeliveryRow.id.desc())
                .limit(MAX_DELIVERIES)
            )
            return [_delivery(row) for row in rows]

    async def delivery(self, hook_id: str, delivery_id: str) -> Delivery:
        async with self._sessions() as session:
            row = await session.get(HookDeliveryRow, delivery_id)
            if row is None or row.hook_id != hook_id:
                raise NotFound(f"Not Found: delivery '{delivery_id[:64]}' not found")
            return _delivery(row)


def _named(organization: str, stack_id: str, name: str) -> Select[HookRow]:
    return select(HookRow).where(
        HookRow.organization == organization, HookRow.stack_id == stack_id, HookRow.name == name
    )


def _row(hook: HookRecord, now: datetime) -> HookRow:
    return HookRow(
        id=hook.id,
        organization=hook.organization,
        stack_id=hook.stack_id,
        name=hook.name,
        display_name=hook.display_name,
        payload_url=hook.payload_url,
        active=hook.active,
        format=hook.format,
        filters=list(hook.filters),
        groups=list(hook.groups),
        secret=hook.secret_ciphertext,
        created_at=now,
    )


def _record(row: HookRow) -> HookRecord:
    return HookRecord(
        id=row.id,
        organization=row.organization,
        stack_id=row.stack_id,
        name=row.name,
        display_name=row.display_name,
        payload_url=row.payload_url,
        active=row.active,
        format=row.format,
        filters=tuple(row.filters),
        groups=tuple(row.groups),
        secret_ciphertext=row.secret,
        created_at_us=unix_microseconds(row.created_at),
    )


def _delivery_row(delivery: Delivery) -> HookDeliveryRow:
    return HookDeliveryRow(
        id=delivery.id,
        hook_id=delivery.hook_id,
        kind=delivery.kind,
        event=delivery.event,
        payload=delivery.payload,
        timestamp=delivery.timestamp,
        duration_ms=delivery.duration_ms,
        request_url=delivery.request_url,
        request_headers=delivery.request_headers,
        response_code=delivery.response_code,
        response_headers=delivery.response_headers,
        response_body=delivery.response_body,
    )


def _delivery(row: HookDeliveryRow) -> Delivery:
    return Delivery(
        id=row.id,
        hook_id=row.hook_id,
        kind=row.kind,
        event=row.event,
        payload=row.payload,
        timestamp=row.timestamp,
        duration_ms=row.duration_ms,
        request_url=row.request_url,
        request_headers=row.request_headers,
        response_code=row.response_code,
        response_headers=row.response_headers,
        response_body=row.response_body,
    )
