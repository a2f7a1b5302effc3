"""The running system of the gateway tests, and raw HTTP/1.1 exchanges on 127.0.0.1."""

from __future__ import annotations

from tests.gateway.conftest import cairn

__all__ = ["cairn"]
