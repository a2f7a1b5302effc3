"""The verbatim+delta persistence mode's snapshot text and the edits between two of them."""

from __future__ import annotations

import hashlib
from typing import Any, Final

RESOURCES_OPEN: Final = b',"resources":['
TEXT_CLOSE: Final = b"}}"
RESOURCES_CLOSE: Final = b"]}}"


class SnapshotText:
    """The CLI's compact snapshot text, kept as pieces so an append costs O(resource).

    Layout (protocol doc §4.3): `{"version":3,"deployment":{"manifest":…,"secrets_providers":…,
    "metadata":{}[,"resources":[R1,R2,…]]}}` – `resources` omitted while empty, and pending
    operations never present (≤ 9 in flight).
    """

    def __init__(self, manifest_json: bytes, secrets_json: bytes) -> None:
        self.head = (
            b'{"version":3,"deployment":{"manifest":'
            + manifest_json
            + b',"secrets_providers":'
            + secrets_json
            + b',"metadata":{}'
        )
        self.parts: list[bytes] = []
        self.size = len(self.head) + len(TEXT_CLOSE)
        # SHA-256 of everything before `]}}` (only while there are resources).
        self._prefix = hashlib.sha256()

    def text(self) -> bytes:
        if not self.parts:
            return self.head + TEXT_CLOSE
        return self.head + RESOURCES_OPEN + b",".join(self.parts) + RESOURCES_CLOSE

    def sha256(self) -> str:
        if not self.parts:
            return hashlib.sha256(self.head + TEXT_CLOSE).hexdigest()
        digest = self._prefix.copy()
        digest.update(RESOURCES_CLOSE)
        return digest.hexdigest()

    def append(self, resource: bytes) -> list[dict[str, Any]]:
        """Add a resource at the end; returns the edit against the previous text."""
        if not self.parts:
            offset = len(self.head)
            new_text = RESOURCES_OPEN + resource + b"]"
            self._prefix = hashlib.sha256(self.head + RESOURCES_OPEN + resource)
        else:
            offset = self.size - len(RESOURCES_CLOSE)
            new_text = b"," + resource
            self._prefix.update(new_text)
        self.parts.append(resource)
        self.size += len(new_text)
        return [edit(offset, offset, new_text)]

    def replace(self, index: int, resource: bytes) -> list[dict[str, Any]]:
        """Replace one resource in place (stack outputs); rehashes the text once."""
        start = (
            len(self.head)
            + len(RESOURCES_OPEN)
            + sum(len(part) for part in self.parts[:index])
            + index
        )
        end = start + len(self.parts[index])
        self.size += len(resource) - len(self.parts[index])
        self.parts[index] = resource
        text = self.text()
        self._prefix = hashlib.sha256(text[: -len(RESOURCES_CLOSE)])
        return [edit(start, end, resource)]


def edit(start: int, end: int, new_text: bytes) -> dict[str, Any]:
    """One gotextdiff.TextEdit as the CLI encodes it (byte offsets; line/column unused)."""
    return {
        "Span": {
            "uri": "",
            "start": {"line": 1, "column": 0, "offset": start},
            "end": {"line": 1, "column": 0, "offset": end},
        },
        "NewText": new_text.decode(),
    }
