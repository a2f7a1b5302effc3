"""The running system of the gateway tests, for the contract tests that need one."""

from __future__ import annotations

from tests.gateway.conftest import cairn

__all__ = ["cairn"]
