"""Shared fixtures: settings on a temporary data dir, SQLite or PostgreSQL databases."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import grpc
import hypothesis
import pytest
import structlog
from sqlalchemy.engine import make_url

from cairn.cli import migrate
from services.common.config import Settings
from services.common.datadir import PRIVATE_FILE_MODE
from services.common.grpc_server import open_channel
from services.common.logging import configure_logging
from services.common.signing import CallSigner, load_internal_key
from services.common.tls import load_tls

POSTGRES_URL = os.environ.get(
    "CAIRN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)
REDIS_URL = os.environ.get("CAIRN_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
# The PostgreSQL connection budget of a test: every service process a test starts (six in
# process, seven as the distributed topology's processes) holds at most pool size + overflow
# connections, so one test worker stays under 7 x 4 + 1 (the fixture's own) = 29.
TEST_POOL_SIZE = int(os.environ.get("CAIRN_TEST_DATABASE_POOL_SIZE", "2"))
TEST_MAX_OVERFLOW = int(os.environ.get("CAIRN_TEST_DATABASE_MAX_OVERFLOW", "2"))


def pytest_configure(config: pytest.Config) -> None:
    """Tracebacks never print local variables (they hold tokens and secret values), even
    when `-l`/`--showlocals` is given; services log through the one logging setup (without
    it, structlog's default renders tracebacks with rich, local variables included)."""
    config.option.showlocals = False
    config.addinivalue_line(
        "markers",
        f"{EMPTY_DATABASE}: the test's database starts empty instead of a copy of the migrated "
        "schema (for tests of migrations themselves)",
    )
    # Property tests check behaviour, not speed (that is the benchmarks' job): no per-example
    # deadline, which a busy CI machine would turn into failures.
    hypothesis.settings.register_profile("cairn", deadline=None)
    hypothesis.settings.load_profile("cairn")
    configure_logging("console", "info")
    # Tests reconfigure logging (to read JSON lines): no logger may keep this setup.
    structlog.configure(cache_logger_on_first_use=False)


# Every test's database starts as a copy of one migrated per test process (a file copy on
# SQLite, CREATE DATABASE … TEMPLATE on PostgreSQL): running every service's migrations again
# for each of thousands of tests would cost more than the tests themselves. Services still
# run their migrations on start, which find the schema current. Tests of the migrations
# themselves start empty with this marker.
EMPTY_DATABASE = "empty_database"


def _starts_empty(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker(EMPTY_DATABASE) is not None


def _migrate_in_thread(settings: Settings) -> None:
    """Migrate outside any running event loop (a session fixture may be set up from one)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(asyncio.run, migrate(settings)).result()


@pytest.fixture(scope="session")
def sqlite_schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with every service's tables at head, migrated once per process."""
    directory = tmp_path_factory.mktemp("schema") / "data"
    directory.mkdir()
    path = directory / "cairn.db"
    _migrate_in_thread(make_settings(directory, f"sqlite+aiosqlite:///{path}"))
    return path


# Modules whose tests run for tens of seconds each (whole topologies as processes, the
# fuzzer, the benchmark's smoke run, command-line processes): they start first, so parallel
# workers share them out early instead of one worker ending the suite alone on them.
SLOW_MODULES = (
    "tests/faults/",
    "tests/load/",
    "tests/contract/test_fuzz.py",
    "tests/unit/test_startup_failures.py",
    "tests/gateway/test_agent_e2e.py",
    "tests/gateway/test_schedules_e2e.py",
    "tests/gateway/test_schedules_sdk.py",
    "tests/gateway/test_concurrent_writes.py",
    "tests/operations/",
    "tests/console/test_schedule_browser.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The slow modules first (a stable sort: each keeps its order)."""
    items.sort(key=lambda item: not item.nodeid.startswith(SLOW_MODULES))


def _reachable(url: str, default_port: int) -> bool:
    parsed = make_url(url)
    host = parsed.host or "127.0.0.1"
    port = parsed.port or default_port
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def postgres_available() -> bool:
    return _reachable(POSTGRES_URL, 5432)


def redis_available() -> bool:
    return _reachable(REDIS_URL.replace("redis://", "redis+x://"), 6379)


async def _admin_connection() -> object:
    import asyncpg

    parsed = make_url(POSTGRES_URL)
    for user in (parsed.username or "postgres", "root", "postgres"):
        try:
            return await asyncpg.connect(
                host=parsed.host or "127.0.0.1",
                port=parsed.port or 5432,
                user=user,
                database=parsed.database or "test",
                timeout=5,
            )
        except Exception:
            continue
    raise RuntimeError("cannot connect to PostgreSQL as postgres or root")


async def create_test_database(template: str | None = None) -> str:
    """A new PostgreSQL database (a copy of `template` when given); its URL."""
    connection = await _admin_connection()
    try:
        name = f"cairn_test_{uuid.uuid4().hex[:12]}"
        copy = f' TEMPLATE "{template}"' if template else ""
        await connection.execute(f'CREATE DATABASE "{name}"{copy}')  # type: ignore[attr-defined]
        # Commits need not wait for the WAL to reach the disk: a test database never outlives
        # a crash of the server, and every test commits many times.
        await connection.execute(  # type: ignore[attr-defined]
            f'ALTER DATABASE "{name}" SET synchronous_commit = off'
        )
        user = await connection.fetchval("SELECT current_user")  # type: ignore[attr-defined]
    finally:
        await connection.close()  # type: ignore[attr-defined]
    return (
        make_url(POSTGRES_URL)
        .set(database=name, username=user)
        .render_as_string(hide_password=False)
    )


async def drop_test_database(url: str) -> None:
    connection = await _admin_connection()
    try:
        name = make_url(url).database
        await connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')  # type: ignore[attr-defined]
    finally:
        await connection.close()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def postgres_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The name of a PostgreSQL database at head, migrated once per process (a template)."""
    with ThreadPoolExecutor(max_workers=1) as pool:
        url = pool.submit(asyncio.run, create_test_database()).result()
        try:
            directory = tmp_path_factory.mktemp("postgres-schema")
            pool.submit(asyncio.run, migrate(make_settings(directory, url))).result()
            name = make_url(url).database
            assert name is not None
            yield name
        finally:
            pool.submit(asyncio.run, drop_test_database(url)).result()


class DatabaseCopies:
    """Copies of the migrated template, made one ahead of need and dropped behind, in a
    thread of their own: copying a database costs PostgreSQL a second or more of wall time
    under load, which a test then no longer waits for."""

    def __init__(self, template: str) -> None:
        self._template = template
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-databases")
        self._next: Future[str] | None = None
        self._drops: list[Future[None]] = []

    def _copy(self) -> Future[str]:
        return self._thread.submit(asyncio.run, create_test_database(self._template))

    async def take(self) -> str:
        """A fresh copy of the template; the next one is started at once."""
        ready = self._next or self._copy()
        self._next = self._copy()
        return await asyncio.wrap_future(ready)

    def give_back(self, url: str) -> None:
        """Drop a test's database once the thread gets to it."""
        self._drops.append(self._thread.submit(asyncio.run, drop_test_database(url)))

    def close(self) -> None:
        if self._next is not None:
            with contextlib.suppress(Exception):
                self.give_back(self._next.result())
        for drop in self._drops:
            with contextlib.suppress(Exception):
                drop.result()
        self._thread.shutdown()


@pytest.fixture(scope="session")
def test_databases(postgres_schema: str) -> Iterator[DatabaseCopies]:
    databases = DatabaseCopies(postgres_schema)
    try:
        yield databases
    finally:
        databases.close()


@pytest.fixture
async def postgres_url(request: pytest.FixtureRequest) -> AsyncIterator[str]:
    """A PostgreSQL database of one test (the migrated schema, or empty with the
    empty_database marker); dropped afterwards."""
    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    if _starts_empty(request):
        url = await create_test_database()
        try:
            yield url
        finally:
            await drop_test_database(url)
        return
    databases: DatabaseCopies = request.getfixturevalue("test_databases")
    url = await databases.take()
    try:
        yield url
    finally:
        databases.give_back(url)


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    path = tmp_path / "data"
    path.mkdir()
    return path


def _sqlite_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """The test's SQLite database in its data dir: a copy of the migrated schema, or none
    yet with the empty_database marker."""
    path = data_dir / "cairn.db"
    if not _starts_empty(request) and not path.exists():
        shutil.copyfile(request.getfixturevalue("sqlite_schema"), path)
        path.chmod(PRIVATE_FILE_MODE)
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, data_dir: Path) -> str:
    """Every store test runs on SQLite and, when reachable, on PostgreSQL."""
    if request.param == "sqlite":
        return _sqlite_url(request, data_dir)
    url: str = request.getfixturevalue("postgres_url")
    return url


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    """Settings on a private data dir; tests never read the real environment. Webhook
    receivers of the tests listen on loopback, so private addresses are allowed; the
    PostgreSQL pools are the tests' connection budget (TEST_POOL_SIZE, TEST_MAX_OVERFLOW)."""
    options: dict[str, object] = {"webhook_allow_private": True}
    if database_url.startswith("postgresql"):
        options |= {
            "database_pool_size": TEST_POOL_SIZE,
            "database_max_overflow": TEST_MAX_OVERFLOW,
        }
    options |= overrides
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        data_dir=data_dir,
        database_url=database_url,
        **options,  # type: ignore[arg-type]
    )


@pytest.fixture
def settings(request: pytest.FixtureRequest, data_dir: Path) -> Settings:
    """SQLite settings, for tests whose subject does not depend on the database."""
    return make_settings(data_dir, _sqlite_url(request, data_dir))


@pytest.fixture
def any_settings(data_dir: Path, database_url: str) -> Settings:
    """Settings parametrised over SQLite and PostgreSQL."""
    return make_settings(data_dir, database_url)


def signed_channel(settings: Settings, address: str) -> grpc.aio.Channel:
    """A channel to a service that signs its calls (and speaks TLS) as Cairn's own processes do."""
    signer = CallSigner(load_internal_key(settings))
    return open_channel(address, settings.max_message_bytes, signer=signer, tls=load_tls(settings))
