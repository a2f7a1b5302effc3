"""256-bit keys kept as base64 in a private file of the data dir, created once on first use."""

from __future__ import annotations

import base64
import binascii
import contextlib
import os
import secrets
from pathlib import Path

KEY_BYTES = 32


def parse_key(encoded: str, *, source: str) -> bytes:
    """Decode a base64 key; the error names the source but never echoes the value."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source} is not valid base64 of a {KEY_BYTES}-byte key") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{source} must decode to exactly {KEY_BYTES} bytes, not {len(key)}")
    return key


def load_or_create_key(path: Path) -> bytes:
    """The key kept in `path`, generating it first when the file does not exist yet."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        _create(path)
    return parse_key(path.read_text(encoding="ascii"), source=str(path))


def _create(path: Path) -> None:
    # Write a private temporary file, then hard-link it into place: the link either creates
    # the complete file or fails because another process got there first, so processes
    # starting together all end up reading the same key and nobody sees a half-written one.
    encoded = base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n"
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(encoded)
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileExistsError):
            os.link(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
