"""Update-failure diagnosis: engine events folded into failures and matched to known causes."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from services.copilot.failure_patterns import GENERIC_PATTERN, PATTERNS, Pattern

# The root resource every program registers; errors attached to it are program-level.
STACK_RESOURCE_TYPE = "pulumi:pulumi:Stack"
# Quoted error lines longer than this are cut; provider errors can embed whole API responses.
MAX_QUOTE_LENGTH = 300

# Pulumi's raw colour directives (`<{%reset%}>`) and terminal escapes that survive `color: raw`.
_COLOR_DIRECTIVE = re.compile(r"<\{%[^%]*%\}>|\x1b\[[0-9;]*[A-Za-z]")
# Lines that only say that something failed, not why.
_NOISE = re.compile(
    r"^(error:\s*)?((update|preview|refresh|destroy|deployment) failed|"
    r"\d+ errors? occurred:?|one or more errors occurred\.?)$",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class Failure:
    """One resource whose step failed, with the error messages the engine reported for it."""

    urn: str
    type: str
    op: str
    messages: tuple[str, ...]


@dataclass(frozen=True)
class Diagnosis:
    """What an update's events say about its outcome."""

    succeeded: bool
    failures: tuple[Failure, ...]
    general_errors: tuple[str, ...]
    matches: tuple[tuple[Failure | None, Pattern], ...]
    summary_changes: Mapping[str, int]


def match_pattern(text: str) -> Pattern | None:
    """The highest-priority known pattern matching `text`, or None."""
    return next((pattern for pattern in PATTERNS if pattern.key_line(text) is not None), None)


def clean_message(message: str) -> str:
    """A diagnostic's text without colour directives and surrounding whitespace."""
    return _COLOR_DIRECTIVE.sub("", message).strip()


def urn_name(urn: str) -> str:
    """The logical name at the end of a URN (the whole string if it is not a URN)."""
    parts = urn.split("::", 3)
    return parts[3] if len(parts) == 4 else urn


def urn_type(urn: str) -> str:
    """The resource type in a URN, without its parent chain."""
    parts = urn.split("::", 3)
    return parts[2].rsplit("$", 1)[-1] if len(parts) == 4 else ""


