"""The running system of the gateway tests (served as `cairn up` serves it), and every log
line written meanwhile (structlog's and the standard library's)."""

from __future__ import annotations

import logging
from collections.abc import Iterator, MutableMapping
from typing import Any

import pytest
from structlog.testing import capture_logs

from tests.gateway.conftest import any_cairn, cairn

__all__ = ["any_cairn", "cairn", "logged_text", "logs"]

LogEntries = list[MutableMapping[str, Any]]


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[LogEntries]:
    caplog.set_level(logging.DEBUG)
    with capture_logs() as captured:
        yield captured


def logged_text(logs: LogEntries, caplog: pytest.LogCaptureFixture) -> str:
    """Everything logged, as text to search for what must not be there."""
    return repr(logs) + caplog.text + repr([record.__dict__ for record in caplog.records])
