"""The running system of the gateway tests (served as `cairn up` serves it)."""

from __future__ import annotations

from tests.gateway.conftest import cairn

__all__ = ["cairn"]
