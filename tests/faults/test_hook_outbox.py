"""The webhook outbox across a SIGKILL: a real `cairn serve stacks` process dies while it
delivers an event committed to its outbox; once it runs again the event is delivered (at
least once) and recorded. On SQLite, with the stacks process alone (the event and the hook
are written straight to its database, as its own transactions would)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from datetime import UTC, datetime
from pathlib import Path

import orjson

from cairn.cli import _spawn, _wait_serving, child_environment, free_ports
from services.common.db import create_engine, read_session_factory, session_factory
from services.common.hook_events import Outbox, hook_event
from services.stacks.hooks.domain import HookRecord
from services.stacks.hooks.store import HookStore
from services.stacks.models import HOOK_OUTBOX
from tests.conftest import make_settings
from tests.gateway.receiver import receiver

# The claim of a delivering process outlives its attempts: with one 5 s attempt, 15 s.
WEBHOOK_TIMEOUT_S = 5.0
BOUND_S = 90.0


async def test_sigkill_between_commit_and_delivery_still_delivers(tmp_path: Path) -> None:
    data = tmp_path / "data"
    url = f"sqlite+aiosqlite:///{data / 'cairn.db'}"
    port, *peers = free_ports(5)
    settings = make_settings(
        data,
        url,
        webhook_timeout_seconds=WEBHOOK_TIMEOUT_S,
        webhook_attempts=1,
        webhook_backoff_seconds=0.0,
        webhook_poll_seconds=0.2,
        grpc_host="127.0.0.1",
        # Addressed, never called here.
        **{
            f"{name}_address": f"127.0.0.1:{peer}"
            for name, peer in zip(
                ("secrets", "updates", "agent_pools", "identity"), peers, strict=True
            )
        },
    )
    env = child_environment(settings, os.environ)
    log_dir = tmp_path / "logs"
    child = _spawn("stacks", 0, port, env, log_dir)
    engine = None
    try:
        await _wait_serving(child, settings, time.monotonic() + BOUND_S)
        engine = create_engine(url, timeout_seconds=10.0)
        writes = session_factory(engine)
        hooks = HookStore(writes)
        async with receiver() as sink:
            hook = HookRecord(
                id="h" * 32,
                organization="acme",
                stack_id="",
                name="ci",
                display_name="CI",
                payload_url=sink.url,
                active=True,
                format="raw",
                filters=(),
                groups=(),
                secret_ciphertext=None,
            )
            await hooks.create(hook, datetime.now(UTC))
            sink.hold = asyncio.Event()
            event = hook_event(
                "s" * 32,
                "stack_created",
                at=time.time(),
                user_login="ann",
                organization="acme",
                project="web",
                stack_name="dev",
            )
            outbox = Outbox(writes, read_session_factory(engine), HOOK_OUTBOX, "sqlite")
            await outbox.publish(event)
            # Committed; the stacks process's dispatcher delivers it, and the receiver hangs.
            (first,) = await sink.wait_for(1, timeout=BOUND_S)
            child.process.send_signal(signal.SIGKILL)
            assert await asyncio.to_thread(child.process.wait, 10) == -signal.SIGKILL
            sink.hold.set()
            sink.hold = None
            assert await hooks.deliveries(hook.id) == []

            child = _spawn("stacks", 0, port, env, log_dir)
            await _wait_serving(child, settings, time.monotonic() + BOUND_S)
            # Sent again once the dead process's claim ran out, now answered and recorded.
            received = await sink.wait_for(2, timeout=BOUND_S)
            assert received[1].body == first.body
            body = orjson.loads(first.body)
            assert (body["action"], body["stackName"]) == ("created", "dev")
            for _ in range(100):
                recorded = await hooks.deliveries(hook.id)
                if recorded:
                    break
                await asyncio.sleep(0.1)
            assert [d.response_code for d in recorded] == [200]
            # The row goes once the send returned, just after the delivery was recorded.
            for _ in range(100):
                if not await outbox.has_due(time.time() + 3600):
                    break
                await asyncio.sleep(0.1)
            assert not await outbox.has_due(time.time() + 3600)
    finally:
        if engine is not None:
            await engine.dispose()
        if child.process.poll() is None:
            child.process.terminate()
            await asyncio.to_thread(child.process.wait, 15)
