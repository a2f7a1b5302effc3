"""How a StackReference name written in a program resolves to a stack path.

A program names another stack as `org/project/stack`, or `org/stack` (the referencing
stack's project), or just `stack` (the referencing stack's organization and project).
"""

from __future__ import annotations

StackPath = tuple[str, str, str]


def resolve_reference(name: str, organization: str, project: str) -> StackPath | None:
    """The (organization, project, stack) a name read by a stack at org/project points to."""
    parts = name.split("/")
    if not all(parts):
        return None
    if len(parts) == 3:
        return parts[0], parts[1], parts[2]
    if len(parts) == 2:
        return parts[0], project, parts[1]
    if len(parts) == 1:
        return organization, project, parts[0]
    return None


def reference_names(path: StackPath) -> list[str]:
    """Every name under which a program may refer to the stack at `path`."""
    organization, project, stack = path
    return [f"{organization}/{project}/{stack}", f"{organization}/{stack}", stack]
