"""PostgreSQL and Redis on their usual loopback ports, when they answer."""

from __future__ import annotations

import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

from scripts.bench.client import HOST, BenchError


def tcp_answers(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=2.0):
            return True
    except OSError:
        return False


def redis_problem() -> str | None:
    """None when Redis on 127.0.0.1:6379 answers PING, else why not."""
    try:
        with socket.create_connection((HOST, 6379), timeout=2.0) as sock:
            sock.settimeout(2.0)
            sock.sendall(b"PING\r\n")
            reply = sock.recv(64)
    except OSError as error:
        return f"Redis at {HOST}:6379 does not answer ({error})"
    if not reply.startswith(b"+PONG"):
        return f"Redis at {HOST}:6379 answered {reply!r} to PING"
    return None


@contextlib.asynccontextmanager
async def postgres_database() -> AsyncIterator[str]:
    """A fresh database (user postgres, else root), dropped afterwards; yields its URL."""
    import asyncpg

    connection: Any = None
    problems: list[str] = []
    for user in ("postgres", "root"):
        for database in ("postgres", "template1"):
            try:
                connection = await asyncpg.connect(
                    host=HOST, port=5432, user=user, database=database, timeout=5
                )
                break
            except Exception as error:
                problems.append(f"{user}@{database}: {error}")
        if connection is not None:
            break
    if connection is None:
        raise BenchError("cannot connect to PostgreSQL: " + "; ".join(problems))
    name = f"cairn_bench_{uuid.uuid4().hex[:12]}"
    try:
        user = await connection.fetchval("SELECT current_user")
        await connection.execute(f'CREATE DATABASE "{name}"')
        try:
            yield f"postgresql+asyncpg://{user}@{HOST}:5432/{name}"
        finally:
            await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await connection.close()
