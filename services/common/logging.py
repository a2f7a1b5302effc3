"""structlog setup. Tokens, keys, secret values and checkpoint bodies never reach a log line."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_SENSITIVE_PARTS = (
    "token",
    "key",
    "secret",
    "password",
    "authorization",
    "plaintext",
    "ciphertext",
    "checkpoint",
    "deployment",
    "body",
)
REDACTED = "[redacted]"


def is_sensitive(name: str) -> bool:
    """Whether a log field name may carry a credential or a state body."""
    lowered = name.lower()
    return any(part in lowered for part in _SENSITIVE_PARTS)


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor replacing sensitive fields with a marker."""
    for name in list(event_dict):
        if name != "event" and is_sensitive(name):
            event_dict[name] = REDACTED
    return event_dict


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    logging.basicConfig(stream=sys.stderr, level=numeric, format="%(message)s")
    renderer: Any = (
        structlog.processors.JSONRenderer()
        if log_format == "json"
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact,
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