def ordered_events(events: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Events by sequence number, duplicates (retried batches) dropped, unnumbered ones last."""
    numbered: dict[int, Mapping[str, Any]] = {}
    unnumbered: list[Mapping[str, Any]] = []
    for event in events:
        sequence = event.get("sequence")
        if isinstance(sequence, int) and not isinstance(sequence, bool):
            numbered.setdefault(sequence, event)
        else:
            unnumbered.append(event)
    return [numbered[sequence] for sequence in sorted(numbered)] + unnumbered


@dataclass
class _FailureDraft:
    urn: str
    type: str = ""
    op: str = ""
    messages: list[str] = field(default_factory=list)
    has_failed_step: bool = False


def diagnose(events: Sequence[Mapping[str, Any]]) -> Diagnosis:
    """Fold an update's engine events into its outcome, failures and likely causes."""
    drafts: dict[str, _FailureDraft] = {}
    steps: dict[str, tuple[str, str]] = {}
    general_errors: list[str] = []
    result: str | None = None
    is_cancelled = False
    changes: dict[str, int] = {}

    for event in ordered_events(events):
        if pre := _member(event, "resourcePreEvent"):
            metadata = _member(pre, "metadata")
            if urn := _text(metadata, "urn"):
                steps[urn] = (_text(metadata, "op"), _text(metadata, "type"))
        elif failed := _member(event, "resOpFailedEvent"):
            metadata = _member(failed, "metadata")
            if urn := _text(metadata, "urn"):
                draft = drafts.setdefault(urn, _FailureDraft(urn))
                draft.has_failed_step = True
                draft.op = _text(metadata, "op") or draft.op
                draft.type = _text(metadata, "type") or draft.type
        elif diagnostic := _member(event, "diagnosticEvent"):
            if _text(diagnostic, "severity") != "error":
                continue
            message = clean_message(_text(diagnostic, "message"))
            if not message:
                continue
            urn = _text(diagnostic, "urn")
            if not urn or urn_type(urn) == STACK_RESOURCE_TYPE:
                _append_once(general_errors, message)
            else:
                _append_once(drafts.setdefault(urn, _FailureDraft(urn)).messages, message)
        elif error := _member(event, "errorEvent"):
            if message := clean_message(_text(error, "error")):
                _append_once(general_errors, message)
        elif "cancelEvent" in event:
            is_cancelled = True
        elif summary := _member(event, "summaryEvent"):
            result = _text(summary, "result") or result
            changes = _changes(_member(summary, "resourceChanges"))

    failures = tuple(_finish(draft, steps.get(draft.urn, ("", ""))) for draft in drafts.values())
    if result is not None:
        succeeded = result == "succeeded" and not failures
    else:
        succeeded = not (failures or general_errors or is_cancelled)
    return Diagnosis(
        succeeded=succeeded,
        failures=failures,
        general_errors=tuple(general_errors),
        matches=_matches(failures, general_errors, succeeded),
        summary_changes=MappingProxyType(changes),
    )


def _finish(draft: _FailureDraft, step: tuple[str, str]) -> Failure:
    op, resource_type = step
    return Failure(
        urn=draft.urn,
        type=draft.type or resource_type or urn_type(draft.urn),
        op=draft.op or op or "unknown",
        messages=tuple(draft.messages),
    )


def _matches(
    failures: Sequence[Failure], general_errors: Sequence[str], succeeded: bool
) -> tuple[tuple[Failure | None, Pattern], ...]:
    matches: list[tuple[Failure | None, Pattern]] = [
        (failure, match_pattern("\n".join(failure.messages)) or GENERIC_PATTERN)
        for failure in failures
    ]
    seen = {pattern.key for _, pattern in matches}
    for message in general_errors:
        pattern = match_pattern(message)
        if pattern is not None and pattern.key not in seen:
            seen.add(pattern.key)
            matches.append((None, pattern))
    if not matches and not succeeded:
        matches.append((None, GENERIC_PATTERN))
    return tuple(matches)


def explain(diagnosis: Diagnosis, stack: str, version: int) -> str:
    """A markdown account of what failed, why, and how to resolve it."""
    changes = _describe_changes(diagnosis.summary_changes)
    if diagnosis.succeeded:
        detail = f": {changes}" if changes else ""
        return (
            f"The update to stack `{stack}` (version {version}) succeeded{detail}. Nothing to fix."
        )

    count = len(diagnosis.failures)
    headline = f"The update to stack `{stack}` (version {version}) failed."
    if count:
        headline += f" {count} resource{'s' if count != 1 else ''} failed."
    if changes:
        headline += f" Resource changes recorded: {changes}."
    sections = [headline]
    for pattern, failures in _group_by_pattern(diagnosis.matches):
        sections.append(_explain_pattern(pattern, failures, diagnosis.general_errors))
    others = [line for line in diagnosis.general_errors if not _is_explained(line, diagnosis)]
    if others:
        sections.append(
            "**Other errors reported by the engine:**\n"
            + "\n".join(f"> {_quote(line)}" for line in others)
        )
    return "\n\n".join(sections)


def _group_by_pattern(
    matches: Sequence[tuple[Failure | None, Pattern]],
) -> list[tuple[Pattern, list[Failure]]]:
    groups: dict[str, tuple[Pattern, list[Failure]]] = {}
    for failure, pattern in matches:
        _, failures = groups.setdefault(pattern.key, (pattern, []))
        if failure is not None:
            failures.append(failure)
    return list(groups.values())


def _explain_pattern(
    pattern: Pattern, failures: Sequence[Failure], general_errors: Sequence[str]
) -> str:
    lines = [f"### {pattern.title}"]
    if failures:
        lines.append("**What failed:**")
        lines.extend(f"- `{urn_name(f.urn)}` ({f.type}, {f.op}): `{f.urn}`" for f in failures)
    else:
        lines.append("**What failed:** the program itself, before or outside any one resource.")
    texts = [m for f in failures for m in f.messages] or list(general_errors)
    quoted = _key_quote(pattern, texts)
    why = f"**Why:** {pattern.explanation}"
    if quoted:
        why += f" The key error line:\n> {_quote(quoted)}"
    lines.extend(["", why, "", "**How to resolve the issue:**"])
    lines.extend(f"- {step}" for step in pattern.remediation)
    lines.append(f"- For background, see the **{pattern.doc_hint}** concept.")
    return "\n".join(lines)


def _key_quote(pattern: Pattern, texts: Sequence[str]) -> str:
    for text in texts:
        if line := pattern.key_line(text):
            return line
    # The generic pattern has no signals: quote the first substantive line instead.
    for text in texts:
        for line in text.splitlines():
            if line.strip() and not _NOISE.match(line.strip()):
                return line.strip()
    return ""


def _is_explained(line: str, diagnosis: Diagnosis) -> bool:
    """Whether a general error is noise or already quoted under a program-level pattern."""
    if _NOISE.match(line):
        return True
    return any(
        failure is None and pattern.key_line(line) is not None
        for failure, pattern in diagnosis.matches
    )


def _describe_changes(changes: Mapping[str, int]) -> str:
    return ", ".join(f"{count} {kind}" for kind, count in changes.items() if count)


def _quote(line: str) -> str:
    line = " ".join(line.split())
    return line if len(line) <= MAX_QUOTE_LENGTH else line[: MAX_QUOTE_LENGTH - 1] + "…"


def _append_once(items: list[str], item: str) -> None:
    if item not in items:
        items.append(item)


def _member(container: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = container.get(key)
    return value if isinstance(value, Mapping) else {}


def _text(container: Mapping[str, Any], key: str) -> str:
    value = container.get(key)
    return value if isinstance(value, str) else ""


def _changes(raw: Mapping[str, Any]) -> dict[str, int]:
    return {
        kind: count
        for kind, count in raw.items()
        if isinstance(count, int) and not isinstance(count, bool)
    }
