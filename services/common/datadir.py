"""The data directory and the files Cairn writes into it: private to the user running Cairn.

The directory is kept 0700 and every file Cairn creates there 0600: the SQLite database holds
token hashes, wrapped keys and checkpoints (secrets included), and the key files unwrap them.
SQLite creates its `-wal`, `-shm` and `-journal` files with the database file's mode, so the
database file is created private before SQLite first opens it. Modes are only ever tightened,
and paths outside the data directory that Cairn did not create are left as they are.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from services.common.logging import get_logger

PRIVATE_DIR_MODE = 0o700
PRIVATE_FILE_MODE = 0o600
# Files SQLite keeps next to a database file.
SQLITE_COMPANION_SUFFIXES: tuple[str, ...] = ("-wal", "-shm", "-journal")

log = get_logger("cairn.datadir")


def ensure_private_dir(path: Path) -> None:
    """Create the data directory 0700, or take group and other access off an existing one."""
    path.mkdir(mode=PRIVATE_DIR_MODE, parents=True, exist_ok=True)
    _tighten(path, PRIVATE_DIR_MODE)


def tighten_file(path: Path) -> None:
    """Take group and other access off a file Cairn keeps in the data directory, if present."""
    _tighten(path, PRIVATE_FILE_MODE)


def create_private_file_once(path: Path, content: bytes) -> None:
    """Create `path` (mode 0600) holding `content`, unless it exists; never half-written.

    A private temporary file is written, then hard-linked into place: the link either
    creates the complete file or fails because another process got there first, so processes
    starting together all end up reading the same content.
    """
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def sqlite_path(url: str) -> Path | None:
    """The database file of a SQLite URL (None for any other database)."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    return Path(parsed.database)


def prepare_database_files(url: str, data_dir: Path) -> None:
    """Before a SQLite database is opened: a private data directory and database file.

    A database file Cairn creates is created 0600 wherever it lives; an existing one (and
    its WAL, SHM and journal files) is tightened only inside the data directory.
    """
    path = sqlite_path(url)
    if path is None:
        return
    ensure_private_dir(data_dir)
    with contextlib.suppress(FileExistsError, FileNotFoundError):
        # SQLite takes an empty file for an empty database; missing parents are its to report.
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    if not _is_inside(path, data_dir):
        return
    for candidate in (path, *(Path(f"{path}{suffix}") for suffix in SQLITE_COMPANION_SUFFIXES)):
        tighten_file(candidate)


def _is_inside(path: Path, directory: Path) -> bool:
    return path.resolve().is_relative_to(directory.resolve())


def _tighten(path: Path, allowed: int) -> None:
    try:
        status = path.lstat()
    except FileNotFoundError:
        return
    # Never through a symbolic link: it may point anywhere.
    if stat.S_ISLNK(status.st_mode):
        return
    mode = stat.S_IMODE(status.st_mode)
    if mode & ~allowed == 0:
        return
    try:
        os.chmod(path, mode & allowed)
    except PermissionError:
        # Not ours to change (another user's directory); say so rather than fail to start.
        log.warning("data_mode_not_tightened", path=str(path), mode=oct(mode))
        return
    log.info("data_mode_tightened", path=str(path), mode=oct(mode & allowed))
