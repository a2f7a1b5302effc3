"""The whole system as the gateway tests run it (`cairn`), for the security tests."""

from __future__ import annotations

from tests.gateway.conftest import cairn

__all__ = ["cairn"]
