"""Reporting events to the webhooks (HookService.PublishEvent) without ever waiting on them.

`publish` puts the event in a bounded in-memory queue and returns; one background task sends
them one by one with a deadline. A full queue drops the event, a failed call is logged: the
caller's own work never waits for, nor fails because of, a webhook.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import grpc

from protos.cairn.v1 import hooks_pb2, hooks_pb2_grpc
from services.common.logging import get_logger

if TYPE_CHECKING:
    from protos.cairn.v1.hooks_pb2_grpc import HookServiceAsyncStub

log = get_logger("cairn.hook_events")

DEFAULT_QUEUE_SIZE = 1000


class HookEventPublisher:
    def __init__(
        self,
        channel: grpc.aio.Channel,
        timeout: float,
        queue_size: int = DEFAULT_QUEUE_SIZE,
    ) -> None:
        self._channel = channel
        self._stub: HookServiceAsyncStub = hooks_pb2_grpc.HookServiceStub(channel)
        self._timeout = timeout
        self._queue: asyncio.Queue[hooks_pb2.PublishEventRequest] = asyncio.Queue(queue_size)
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    def publish(self, event: hooks_pb2.PublishEventRequest) -> None:
        if self._closed:
            return
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._send_all())
        try:
            self._queue.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("hook_event_dropped", hook_event=event.event, stack_id=event.stack_id)

    async def _send_all(self) -> None:
        while True:
            event = await self._queue.get()
            try:
                await self._stub.PublishEvent(event, timeout=self._timeout)
            except grpc.RpcError as error:
                log.warning(
                    "hook_event_not_delivered",
                    hook_event=event.event,
                    stack_id=event.stack_id,
                    code=str(error.code()) if isinstance(error, grpc.aio.AioRpcError) else "",
                )
            finally:
                self._queue.task_done()

    async def flush(self, timeout: float) -> None:
        """Wait, bounded, until queued events were sent (tests, shutdown)."""
        try:
            async with asyncio.timeout(timeout):
                await self._queue.join()
        except TimeoutError:
            pass

    async def close(self) -> None:
        """Stop sending (queued events are dropped) and close the channel, which ends a call
        still in flight."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
        await self._channel.close(None)
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)
