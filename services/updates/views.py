"""Read views computed from stored data: resources of a version, StackReference names, and
the digest and CLI-like text summary of an update's engine events. Pure functions only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson

from services.common.errors import NotFound

STACK_TYPE = "pulumi:pulumi:Stack"
STACK_REFERENCE_TYPE = "pulumi:pulumi:StackReference"
# Longest StackReference name recorded (the column's width); longer names are skipped.
MAX_REFERENCE_NAME = 512

# Operations whose resources remain in the state afterwards (a preview's projected count).
REMAINING_OPS: frozenset[str] = frozenset({"same", "create", "update", "replace", "read", "import"})
# The order the CLI lists change counts in; anything else follows, `same` comes last.
OP_ORDER: tuple[str, ...] = (
    "create",
    "update",
    "delete",
    "replace",
    "create-replacement",
    "delete-replaced",
    "read",
    "read-replacement",
    "import",
    "import-replacement",
    "refresh",
    "discard",
    "discard-replaced",
    "remove-pending-replace",
)
SYMBOLS: Mapping[str, str] = {
    "same": " ",
    "create": "+",
    "update": "~",
    "delete": "-",
    "replace": "+-",
    "create-replacement": "++",
    "delete-replaced": "--",
    "read": ">",
    "read-replacement": ">>",
    "refresh": "~",
    "import": "=",
    "import-replacement": "=>",
    "discard": "<",
    "discard-replaced": "<<",
}
DONE_WORDS: Mapping[str, str] = {
    "same": "",
    "create": "created",
    "update": "updated",
    "delete": "deleted",
    "replace": "replaced",
    "create-replacement": "created replacement",
    "delete-replaced": "deleted original",
    "read": "read",
    "read-replacement": "read for replacement",
    "refresh": "refreshed",
    "import": "imported",
    "import-replacement": "imported replacement",
    "discard": "discarded",
    "discard-replaced": "discarded original",
}
ACTIVE_WORDS: Mapping[str, str] = {
    "create": "creating",
    "update": "updating",
    "delete": "deleting",
    "replace": "replacing",
    "read": "reading",
    "refresh": "refreshing",
    "import": "importing",
    "discard": "discarding",
}
HEADINGS: Mapping[str, str] = {
    "update": "Updating",
    "preview": "Previewing update",
    "refresh": "Refreshing",
    "destroy": "Destroying",
    "import": "Importing",
    "rename": "Renaming",
}


# -- resources ---------------------------------------------------------------------------------


def deployment_resources(text: bytes) -> list[dict[str, Any]]:
    """The resources of an UntypedDeployment text, in state order."""
    value = orjson.loads(text)
    deployment = value.get("deployment") if isinstance(value, dict) else None
    resources = deployment.get("resources") if isinstance(deployment, dict) else None
    if not isinstance(resources, list):
        return []
    return [resource for resource in resources if isinstance(resource, dict)]


def resource_view(resource: Mapping[str, Any]) -> dict[str, Any]:
    """A state resource as the REST `Resource` model: the SDK requires `custom`, `delete` and
    `dependencies`, which checkpoints omit when false or empty."""
    view = dict(resource)
    view.setdefault("custom", False)
    view.setdefault("delete", False)
    if not isinstance(view.get("dependencies"), list):
        view["dependencies"] = []
    return view


def resource_views(text: bytes, urn: str = "") -> list[bytes]:
    """Every resource of a deployment as JSON, or only the one with `urn` (NotFound if absent)."""
    resources = deployment_resources(text)
    if urn:
        resources = [resource for resource in resources if resource.get("urn") == urn]
        if not resources:
            raise NotFound("Not Found: Resource")
        # A state holds a URN once, except a pending-delete copy beside its replacement.
        resources = [min(resources, key=lambda resource: bool(resource.get("delete")))]
    return [orjson.dumps(resource_view(resource)) for resource in resources]


# -- stack references --------------------------------------------------------------------------


def stack_references(text: bytes) -> tuple[str, ...]:
    """The StackReference names a deployment reads; cheap when it has none (no parsing)."""
    if STACK_REFERENCE_TYPE.encode() not in text:
        return ()
    try:
        return references_in(deployment_resources(text))
    except orjson.JSONDecodeError:
        return ()


def references_in(resources: Iterable[Any]) -> tuple[str, ...]:
    names: set[str] = set()
    for resource in resources:
        if not isinstance(resource, dict) or resource.get("type") != STACK_REFERENCE_TYPE:
            continue
        if resource.get("delete"):
            continue
        for member in ("outputs", "inputs"):
            properties = resource.get(member)
            name = properties.get("name") if isinstance(properties, dict) else None
            if isinstance(name, str) and 0 < len(name) <= MAX_REFERENCE_NAME:
                names.add(name)
                break
    return tuple(sorted(names))


def deployment_references(deployment: Mapping[str, Any]) -> tuple[str, ...]:
    """StackReference names of a parsed deployment (the `deployment` member's value)."""
    resources = deployment.get("resources")
    return references_in(resources) if isinstance(resources, list) else ()


# -- engine events -----------------------------------------------------------------------------


@dataclass
class Step:
    urn: str
    type: str
    op: str
    parent: str
    is_done: bool = False
    is_failed: bool = False

    @property
    def name(self) -> str:
        return self.urn.rsplit("::", 1)[-1] if "::" in self.urn else self.urn


@dataclass(frozen=True)
class Diagnostic:
    urn: str
    severity: str
    message: str


@dataclass(frozen=True)
class UpdateDigest:
    """What an update's engine events say, folded in sequence order."""

    steps: tuple[Step, ...]
    resource_changes: Mapping[str, int]
    changes_by_type: Mapping[str, Mapping[str, int]]
    diagnostics: tuple[Diagnostic, ...]
    outputs: Mapping[str, Any] = field(default_factory=dict)
    duration_seconds: int | None = None
    is_cancelled: bool = False


def projected_count(changes: Mapping[str, int]) -> int:
    """Resources left once the changes apply: a preview's resource count."""
    return sum(count for op, count in changes.items() if op in REMAINING_OPS)


def _metadata(body: Any) -> Mapping[str, Any]:
    metadata = body.get("metadata") if isinstance(body, dict) else None
    return metadata if isinstance(metadata, dict) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


def digest(events: Iterable[bytes]) -> UpdateDigest:
    """Fold engine events (JSON, in sequence order) into steps, counts and diagnostics."""
    steps: dict[str, Step] = {}
    diagnostics: list[Diagnostic] = []
    outputs: dict[str, Any] = {}
    summary_changes: dict[str, int] | None = None
    duration: int | None = None
    cancelled = False
    for data in events:
        try:
            event = orjson.loads(data)
        except orjson.JSONDecodeError:
            continue
        if not isinstance(event, dict):
            continue
        if "resourcePreEvent" in event:
            metadata = _metadata(event["resourcePreEvent"])
            urn = _text(metadata.get("urn"))
            if not urn:
                continue
            state = metadata.get("new") or metadata.get("old") or {}
            parent = _text(state.get("parent")) if isinstance(state, dict) else ""
            step = steps.get(urn)
            if step is None:
                steps[urn] = Step(
                    urn, _text(metadata.get("type")), _text(metadata.get("op")), parent
                )
            else:
                step.op = _text(metadata.get("op")) or step.op
        elif "resOutputsEvent" in event:
            metadata = _metadata(event["resOutputsEvent"])
            urn = _text(metadata.get("urn"))
            step = steps.get(urn)
            if step is None and urn:
                step = steps[urn] = Step(
                    urn, _text(metadata.get("type")), _text(metadata.get("op")), ""
                )
            if step is not None:
                step.is_done = True
                new = metadata.get("new")
                if step.type == STACK_TYPE and isinstance(new, dict):
                    stack_outputs = new.get("outputs")
                    if isinstance(stack_outputs, dict):
                        outputs = stack_outputs
        elif "resOpFailedEvent" in event:
            urn = _text(_metadata(event["resOpFailedEvent"]).get("urn"))
            if urn in steps:
                steps[urn].is_failed = True
        elif "diagnosticEvent" in event:
            body = event["diagnosticEvent"]
            if not isinstance(body, dict) or body.get("severity") == "debug":
                continue
            message = _text(body.get("message")).rstrip("\n")
            if message:
                severity = _text(body.get("severity")) or "info"
                diagnostics.append(Diagnostic(_text(body.get("urn")), severity, message))
        elif "errorEvent" in event:
            body = event["errorEvent"]
            message = _text(body.get("error")) if isinstance(body, dict) else ""
            if message:
                diagnostics.append(Diagnostic("", "error", message))
        elif "summaryEvent" in event:
            body = event["summaryEvent"]
            if not isinstance(body, dict):
                continue
            changes = body.get("resourceChanges")
            if isinstance(changes, dict):
                summary_changes = {
                    str(op): count
                    for op, count in changes.items()
                    if isinstance(count, int) and not isinstance(count, bool)
                }
            seconds = body.get("durationSeconds")
            if isinstance(seconds, int) and not isinstance(seconds, bool):
                duration = seconds
        elif "cancelEvent" in event:
            cancelled = True
    counted = [step for step in steps.values() if step.op and not step.is_failed]
    by_type: dict[str, dict[str, int]] = {}
    step_changes: dict[str, int] = {}
    for step in counted:
        per_type = by_type.setdefault(step.type, {})
        per_type[step.op] = per_type.get(step.op, 0) + 1
        step_changes[step.op] = step_changes.get(step.op, 0) + 1
    return UpdateDigest(
        steps=tuple(steps.values()),
        resource_changes=summary_changes if summary_changes is not None else step_changes,
        changes_by_type=by_type,
        diagnostics=tuple(diagnostics),
        outputs=outputs,
        duration_seconds=duration,
        is_cancelled=cancelled,
    )


# -- text summary ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SummaryHeader:
    kind: str
    is_preview: bool
    stack_path: str
    result: str
    duration_seconds: int | None


def _ordered_ops(changes: Mapping[str, int]) -> list[str]:
    known = [op for op in OP_ORDER if changes.get(op)]
    others = sorted(op for op in changes if op not in OP_ORDER and op != "same" and changes[op])
    return known + others


def _status(step: Step, is_preview: bool) -> str:
    if step.is_failed:
        return f"**{ACTIVE_WORDS.get(step.op, step.op)} failed**"
    if step.op == "same":
        return ""
    if is_preview:
        return step.op
    return DONE_WORDS.get(step.op, step.op)


def _tree(steps: Sequence[Step]) -> list[tuple[str, Step]]:
    """Steps depth first under their parents, each with its tree prefix."""
    known = {step.urn for step in steps}
    children: dict[str, list[Step]] = {}
    roots: list[Step] = []
    for step in steps:
        if step.parent and step.parent in known and step.parent != step.urn:
            children.setdefault(step.parent, []).append(step)
        else:
            roots.append(step)
    rows: list[tuple[str, Step]] = []
    seen: set[str] = set()

    def visit(step: Step, indent: str, is_last: bool, depth: int) -> None:
        if step.urn in seen:
            return
        seen.add(step.urn)
        branch = "" if depth == 0 else ("└─ " if is_last else "├─ ")
        rows.append((indent + branch, step))
        below = children.get(step.urn, [])
        extra = "" if depth == 0 else ("   " if is_last else "│  ")
        for position, child in enumerate(below):
            visit(child, indent + extra, position == len(below) - 1, depth + 1)

    for root in roots:
        visit(root, "", True, 0)
    return rows


def _counts_note(diagnostics: Sequence[Diagnostic], urn: str) -> str:
    errors = sum(1 for d in diagnostics if d.urn == urn and d.severity.startswith("error"))
    warnings = sum(1 for d in diagnostics if d.urn == urn and d.severity == "warning")
    notes = []
    if errors:
        notes.append(f"{errors} error{'s' if errors > 1 else ''}")
    if warnings:
        notes.append(f"{warnings} warning{'s' if warnings > 1 else ''}")
    return "; ".join(notes)


def render_summary(header: SummaryHeader, digest: UpdateDigest) -> str:
    """The text `pulumi up` prints at the end: resource tree, diagnostics, outputs, counts."""
    heading = HEADINGS.get(header.kind, header.kind.capitalize())
    if header.is_preview:
        heading = "Previewing " + ("update" if header.kind == "preview" else header.kind)
    lines = [f"{heading} ({header.stack_path}):"]
    rows = _tree(digest.steps)
    if rows:
        table = [
            (
                SYMBOLS.get(step.op, step.op[:2]),
                prefix + step.type,
                step.name,
                _status(step, header.is_preview),
                _counts_note(digest.diagnostics, step.urn),
            )
            for prefix, step in rows
        ]
        type_width = max(len("Type"), *(len(row[1]) for row in table))
        name_width = max(len("Name"), *(len(row[2]) for row in table))
        lines.append(f"     {'Type'.ljust(type_width)}  {'Name'.ljust(name_width)}  Status")
        for symbol, type_cell, name, status, note in table:
            line = f" {symbol.ljust(3)} {type_cell.ljust(type_width)}  {name.ljust(name_width)}"
            line += f"  {status}" if status or note else ""
            if note:
                line += f"{'     ' if status else ''}{note}"
            lines.append(line.rstrip())
    if digest.diagnostics:
        lines += ["", "Diagnostics:"]
        names = {step.urn: step for step in digest.steps}
        grouped: dict[str, list[Diagnostic]] = {}
        for diagnostic in digest.diagnostics:
            grouped.setdefault(diagnostic.urn, []).append(diagnostic)
        for urn, entries in grouped.items():
            step = names.get(urn)
            if step is not None:
                lines.append(f"  {step.type} ({step.name}):")
            elif urn:
                lines.append(f"  {urn}:")
            else:
                lines.append("  pulumi:")
            for entry in entries:
                severity = entry.severity.split("#", 1)[0]
                for position, text in enumerate(entry.message.splitlines() or [""]):
                    lead = f"{severity}: " if position == 0 else "    "
                    lines.append(f"    {lead}{text}".rstrip())
    if digest.outputs and not header.is_preview:
        lines += ["", "Outputs:"]
        for key in sorted(digest.outputs):
            rendered = orjson.dumps(digest.outputs[key]).decode()
            lines.append(f"    {key}: {rendered}")
    lines += ["", "Resources:"]
    changes = digest.resource_changes
    for op in _ordered_ops(changes):
        word = op if header.is_preview else DONE_WORDS.get(op, op)
        count = f"{changes[op]} to {word}" if header.is_preview else f"{changes[op]} {word}"
        lines.append(f"    {SYMBOLS.get(op, '').strip() or ' '} {count}".rstrip())
    if changes.get("same"):
        lines.append(f"    {changes['same']} unchanged")
    if not any(changes.values()):
        lines.append("    no changes")
    if header.duration_seconds is not None:
        lines += ["", f"Duration: {_duration(header.duration_seconds)}"]
    lines += ["", f"Result: {header.result}"]
    return "\n".join(lines) + "\n"


def _duration(seconds: int) -> str:
    seconds = max(seconds, 0)
    minutes, rest = divmod(seconds, 60)
    return f"{minutes}m{rest}s" if minutes else f"{rest}s"
