"""The console's reading of engine events: one timeline entry per event, diagnostics marked.

Pure functions over the events the CLI uploads (`{sequence, timestamp, <kind>: {...}}`, the
kinds of Pulumi's `apitype.EngineEvent`).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import orjson

from gateway.console.deployment import urn_name

# Pulumi's colour directives (`<{%fg 1%}>`, `<{%reset%}>`) and ANSI escape sequences.
_COLOR_TAG = re.compile(r"<\{%[^%]*%\}>")
_ANSI = re.compile(r"\x1b\[[0-9;?]*[ -/]*[@-~]")
# Steps the engine announces for resources that do not change.
UNCHANGED_OPS = frozenset({"same", "read", "refresh"})
# Severity of an entry: drives its highlighting.
ERROR = "error"
WARNING = "warning"
INFO = "info"
DEBUG = "debug"


def plain_text(message: str) -> str:
    """A message without colour directives or terminal escapes, trailing space trimmed."""
    return _ANSI.sub("", _COLOR_TAG.sub("", message)).rstrip()


@dataclass(frozen=True)
class Entry:
    """One line of an update's timeline."""

    sequence: int
    timestamp: int
    kind: str
    title: str
    text: str = ""
    severity: str = INFO
    urn: str = ""
    op: str = ""

    @property
    def is_diagnostic(self) -> bool:
        return self.kind == "diagnosticEvent"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _string(value: Any) -> str:
    return value if isinstance(value, str) else ""


def _int(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _severity(raw: str) -> str:
    """Diagnostic severities: error, warning, info, info#err (stderr), debug."""
    if raw == "error":
        return ERROR
    if raw == "warning":
        return WARNING
    if raw == "debug":
        return DEBUG
    return INFO


def _step(body: dict[str, Any]) -> tuple[str, str, str]:
    metadata = _object(body.get("metadata"))
    return _string(metadata.get("op")), _string(metadata.get("urn")), _string(metadata.get("type"))


def entry(event: Mapping[str, Any]) -> Entry:
    """The timeline entry of one engine event; unknown kinds keep their name."""
    sequence = _int(event.get("sequence"))
    timestamp = _int(event.get("timestamp"))
    kind = next((key for key in event if key not in ("sequence", "timestamp")), "")
    body = _object(event.get(kind))
    base: dict[str, Any] = {"sequence": sequence, "timestamp": timestamp, "kind": kind}
    if kind == "diagnosticEvent":
        urn = _string(body.get("urn"))
        severity = _string(body.get("severity"))
        where = urn_name(urn) if urn else "update"
        return Entry(
            **base,
            title=f"{severity or 'info'}: {where}",
            text=plain_text(_string(body.get("prefix")) + _string(body.get("message"))),
            severity=_severity(severity),
            urn=urn,
        )
    if kind == "stdoutEvent":
        return Entry(**base, title="output", text=plain_text(_string(body.get("message"))))
    if kind == "resourcePreEvent":
        op, urn, type_ = _step(body)
        severity = DEBUG if op in UNCHANGED_OPS else INFO
        return Entry(
            **base,
            title=f"{op or 'step'} {urn_name(urn)}",
            text=type_,
            severity=severity,
            urn=urn,
            op=op,
        )
    if kind == "resOutputsEvent":
        op, urn, type_ = _step(body)
        severity = DEBUG if op in UNCHANGED_OPS else INFO
        return Entry(
            **base,
            title=f"{op or 'step'} {urn_name(urn)} done",
            text=type_,
            severity=severity,
            urn=urn,
            op=op,
        )
    if kind == "resOpFailedEvent":
        op, urn, type_ = _step(body)
        return Entry(
            **base,
            title=f"{op or 'step'} {urn_name(urn)} failed",
            text=type_,
            severity=ERROR,
            urn=urn,
            op=op,
        )
    if kind == "summaryEvent":
        changes = _object(body.get("resourceChanges"))
        counts = ", ".join(f"{op} {count}" for op, count in sorted(changes.items()))
        duration = _int(body.get("durationSeconds"))
        return Entry(
            **base,
            title="summary",
            text=f"{counts or 'no changes'}; {duration} s",
        )
    if kind == "preludeEvent":
        config = _object(body.get("config"))
        return Entry(**base, title="started", text=f"{len(config)} configuration value(s)")
    if kind == "cancelEvent":
        return Entry(**base, title="cancelled", severity=WARNING)
    if kind == "policyEvent":
        level = _string(body.get("enforcementLevel"))
        return Entry(
            **base,
            title=f"policy {_string(body.get('policyName'))}",
            text=plain_text(_string(body.get("message"))),
            severity=ERROR if level == "mandatory" else WARNING,
            urn=_string(body.get("resourceUrn")),
        )
    if kind == "errorEvent":
        return Entry(
            **base, title="error", text=plain_text(_string(body.get("error"))), severity=ERROR
        )
    return Entry(**base, title=kind or "event", severity=DEBUG)


def entries(raw_events: Iterable[bytes]) -> list[Entry]:
    """Entries of stored events (JSON text each); unreadable ones are skipped."""
    found: list[Entry] = []
    for raw in raw_events:
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue
        if isinstance(event, dict):
            found.append(entry(event))
    return found


@dataclass(frozen=True)
class Change:
    op: str
    urn: str

    @property
    def name(self) -> str:
        return urn_name(self.urn)


def changes_by_op(timeline: Iterable[Entry]) -> dict[str, list[Change]]:
    """The resources an update changed, by step kind (create, update, delete, replace ...)."""
    grouped: dict[str, list[Change]] = {}
    seen: set[tuple[str, str]] = set()
    for item in timeline:
        if item.kind != "resourcePreEvent" or not item.op or item.op in UNCHANGED_OPS:
            continue
        key = (item.op, item.urn)
        if key in seen:
            continue
        seen.add(key)
        grouped.setdefault(item.op, []).append(Change(op=item.op, urn=item.urn))
    return dict(sorted(grouped.items()))
