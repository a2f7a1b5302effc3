"""The whole system's fixtures, shared with the gateway's end-to-end tests."""

from tests.gateway.conftest import any_cairn, cairn

__all__ = ["any_cairn", "cairn"]
