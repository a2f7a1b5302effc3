"""Engine events, uploaded as the CLI uploads them."""

from __future__ import annotations

import asyncio
import time
from typing import Any, Final

import orjson

from scripts.bench.client import REQUEST_TIMEOUT_S, Api, HttpError
from scripts.bench.resources import Names

EVENT_BATCH_SIZE: Final = 50
EVENT_WORKERS: Final = 3


class EventUploader:
    """Engine events: batches of up to 50, uploaded by three concurrent workers (§7)."""

    def __init__(self, api: Api, update_path: str, lease: str) -> None:
        self._api = api
        self._path = f"{update_path}/events/batch"
        self._lease = lease
        self._pending: list[dict[str, Any]] = []
        self._queue: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue()
        self._sequence = 0
        self.failures = 0
        self._workers = [asyncio.create_task(self._work()) for _ in range(EVENT_WORKERS)]

    def emit(self, kind: str, payload: dict[str, Any]) -> None:
        self._pending.append(
            {"sequence": self._sequence, "timestamp": int(time.time()), kind: payload}
        )
        self._sequence += 1
        if len(self._pending) >= EVENT_BATCH_SIZE:
            self._queue.put_nowait(self._pending)
            self._pending = []

    def resource_event(self, kind: str, names: Names, state: dict[str, Any]) -> None:
        provider = state.get("provider", "")
        new = {
            "type": state["type"],
            "urn": state["urn"],
            "custom": state["custom"],
            "id": state.get("id", ""),
            "parent": state.get("parent", ""),
            "inputs": state.get("inputs", {}),
            "outputs": state.get("outputs", {}),
            "provider": provider,
        }
        metadata = {
            "op": "create",
            "urn": state["urn"],
            "type": state["type"],
            "old": None,
            "new": new,
            "detailedDiff": None,
            "provider": provider,
        }
        payload: dict[str, Any] = {"metadata": metadata}
        if kind == "resourcePreEvent":
            payload["planning"] = False
        self.emit(kind, payload)

    async def _work(self) -> None:
        while True:
            batch = await self._queue.get()
            if batch is None:
                return
            body = orjson.dumps({"events": batch})
            try:
                await self._api.call("POST", self._path, body=body, lease=self._lease, gzipped=True)
            except HttpError:
                # The CLI only logs failed event uploads; the error is recorded by Api.
                self.failures += 1

    async def close(self) -> None:
        if self._pending:
            self._queue.put_nowait(self._pending)
            self._pending = []
        for _ in self._workers:
            self._queue.put_nowait(None)
        await asyncio.wait_for(asyncio.gather(*self._workers), REQUEST_TIMEOUT_S * 4)
