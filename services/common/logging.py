"""structlog setup. Tokens, keys, secret values and checkpoint bodies never reach a log line.

Three guards, in order, for structlog's events and for the standard library's records alike
(aiohttp, grpc, asyncio and SQLAlchemy log through `logging`; they are rendered by the same
processors): fields whose name suggests a credential or a body are replaced whole; tracebacks
are rendered as plain text, never with local variables (rich's or better-exceptions' pretty
tracebacks would print them, lease tokens included); and every value left, the event and the
traceback text included, has anything shaped like a Cairn token masked.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping, MutableMapping
from typing import Any

import structlog

from services.common.masking import mask_credentials

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
# Libraries whose debug lines print data (aiosqlite: every statement with its parameters,
# stored log lines and settings included): never below info.
QUIET_LIBRARIES = ("aiosqlite",)
# Libraries whose informational lines repeat on every start (alembic's "Context impl ..."):
# only their warnings are shown; Cairn logs what a migration did itself.
WARNINGS_ONLY_LIBRARIES = ("alembic",)


def is_sensitive(name: str) -> bool:
    """Whether a log field name may carry a credential or a state body.

    Identifiers (`token_id`, `deployment_id`) are not: they are what an operator correlates
    lines by, and a value that looks like a token is masked in any field anyway.
    """
    lowered = name.lower()
    if lowered.endswith(("_id", "_ids")):
        return False
    return any(part in lowered for part in _SENSITIVE_PARTS)


def redact(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor replacing sensitive fields with a marker."""
    for name in list(event_dict):
        if name != "event" and is_sensitive(name):
            event_dict[name] = REDACTED
    return event_dict


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask_credentials(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_masked(item) for item in value]
    # Anything else (an exception, a URL, a header map) is rendered as text here, masked.
    return mask_credentials(str(value))


def mask_tokens(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """structlog processor masking anything shaped like a Cairn token in every value (the
    event and a formatted traceback included): the last line of defence."""
    for name, value in event_dict.items():
        event_dict[name] = _masked(value)
    return event_dict


def _renderer(log_format: str) -> Any:
    if log_format == "json":
        return structlog.processors.JSONRenderer()
    # Plain tracebacks: the default formatter would use rich, which prints local variables.
    return structlog.dev.ConsoleRenderer(
        colors=False, exception_formatter=structlog.dev.plain_traceback
    )


# After these, an event holds only rendered text: `exc_info` became a plain `exception`
# string (format_exc_info never shows local variables) and credentials are masked.
_GUARDS: tuple[Any, ...] = (redact, structlog.processors.format_exc_info, mask_tokens)


def configure_logging(log_format: str = "console", level: str = "info") -> None:
    """Configure structlog and the stdlib root logger once per process."""
    numeric = logging.getLevelName(level.upper())
    if not isinstance(numeric, int):
        numeric = logging.INFO
    renderer = _renderer(log_format)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[
                structlog.stdlib.add_logger_name,
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
            ],
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                *_GUARDS,
                renderer,
            ],
        )
    )
    logging.basicConfig(level=numeric, handlers=[handler])
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.INFO))
    for name in WARNINGS_ONLY_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            *_GUARDS,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        cache_logger_on_first_use=True,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    logger: structlog.stdlib.BoundLogger = structlog.get_logger(name)
    return logger
