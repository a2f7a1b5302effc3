"""Webhook use cases: the registry (per organization and per stack), ping and redelivery,
and delivering one event to the hooks that want it.

Events reach `dispatch` from the stacks process's outbox dispatcher (services.common.
hook_events), never from the change that caused them: the change only writes an outbox row.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Protocol

from services.common.clock import Clock
from services.common.errors import InvalidArgument, NotFound
from services.common.logging import get_logger
from services.stacks.domain import StackPath, StackRecord
from services.stacks.hooks import formats
from services.stacks.hooks.delivery import Sender
from services.stacks.hooks.domain import (
    PING,
    Delivery,
    HookEvent,
    HookRecord,
    HookScope,
    HookSpec,
    StackNames,
    kind_of,
    matches,
    validate_name,
    validate_spec,
)
from services.stacks.hooks.store import HookStore

log = get_logger("cairn.hooks")

# Deliveries under way at once; more wait for a place.
MAX_CONCURRENT_DELIVERIES = 32


class SecretBox(Protocol):
    """Encrypts hook secrets under a key of their own (the secrets service's crypto)."""

    async def encrypt(self, hook_id: str, plaintext: bytes) -> bytes: ...
    async def decrypt(self, hook_id: str, ciphertext: bytes) -> bytes: ...
    async def forget(self, hook_id: str) -> None: ...


StackById = Callable[[str], Awaitable[StackRecord]]
StackByPath = Callable[[StackPath], Awaitable[StackRecord]]


def names_of(stack: StackRecord) -> StackNames:
    return StackNames(stack.path.organization, stack.path.project, stack.path.stack)


class Hooks:
    def __init__(
        self,
        store: HookStore,
        box: SecretBox,
        *,
        stack_by_id: StackById,
        stack_by_path: StackByPath,
        sender_factory: Callable[[HookStore, SecretBox], Sender],
        clock: Clock,
        public_url: str,
    ) -> None:
        self._store = store
        self._box = box
        self._stack_by_id = stack_by_id
        self._stack_by_path = stack_by_path
        self._sender = sender_factory(store, box)
        self._clock = clock
        self._public_url = public_url.rstrip("/")
        self._places = asyncio.Semaphore(MAX_CONCURRENT_DELIVERIES)

    # -- registry ----------------------------------------------------------------------------

    async def _stack_id(self, scope: HookScope) -> str:
        if not scope.organization:
            raise InvalidArgument("Bad Request: an organization is required")
        if not scope.is_stack:
            return ""
        stack = await self._stack_by_path(StackPath(scope.organization, scope.project, scope.stack))
        return stack.id

    async def create(self, scope: HookScope, spec: HookSpec) -> HookRecord:
        spec = validate_spec(replace(spec, name=spec.name or uuid.uuid4().hex[:8]))
        stack_id = await self._stack_id(scope)
        hook_id = uuid.uuid4().hex
        ciphertext = await self._seal(hook_id, spec.secret)
        hook = HookRecord(
            id=hook_id,
            organization=scope.organization,
            stack_id=stack_id,
            name=spec.name,
            display_name=spec.display_name,
            payload_url=spec.payload_url,
            active=spec.active,
            format=spec.format,
            filters=spec.filters,
            groups=spec.groups,
            secret_ciphertext=ciphertext,
        )
        return await self._store.create(hook, datetime.fromtimestamp(self._clock.now(), UTC))

    async def list_hooks(self, scope: HookScope) -> list[HookRecord]:
        return await self._store.list_hooks(scope.organization, await self._stack_id(scope))

    async def get(self, scope: HookScope, name: str) -> HookRecord:
        stack_id = await self._stack_id(scope)
        return await self._store.get(scope.organization, stack_id, validate_name(name))

    async def update(self, scope: HookScope, name: str, spec: HookSpec) -> HookRecord:
        current = await self.get(scope, name)
        if spec.name and spec.name != current.name:
            raise InvalidArgument("Bad Request: a webhook's name cannot be changed")
        spec = validate_spec(replace(spec, name=current.name))
        ciphertext = current.secret_ciphertext
        if spec.secret is not None:
            ciphertext = await self._seal(current.id, spec.secret)
        changed = replace(
            current,
            display_name=spec.display_name,
            payload_url=spec.payload_url,
            active=spec.active,
            format=spec.format,
            filters=spec.filters,
            groups=spec.groups,
            secret_ciphertext=ciphertext,
        )
        return await self._store.replace(changed)

    async def delete(self, scope: HookScope, name: str) -> None:
        hook = await self.get(scope, name)
        await self._store.delete(hook)
        await self._forget_keys([hook.id])

    async def deliveries(self, scope: HookScope, name: str) -> list[Delivery]:
        hook = await self.get(scope, name)
        return await self._store.deliveries(hook.id)

    async def ping(self, scope: HookScope, name: str) -> Delivery:
        hook = await self.get(scope, name)
        event = HookEvent(
            stack_id=hook.stack_id, event=PING, user_login="", timestamp=int(self._clock.now())
        )
        body = formats.render(hook.format, event, self._public_url)
        return await self._sender.attempt(hook, PING, PING, body)

    async def redeliver(self, scope: HookScope, name: str, delivery_id: str) -> Delivery:
        hook = await self.get(scope, name)
        recorded = await self._store.delivery(hook.id, delivery_id)
        return await self._sender.attempt(
            hook, recorded.kind, recorded.event, recorded.payload.encode()
        )

    async def purge_stack(self, stack_id: str) -> None:
        """Forget a purged stack's own hooks, their deliveries and their keys."""
        await self._forget_keys(await self._store.delete_stack_hooks(stack_id))

    async def _seal(self, hook_id: str, secret: str | None) -> bytes | None:
        if not secret:
            return None
        return await self._box.encrypt(hook_id, secret.encode())

    async def _forget_keys(self, hook_ids: list[str]) -> None:
        for hook_id in hook_ids:
            try:
                await self._box.forget(hook_id)
            except Exception:
                log.warning("webhook_key_forget_failed", hook_id=hook_id)

    # -- events ------------------------------------------------------------------------------

    async def dispatch(self, event: HookEvent) -> None:
        """Deliver an event to the organization's and the stack's hooks that want it, each
        with its retries; returns once every attempt is recorded. An update's success or
        failure goes nowhere when the stack's notification switch for it is off."""
        stack: StackRecord | None = None
        if event.names is None or event.update is not None:
            try:
                stack = await self._stack_by_id(event.stack_id)
            except NotFound:
                if event.names is None:
                    return
        if stack is not None:
            if event.update is not None and not stack.notifications.notifies(event.update.result):
                log.info("webhook_event_switched_off", hook_event=event.event, stack_id=stack.id)
                return
            if event.names is None:
                event = replace(event, names=names_of(stack))
        assert event.names is not None
        hooks = await self._store.for_stack(event.names.organization, event.stack_id)
        if event.event == "stack_deleted":
            # Only the organization's hooks hear of it (Pulumi's stack hooks have no
            # stack_deleted); the stack's own stay with its tombstone, back on a restore and
            # gone when it is purged (`purge_stack`).
            hooks = [hook for hook in hooks if not hook.stack_id]
        sends = [
            self._send(hook, event, formats.render(hook.format, event, self._public_url))
            for hook in hooks
            if matches(hook, event.event) and event.reaches(hook)
        ]
        await asyncio.gather(*sends)

    async def _send(self, hook: HookRecord, event: HookEvent, body: bytes) -> None:
        async with self._places:
            try:
                await self._sender.deliver(hook, kind_of(event.event), event.event, body)
            except Exception:
                log.exception("webhook_delivery_failed", hook_id=hook.id, hook_event=event.event)

    async def close(self) -> None:
        await self._sender.close()
