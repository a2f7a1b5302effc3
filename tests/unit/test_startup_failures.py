"""A start that cannot happen says why in one line, exits with 2, and leaves nothing behind.

Each case runs the real `cairn` command in a subprocess with a data dir that does not exist
yet: after the refusal it must still not exist (nothing migrated, no key generated).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from cairn.cli import free_ports
from tests.conftest import POSTGRES_URL, postgres_available

TIMEOUT_S = 60
SECRET_VALUE = "not-a-key-c2VjcmV0LXZhbHVl"


def closed_port() -> int:
    """A loopback port nothing listens on (picked, then released)."""
    return free_ports(1)[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        yield listener.getsockname()[1]


def run_cairn(
    data_dir: Path, *args: str, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environment = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CAIRN_") and key not in ("PULUMI_ACCESS_TOKEN",)
    }
    environment["CAIRN_DATA_DIR"] = str(data_dir)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cairn", *args],
        capture_output=True,
        text=True,
        timeout=TIMEOUT_S,
        env=environment,
        stdin=subprocess.DEVNULL,
        check=False,
    )


def assert_refused(done: subprocess.CompletedProcess[str], *needles: str) -> str:
    """Exit 2, one line on stderr naming what to change, nothing on stdout."""
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr[-2000:]
    assert len(lines) == 1, done.stderr[-2000:]
    assert lines[0].startswith("cairn: "), lines
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    assert done.stdout == ""
    return lines[0]


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    data_dir = tmp_path / "data"
    done = run_cairn(data_dir, "up", "--port", str(busy_port))
    assert_refused(done, f"127.0.0.1:{busy_port} is already in use", "CAIRN_PORT")
    assert not data_dir.exists()


def test_distributed_gateway_port_in_use(tmp_path: Path, busy_port: int) -> None:
    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    data_dir = tmp_path / "data"
    # The second gateway listens on --port + 1.
    done = run_cairn(
        data_dir,
        "up",
        "--topology",
        "distributed",
        "--port",
        str(busy_port - 1),
        "--database-url",
        POSTGRES_URL,
    )
    line = assert_refused(done, "CAIRN_PORT")
    assert "already in use" in line or "needs privileges" in line
    assert not data_dir.exists()


def test_bad_setting_names_the_variable(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = run_cairn(data_dir, "up", env={"CAIRN_PORT": "eighty"})
    assert_refused(done, "CAIRN_PORT is invalid")
    assert not data_dir.exists()


def test_unreadable_master_key_is_named_but_never_shown(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = run_cairn(data_dir, "up", "--port", "0", env={"CAIRN_MASTER_KEY": SECRET_VALUE})
    assert_refused(done, "CAIRN_MASTER_KEY")
    assert SECRET_VALUE not in done.stderr
    assert not data_dir.exists()


def test_corrupt_master_key_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir(mode=0o700)
    (data_dir / "master.key").write_text("truncated\n")
    done = run_cairn(data_dir, "up", "--port", "0")
    assert_refused(done, "master.key", "CAIRN_MASTER_KEY")
    assert sorted(path.name for path in data_dir.iterdir()) == ["master.key"]


def test_data_dir_that_is_a_file(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.write_text("")
    done = run_cairn(data_dir, "up", "--port", "0")
    assert_refused(done, "CAIRN_DATA_DIR")


def test_unsupported_database_url(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    for url, needle in (
        ("mysql://root@127.0.0.1/cairn", "names mysql"),
        ("not a url", "not a database URL"),
    ):
        done = run_cairn(data_dir, "up", "--port", "0", "--database-url", url)
        assert_refused(done, needle, "CAIRN_DATABASE_URL")
    assert not data_dir.exists()


def test_unreachable_postgres(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    url = f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port()}/cairn"
    done = run_cairn(data_dir, "up", "--port", "0", "--database-url", url)
    assert_refused(done, "cannot reach PostgreSQL", "CAIRN_DATABASE_URL")
    assert not data_dir.exists()


def test_missing_postgres_database(tmp_path: Path) -> None:
    if not postgres_available():
        pytest.skip(f"PostgreSQL is not reachable at {POSTGRES_URL}")
    data_dir = tmp_path / "data"
    url = make_url(POSTGRES_URL).set(database="cairn_no_such_database").render_as_string(False)
    done = run_cairn(data_dir, "migrate", env={"CAIRN_DATABASE_URL": url})
    assert_refused(done, "no database 'cairn_no_such_database'", "createdb", "CAIRN_DATABASE_URL")
    assert not data_dir.exists()


def test_unreachable_redis(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    done = run_cairn(
        data_dir, "up", "--port", "0", "--redis-url", f"redis://127.0.0.1:{closed_port()}/0"
    )
    assert_refused(done, "cannot reach Redis", "CAIRN_REDIS_URL")
    assert not data_dir.exists()


def test_service_port_in_use(tmp_path: Path, busy_port: int) -> None:
    data_dir = tmp_path / "data"
    done = run_cairn(data_dir, "serve", "stacks", env={"CAIRN_GRPC_PORT": str(busy_port)})
    assert_refused(done, "already in use", "CAIRN_GRPC_PORT")
    assert not data_dir.exists()


def test_migrations_say_one_line_per_start(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    first = run_cairn(data_dir, "migrate")
    second = run_cairn(data_dir, "migrate")
    outputs = []
    for done in (first, second):
        assert done.returncode == 0, done.stderr[-2000:]
        outputs.append((done.stdout + done.stderr).strip().splitlines())
    first_lines, second_lines = outputs
    assert len(first_lines) == 1 and "migrated" in first_lines[0], first_lines
    assert "identity_0001" in first_lines[0]
    assert len(second_lines) == 1 and "up to date" in second_lines[0], second_lines
