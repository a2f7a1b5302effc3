"""The Pulumi CLI's HTTP layer as the benchmark drives it: headers, gzip, errors recorded."""

from __future__ import annotations

import gzip
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Final

import aiohttp
import orjson

ADMIN_TOKEN: Final = "pul-bench-0123456789abcdef0123456789abcdef"
ORG: Final = "admin"
PROJECT: Final = "bench"
HOST: Final = "127.0.0.1"
CLI_VERSION: Final = "v3.259.0"
CLI_HEADERS: Final = {
    "Accept": "application/vnd.pulumi+9",
    "Accept-Encoding": "gzip",
    "Content-Type": "application/json",
    "User-Agent": f"pulumi-cli/1 ({CLI_VERSION}; linux; cmd=up)",
}
REQUEST_TIMEOUT_S: Final = 120.0
GZIP_LEVEL: Final = 6  # Go's gzip.DefaultCompression


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BenchError(Exception):
    """The benchmark cannot go on (or a verification failed)."""


@dataclass(frozen=True)
class ServerError:
    method: str
    path: str
    status: int
    body: str

    def __str__(self) -> str:
        return f"{self.method} {self.path} -> HTTP {self.status}: {self.body}"


class HttpError(BenchError):
    def __init__(self, error: ServerError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass
class Api:
    """The CLI's HTTP layer: its headers, gzipped bodies where it gzips them, no retries."""

    session: aiohttp.ClientSession
    base_url: str
    errors: list[ServerError] = field(default_factory=list)

    async def call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        lease: str | None = None,
        gzipped: bool = False,
    ) -> tuple[float, bytes]:
        """(seconds the round trip took, response body); non-2xx is recorded and raised."""
        headers = dict(CLI_HEADERS)
        headers["Authorization"] = f"update-token {lease}" if lease else f"token {ADMIN_TOKEN}"
        data = body
        if gzipped and body is not None:
            data = gzip.compress(body, compresslevel=GZIP_LEVEL)
            headers["Content-Encoding"] = "gzip"
        started = time.perf_counter()
        try:
            async with self.session.request(
                method, self.base_url + path, data=data, headers=headers
            ) as response:
                payload = await response.read()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as error:
            failure = ServerError(method, path, 0, f"transport error: {error!r}")
            self.errors.append(failure)
            raise HttpError(failure) from error
        elapsed = time.perf_counter() - started
        if not 200 <= status < 300:
            text = payload.decode("utf-8", "replace")
            failure = ServerError(method, path, status, text[:2000])
            self.errors.append(failure)
            raise HttpError(failure)
        return elapsed, payload

    async def json(
        self, method: str, path: str, body: Any = None, *, lease: str | None = None
    ) -> Any:
        raw = None if body is None else orjson.dumps(body)
        _, payload = await self.call(method, path, body=raw, lease=lease)
        return orjson.loads(payload) if payload.strip() else None
