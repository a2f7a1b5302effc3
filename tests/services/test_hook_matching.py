"""A webhook event goes to the hooks that existed when it happened, however late the outbox
delivers it: a hook registered a moment after a change never hears of that change. On SQLite
and PostgreSQL (each keeps a hook's registration time to the microsecond)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from services.common.clock import ManualClock
from services.common.db import create_engine, session_factory
from services.common.errors import NotFound
from services.stacks.domain import StackPath, StackRecord
from services.stacks.hooks.delivery import DeliveryPolicy, Sender
from services.stacks.hooks.domain import (
    Delivery,
    HookEvent,
    HookRecord,
    HookScope,
    HookSpec,
    StackNames,
)
from services.stacks.hooks.service import Hooks, SecretBox
from services.stacks.hooks.store import HookStore

START = 1_800_000_000.0
ACME = HookScope("acme")


class Recorder(Sender):
    """Records which hook each event would be sent to, and sends nothing."""

    def __init__(self) -> None:
        policy = DeliveryPolicy(timeout_seconds=1.0, attempts=1, backoff_seconds=0.0)
        super().__init__(policy, self._no_secret, self._kept)
        self.sent: list[tuple[str, str]] = []

    @staticmethod
    async def _no_secret(hook: HookRecord) -> bytes | None:
        return None

    @staticmethod
    async def _kept(delivery: Delivery) -> bool:
        return True

    async def deliver(self, hook: HookRecord, kind: str, event: str, body: bytes) -> Delivery:
        self.sent.append((hook.name, event))
        return Delivery(
            id=f"{hook.name}-{len(self.sent)}",
            hook_id=hook.id,
            kind=kind,
            event=event,
            payload=body.decode(),
            timestamp=0,
            duration_ms=0,
            request_url=hook.payload_url,
            request_headers="",
            response_code=200,
            response_headers="",
            response_body="",
        )


class NoSecrets:
    async def encrypt(self, hook_id: str, plaintext: bytes) -> bytes:
        raise AssertionError("no hook here has a secret")

    async def decrypt(self, hook_id: str, ciphertext: bytes) -> bytes:
        raise AssertionError("no hook here has a secret")

    async def forget(self, hook_id: str) -> None:
        return None


async def no_stack(key: object) -> StackRecord:
    raise NotFound("Not Found: no stack here")


async def no_stack_path(path: StackPath) -> StackRecord:
    return await no_stack(path)


@pytest.fixture
async def setup(database_url: str) -> AsyncIterator[tuple[Hooks, Recorder, ManualClock]]:
    engine = create_engine(database_url, timeout_seconds=5.0)
    clock = ManualClock(START)
    recorder = Recorder()
    box: SecretBox = NoSecrets()

    def sender(store: HookStore, box: SecretBox) -> Sender:
        return recorder

    hooks = Hooks(
        HookStore(session_factory(engine)),
        box,
        stack_by_id=no_stack,
        stack_by_path=no_stack_path,
        sender_factory=sender,
        clock=clock,
        public_url="https://cairn.example.com",
    )
    try:
        yield hooks, recorder, clock
    finally:
        await engine.dispose()


def spec(name: str) -> HookSpec:
    return HookSpec(
        name=name,
        display_name=name,
        payload_url=f"https://hooks.example.com/{name}",
        active=True,
        format="raw",
        filters=(),
        groups=(),
        secret=None,
    )


def created(at_us: int) -> HookEvent:
    return HookEvent(
        stack_id="s" * 32,
        event="stack_created",
        user_login="ann",
        names=StackNames("acme", "web", "dev"),
        timestamp=at_us // 1_000_000,
        occurred_at_us=at_us,
    )


async def test_an_event_reaches_only_the_hooks_registered_before_it_happened(
    setup: tuple[Hooks, Recorder, ManualClock],
) -> None:
    hooks, recorder, clock = setup
    start_us = round(START * 1_000_000)
    await hooks.create(ACME, spec("early"))
    clock.advance(0.001)
    await hooks.create(ACME, spec("late"))

    # Half a millisecond after the first hook, half before the second: delivered now, after
    # both exist, it goes to the first only.
    await hooks.dispatch(created(start_us + 500))
    assert recorder.sent == [("early", "stack_created")]

    # At the very microsecond the second was registered: both.
    recorder.sent.clear()
    await hooks.dispatch(created(start_us + 1_000))
    assert sorted(recorder.sent) == [("early", "stack_created"), ("late", "stack_created")]

    # Before either: none. With no recorded time (stored before times were kept): both.
    recorder.sent.clear()
    await hooks.dispatch(created(start_us - 1))
    assert recorder.sent == []
    await hooks.dispatch(created(0))
    assert sorted(recorder.sent) == [("early", "stack_created"), ("late", "stack_created")]
