"""The measured runs: every shape for one backend, and every backend in turn."""

from __future__ import annotations

import asyncio
import random
import tempfile
import time
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeVar

import aiohttp

from scripts.bench.client import HOST, PROJECT, REQUEST_TIMEOUT_S, Api, BenchError, log
from scripts.bench.databases import postgres_database, redis_problem, tcp_answers
from scripts.bench.report import shape_figures, shape_label
from scripts.bench.resources import Names
from scripts.bench.server import CairnServer, Topology
from scripts.bench.update import MODES, Mode, UpdateResult, run_update

PHASE_TIMEOUT_S: Final = 3600.0
DEFAULT_CUTOFF: Final = 1024 * 1024
# Enough connections for the widest shape's clients plus their event uploaders.
CLIENT_CONNECTIONS: Final = 160

# Unscaled sizes of the measured runs.
UP_RESOURCES: Final = 1_000
SMALL_RESOURCES: Final = 100
LARGE_RESOURCES: Final = 10_000
SMALL_REPEATS: Final = 5  # the 100-resource runs are repeated to have enough samples
# Many stacks at once: (stacks, unscaled resources per stack, concurrent clients).
CONCURRENT: Final = ((16, 200, 8), (64, 50, 32))
CONCURRENT_MODES: Final[tuple[Mode, ...]] = ("sequential", "journal")
# The groups of shapes --shapes chooses from.
GROUPS: Final = ("single", "scaling", "many")

# Each process keeps this many PostgreSQL connections and opens no more: the widest shape has
# up to 128 writes in flight (32 clients, each a journal write and three event uploads) over
# two updates replicas, and connections opened and closed past the pool (overflow) cost a
# connect and lose their prepared statements. 20 x the processes that use the database stays
# under PostgreSQL's default max_connections of 100 for what the bench drives.
POSTGRES_POOL: Final = {"CAIRN_DATABASE_POOL_SIZE": "20", "CAIRN_DATABASE_MAX_OVERFLOW": "0"}

T = TypeVar("T")


def scaled(count: int, scale: float) -> int:
    return max(1, round(count * scale))


@dataclass(frozen=True)
class Shape:
    """`stacks` updates of `resources` each in one mode, `clients` of them at a time."""

    mode: Mode
    stacks: int
    resources: int
    clients: int

    @property
    def key(self) -> str:
        return f"{self.stacks}x{self.resources}x{self.clients}-{self.mode}"


@dataclass
class Sizes:
    up: int
    small: int
    large: int
    concurrent: list[tuple[int, int, int]]

    @classmethod
    def for_scale(cls, scale: float) -> Sizes:
        return cls(
            up=scaled(UP_RESOURCES, scale),
            small=scaled(SMALL_RESOURCES, scale),
            large=scaled(LARGE_RESOURCES, scale),
            concurrent=[
                (stacks, scaled(resources, scale), clients)
                for stacks, resources, clients in CONCURRENT
            ],
        )

    def shapes(self, groups: Sequence[str] = GROUPS, modes: Sequence[Mode] = MODES) -> list[Shape]:
        """In the order they run: single stacks, small stacks, many at once, the large stack."""
        return [shape for shape in self._shapes(groups) if shape.mode in modes]

    def _shapes(self, groups: Sequence[str]) -> list[Shape]:
        out: list[Shape] = []
        if "single" in groups:
            out += [Shape(mode, 1, self.up, 1) for mode in MODES]
        if "scaling" in groups:
            out += [Shape(mode, SMALL_REPEATS, self.small, 1) for mode in MODES]
        if "many" in groups:
            out += [
                Shape(mode, stacks, resources, clients)
                for stacks, resources, clients in self.concurrent
                for mode in CONCURRENT_MODES
            ]
        if "scaling" in groups:
            out += [Shape(mode, 1, self.large, 1) for mode in MODES]
        return out


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


async def _updates(api: Api, shape: Shape, cutoff: int, rng: random.Random) -> list[UpdateResult]:
    """Every update of a shape, `shape.clients` at a time, each verified by run_update."""
    queue: asyncio.Queue[str] = asyncio.Queue()
    for index in range(shape.stacks):
        queue.put_nowait(f"{shape.key}-{index:02d}")
    results: list[UpdateResult] = []

    async def client() -> None:
        while True:
            try:
                stack = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            names = Names(PROJECT, stack)
            results.append(await run_update(api, names, shape.resources, shape.mode, cutoff, rng))

    await asyncio.gather(*(client() for _ in range(shape.clients)))
    return results


async def run_shape(
    api: Api, server: CairnServer, shape: Shape, cutoff: int, rng: random.Random
) -> dict[str, Any]:
    """One shape's figures, with the CPU time every process spent on it."""
    server.reset_window()
    cpu_before = server.cpu_seconds()
    started = time.perf_counter()
    results = await bounded(_updates(api, shape, cutoff, rng), shape.key)
    wall = time.perf_counter() - started
    cpu_after = server.cpu_seconds()
    cpu = {
        label: max(0.0, seconds - cpu_before.get(label, 0.0))
        for label, seconds in cpu_after.items()
    }
    return {
        "mode": shape.mode,
        "stacks": shape.stacks,
        "resources_per_stack": shape.resources,
        "clients": shape.clients,
        **shape_figures(results, wall, cpu, server.window_peak_kb),
    }


