"""The running system of the gateway tests, for the security tests."""

from __future__ import annotations

from tests.gateway.conftest import any_cairn, cairn

__all__ = ["any_cairn", "cairn"]
