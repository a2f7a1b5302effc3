"""The measured runs: every figure for one backend, and every backend in turn."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp

from scripts.bench.client import HOST, PROJECT, REQUEST_TIMEOUT_S, Api, BenchError, log
from scripts.bench.databases import postgres_database, redis_problem, tcp_answers
from scripts.bench.report import latency_figures
from scripts.bench.resources import Names
from scripts.bench.server import CairnServer
from scripts.bench.update import MODES, Mode, UpdateResult, run_update

PHASE_TIMEOUT_S: Final = 3600.0
DEFAULT_CUTOFF: Final = 1024 * 1024

# Unscaled sizes of the measured runs.
UP_RESOURCES: Final = 1_000
SMALL_RESOURCES: Final = 100
LARGE_RESOURCES: Final = 10_000
SMALL_REPEATS: Final = 5  # the 100-resource runs are repeated to have enough samples
CONCURRENT_STACKS: Final = 16
CONCURRENT_RESOURCES: Final = 200
CONCURRENT_CLIENTS: Final = 8

T = TypeVar("T")


def scaled(count: int, scale: float) -> int:
    return max(1, round(count * scale))


@dataclass
class Sizes:
    up: int
    small: int
    large: int
    concurrent: int

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        return cls(
            up=scaled(UP_RESOURCES, scale),
            small=scaled(SMALL_RESOURCES, scale),
            large=scaled(LARGE_RESOURCES, scale),
            concurrent=scaled(CONCURRENT_RESOURCES, scale),
        )


class Phase:
    """Bounded phase with a progress line."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.started = 0.0

    def __enter__(self) -> Phase:
        self.started = time.perf_counter()
        log(f"  {self.label} ...")
        return self

    def __exit__(self, *_: object) -> None:
        log(f"  {self.label}: {time.perf_counter() - self.started:.1f} s")


async def bounded(awaitable: Awaitable[T], label: str) -> T:
    try:
        return await asyncio.wait_for(awaitable, PHASE_TIMEOUT_S)
    except TimeoutError:
        raise BenchError(f"{label} did not finish within {PHASE_TIMEOUT_S:.0f} s") from None


async def bench_backend(
    backend: str, env: dict[str, str], sizes: Sizes, session: aiohttp.ClientSession
) -> dict[str, Any]:
    """Every figure for one backend; the server runs for the whole set."""
    rng = random.Random(20260821)
    with tempfile.TemporaryDirectory(prefix=f"cairn-bench-{backend}-") as tmp:
        server = CairnServer(Path(tmp), env)
        api = Api(session, server.base_url)
        try:
            await server.start(session)
            log(f"[{backend}] cairn up at {server.base_url} (pid {server.pid})")
            capabilities = await api.json("GET", "/api/capabilities")
            cutoff = DEFAULT_CUTOFF
            for entry in capabilities.get("capabilities", []):
                if entry.get("capability") == "delta-checkpoint-uploads-v2":
                    cutoff = int(entry["configuration"]["checkpointCutoffSizeBytes"])
            figures: dict[str, Any] = {"status": "ok", "checkpoint_cutoff_bytes": cutoff}

            async def up(stack: str, count: int, mode: Mode) -> UpdateResult:
                names = Names(PROJECT, stack)
                return await bounded(
                    run_update(api, names, count, mode, cutoff, rng), f"{mode} up of {stack}"
                )

            up_figures: dict[str, Any] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {sizes.up}-resource up, {mode}"):
                    up_figures[mode] = latency_figures([await up(f"u{mode[0]}", sizes.up, mode)])
            figures["up"] = up_figures

            small: dict[str, list[UpdateResult]] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {SMALL_REPEATS} x {sizes.small}-resource up, {mode}"):
                    small[mode] = [
                        await up(f"s{mode[0]}{i}", sizes.small, mode) for i in range(SMALL_REPEATS)
                    ]

            with Phase(
                f"[{backend}] {CONCURRENT_STACKS} stacks x {sizes.concurrent} resources, "
                f"{CONCURRENT_CLIENTS} clients"
            ):
                figures["concurrent"] = await bounded(
                    _concurrent(api, sizes.concurrent, cutoff, rng), "the concurrent run"
                )

            server.reset_window()
            large: dict[str, UpdateResult] = {}
            for mode in MODES:
                with Phase(f"[{backend}] {sizes.large}-resource up, {mode}"):
                    large[mode] = await up(f"l{mode[0]}", sizes.large, mode)
            figures["peak_rss_10k_mb"] = round(server.window_peak_kb / 1024, 1)
            figures["vmhwm_mb"] = round(server.high_water_kb() / 1024, 1)
            figures["complete_10k_journal_s"] = round(large["journal"].complete_s, 3)

            scaling: dict[str, Any] = {}
            for mode in MODES:
                low = latency_figures(small[mode])
                high = latency_figures([large[mode]])
                scaling[mode] = {
                    "small_resources": sizes.small,
                    "large_resources": sizes.large,
                    "p50_small_ms": low["p50_ms"],
                    "p50_large_ms": high["p50_ms"],
                    "p99_large_ms": high["p99_ms"],
                    "writes_large": high["writes"],
                    "total_large_s": high["total_s"],
                    "ratio": round(high["p50_ms"] / low["p50_ms"], 3) if low["p50_ms"] else 0.0,
                }
            figures["scaling"] = scaling
        except BenchError as error:
            log(f"[{backend}] FAILED: {error}")
            tail = server.log_tail()
            if tail:
                log(f"[{backend}] last lines of the cairn log:\n{tail}")
            return {
                "status": "failed",
                "reason": str(error),
                "server_errors": [str(e) for e in api.errors],
            }
        finally:
            await server.stop()
        figures["server_errors"] = [str(e) for e in api.errors]
        if api.errors:
            figures["status"] = "failed"
            figures["reason"] = f"{len(api.errors)} server errors"
        return figures


async def _concurrent(api: Api, count: int, cutoff: int, rng: random.Random) -> dict[str, Any]:
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(CONCURRENT_STACKS):
        queue.put_nowait(f"c{index:02d}")
    results: list[UpdateResult] = []

    async def client() -> None:
        while True:
            try:
                stack = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            results.append(
                await run_update(api, Names(PROJECT, stack), count, "journal", cutoff, rng)
            )

    started = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(CONCURRENT_CLIENTS)))
    wall = time.perf_counter() - started
    figures = latency_figures(results)
    return {
        "stacks": CONCURRENT_STACKS,
        "resources_per_stack": count,
        "clients": CONCURRENT_CLIENTS,
        "wall_s": round(wall, 3),
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
    }


async def bench(backends: Sequence[str], sizes: Sizes) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=64)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for backend in backends:
            if backend == "sqlite":
                results[backend] = await bench_backend(backend, {}, sizes, session)
                continue
            problem = None if tcp_answers(5432) else f"PostgreSQL at {HOST}:5432 does not answer"
            problem = problem or redis_problem()
            if problem is not None:
                results[backend] = {"status": "skipped", "reason": problem}
                log(f"[{backend}] skipped: {problem}")
                continue
            try:
                async with postgres_database() as url:
                    env = {"CAIRN_DATABASE_URL": url, "CAIRN_REDIS_URL": f"redis://{HOST}:6379/0"}
                    results[backend] = await bench_backend(backend, env, sizes, session)
            except BenchError as error:
                results[backend] = {"status": "skipped", "reason": str(error)}
                log(f"[{backend}] skipped: {error}")
    return results