def _scaling(sizes: Sizes, shapes: dict[str, dict[str, Any]]) -> dict[str, Any]:
    scaling: dict[str, Any] = {}
    for mode in MODES:
        low = shapes[Shape(mode, SMALL_REPEATS, sizes.small, 1).key]
        high = shapes[Shape(mode, 1, sizes.large, 1).key]
        scaling[mode] = {
            "small_resources": sizes.small,
            "large_resources": sizes.large,
            "p50_small_ms": low["p50_ms"],
            "p50_large_ms": high["p50_ms"],
            "cpu_ms_per_write_small": low["cpu_ms_per_write_all"],
            "cpu_ms_per_write_large": high["cpu_ms_per_write_all"],
            "ratio": round(high["p50_ms"] / low["p50_ms"], 3) if low["p50_ms"] else 0.0,
        }
    return scaling


async def bench_backend(
    backend: str,
    env: dict[str, str],
    topology: Topology,
    sizes: Sizes,
    groups: Sequence[str],
    session: aiohttp.ClientSession,
    modes: Sequence[Mode] = MODES,
) -> dict[str, Any]:
    """Every shape of `groups` for one backend; the system runs for the whole set."""
    rng = random.Random(20260821)
    with tempfile.TemporaryDirectory(prefix=f"cairn-bench-{backend}-") as tmp:
        server = CairnServer(Path(tmp), env, topology)
        api = Api(session, server.base_url)
        try:
            await server.start(session)
            log(f"[{backend}] cairn up --topology {topology} at {server.base_url}")
            capabilities = await api.json("GET", "/api/capabilities")
            cutoff = DEFAULT_CUTOFF
            for entry in capabilities.get("capabilities", []):
                if entry.get("capability") == "delta-checkpoint-uploads-v2":
                    cutoff = int(entry["configuration"]["checkpointCutoffSizeBytes"])
            figures: dict[str, Any] = {
                "status": "ok",
                "topology": topology,
                "processes": server.processes(),
                "checkpoint_cutoff_bytes": cutoff,
            }
            shapes: dict[str, dict[str, Any]] = {}
            for shape in sizes.shapes(groups, modes):
                description = {
                    "mode": shape.mode,
                    "stacks": shape.stacks,
                    "resources_per_stack": shape.resources,
                    "clients": shape.clients,
                }
                with Phase(f"[{backend}] {shape_label(description)}"):
                    shapes[shape.key] = await run_shape(api, server, shape, cutoff, rng)
            figures["shapes"] = shapes
            if "scaling" in groups and set(modes) == set(MODES):
                figures["scaling"] = _scaling(sizes, shapes)
                large_journal = shapes[Shape("journal", 1, sizes.large, 1).key]
                figures["complete_10k_journal_s"] = round(large_journal["complete_ms"] / 1000, 3)
            figures["peak_rss_mb"] = round(server.peak_kb / 1024, 1)
            figures["vmhwm_mb"] = round(server.high_water_kb() / 1024, 1)
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


def topology_for(backend: str, topology: str) -> Topology:
    """`auto`: the embedded default on SQLite, one process per service on PostgreSQL."""
    if topology == "embedded" or (topology == "auto" and backend == "sqlite"):
        return "embedded"
    return "distributed"


async def bench(
    backends: Sequence[str],
    sizes: Sizes,
    topology: str = "auto",
    groups: Sequence[str] = GROUPS,
    modes: Sequence[Mode] = MODES,
    settings: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """`settings`: CAIRN_* variables every server of the run starts with."""
    extra = dict(settings or {})
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=CLIENT_CONNECTIONS)
    results: dict[str, Any] = {}
    async with aiohttp.ClientSession(timeout=timeout, connector=connector) as session:
        for backend in backends:
            chosen = topology_for(backend, topology)
            if backend == "sqlite":
                results[backend] = await bench_backend(
                    backend, extra, chosen, sizes, groups, session, modes
                )
                continue
            problem = None if tcp_answers(5432) else f"PostgreSQL at {HOST}:5432 does not answer"
            problem = problem or redis_problem()
            if problem is not None:
                results[backend] = {"status": "skipped", "reason": problem}
                log(f"[{backend}] skipped: {problem}")
                continue
            try:
                async with postgres_database() as url:
                    env = {
                        "CAIRN_DATABASE_URL": url,
                        "CAIRN_REDIS_URL": f"redis://{HOST}:6379/0",
                        **POSTGRES_POOL,
                        **extra,
                    }
                    results[backend] = await bench_backend(
                        backend, env, chosen, sizes, groups, session, modes
                    )
            except BenchError as error:
                results[backend] = {"status": "skipped", "reason": str(error)}
                log(f"[{backend}] skipped: {error}")
    return results
