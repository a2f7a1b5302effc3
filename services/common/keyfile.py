"""256-bit keys kept as base64 in a private file of the data dir, created once on first use."""

from __future__ import annotations

import base64
import binascii
import secrets
from pathlib import Path

from services.common.datadir import create_private_file_once, ensure_private_dir, tighten_file

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
    """The key kept in `path` (made private), generating it when the file does not exist."""
    ensure_private_dir(path.parent)
    if path.exists():
        tighten_file(path)
    else:
        create_private_file_once(path, base64.b64encode(secrets.token_bytes(KEY_BYTES)) + b"\n")
    return parse_key(path.read_text(encoding="ascii"), source=str(path))
