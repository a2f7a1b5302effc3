"""Delta checkpoints (protocol §4.3): parse the CLI's text edits and apply them to a text."""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, Self

from services.common.errors import InvalidArgument
from services.common.rawjson import fold_name

# Large enough that the cached states stay small (160 for 10 MB), small enough that an edit
# at the end of the text rehashes at most 64 KiB it did not change.
DEFAULT_CHUNK_SIZE = 64 * 1024

_MISSING = object()


@dataclass(frozen=True)
class TextEdit:
    """Replace bytes [start, end) of the previous text with `new_text`."""

    start: int
    end: int
    new_text: bytes


class Hasher(Protocol):
    """The part of a hashlib object WorkingText uses; injectable so tests can count hashed bytes."""

    def update(self, data: bytes | bytearray | memoryview, /) -> None: ...

    def copy(self) -> Self: ...

    def hexdigest(self) -> str: ...


def parse_edits(raw: bytes | list[Any]) -> tuple[TextEdit, ...]:
    """Parse a `deploymentDelta` into edits sorted by offset; refuse malformed or overlapping."""
    items = _load(raw) if isinstance(raw, bytes | bytearray | memoryview) else raw
    if items is None:
        # What Go decodes from `null`; the CLI sends `[]` for an empty delta.
        return ()
    if not isinstance(items, list):
        raise _bad("the delta must be a JSON array of edits")
    edits = [_parse_edit(index, item) for index, item in enumerate(items)]
    # Stable, and by end too: an insertion sorts before a replacement starting at the same offset.
    edits.sort(key=lambda edit: (edit.start, edit.end))
    for previous, current in itertools.pairwise(edits):
        if current.start < previous.end:
            raise _bad(
                f"edits overlap: [{previous.start}, {previous.end}) and "
                f"[{current.start}, {current.end})"
            )
    return tuple(edits)


def apply_edits(base: bytes, edits: Sequence[TextEdit]) -> bytes:
    """Return `base` with sorted, non-overlapping `edits` applied (the pure reference)."""
    _check_edits(edits, len(base))
    if not edits:
        return bytes(base)
    return _splice(base, edits, 0)


class WorkingText:
    """A text being edited plus SHA-256 states cached every `chunk_size` bytes."""

    # With the state at every chunk boundary known, an edit at offset o costs hashing from the
    # last boundary <= o to the end, not the whole text. Not safe for concurrent use: the writes
    # of one update are sequential anyway.

    def __init__(
        self,
        data: bytes,
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        new_hasher: Callable[[], Hasher] = hashlib.sha256,
    ) -> None:
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        self._chunk_size = chunk_size
        self._buffer = bytearray(data)
        # _states[i] has hashed bytes [0, i * chunk_size); len(_states) == size // chunk_size + 1.
        # A stored state is never updated in place (only copies are), so copies of this list
        # may share them.
        self._states: list[Hasher] = [new_hasher()]
        states, self._digest = self._hash_from(0, self._buffer)
        self._states.extend(states)

    @property
    def size(self) -> int:
        """Length of the current text in bytes."""
        return len(self._buffer)

    @property
    def chunk_size(self) -> int:
        """Distance in bytes between cached hash states."""
        return self._chunk_size

    def sha256_hex(self) -> str:
        """Lowercase hex SHA-256 of the current text."""
        return self._digest

    def to_bytes(self) -> bytes:
        """A copy of the current text."""
        return bytes(self._buffer)

    def copy(self) -> WorkingText:
        """An independent working text with the same content and cached states."""
        clone = WorkingText.__new__(WorkingText)
        clone._chunk_size = self._chunk_size
        clone._buffer = bytearray(self._buffer)
        clone._states = list(self._states)
        clone._digest = self._digest
        return clone

    def apply(self, edits: Sequence[TextEdit], expected_sha256: str) -> bool:
        """Apply sorted edits if the result hashes to `expected_sha256`; else change nothing.

        The expected hash's form is the caller's to check (`bodies.checked_hash`, once per
        write): one that is not a SHA-256 simply never matches.
        """
        _check_edits(edits, len(self._buffer))
        expected = expected_sha256.lower()
        if not edits:
            return expected == self._digest
        chunk = edits[0].start // self._chunk_size
        boundary = chunk * self._chunk_size
        # The new text from the boundary on is built and hashed before the buffer is touched,
        # so a mismatch needs no undo; building it is one pass however many edits there are.
        tail = _splice(self._buffer, edits, boundary)
        states, digest = self._hash_from(chunk, tail)
        if digest != expected:
            return False
        self._buffer[boundary:] = tail
        del self._states[chunk + 1 :]
        self._states.extend(states)
        self._digest = digest
        return True

    def _hash_from(self, chunk: int, region: bytes | bytearray) -> tuple[list[Hasher], str]:
        """Hash `region`, the text from boundary `chunk` on; return boundary states and digest."""
        size = self._chunk_size
        hasher = self._states[chunk].copy()
        states: list[Hasher] = []
        with memoryview(region) as view:
            whole = len(view) - len(view) % size
            for offset in range(0, whole, size):
                hasher.update(view[offset : offset + size])
                states.append(hasher.copy())
            hasher.update(view[whole:])
        return states, hasher.hexdigest()


def _splice(source: bytes | bytearray, edits: Sequence[TextEdit], origin: int) -> bytes:
    """The text from `origin` on with `edits` applied; `origin` must not follow the first edit."""
    with memoryview(source) as view:
        pieces: list[bytes | memoryview] = []
        position = origin
        for edit in edits:
            pieces.append(view[position : edit.start])
            pieces.append(edit.new_text)
            position = edit.end
        pieces.append(view[position:])
        joined = b"".join(pieces)
        # The slices pin `source`; a bytearray cannot be resized until they are released.
        for piece in pieces:
            if isinstance(piece, memoryview):
                piece.release()
    return joined


def _check_edits(edits: Sequence[TextEdit], size: int) -> None:
    """Refuse edits that are out of order, overlapping or beyond a text of `size` bytes."""
    position = 0
    for edit in edits:
        if edit.start < position or edit.end < edit.start:
            raise _bad(f"edits must be sorted and must not overlap (at offset {edit.start})")
        position = edit.end
    if position > size:
        raise _bad(f"edit ends at offset {position}, beyond the previous text of {size} bytes")


def _load(raw: bytes | bytearray | memoryview) -> Any:
    try:
        text = bytes(raw).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad("the delta is not valid UTF-8") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError):
        raise _bad("the delta is not valid JSON") from None


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def _parse_edit(index: int, item: Any) -> TextEdit:
    where = f"edit {index}"
    if not isinstance(item, dict):
        raise _bad(f"{where} is not an object")
    span = _member(item, "Span")
    if not isinstance(span, dict):
        raise _bad(f"{where}: Span must be an object")
    start = _offset(where, span, "start")
    end = _offset(where, span, "end")
    if end < start:
        raise _bad(f"{where}: end offset {end} precedes start offset {start}")
    new_text = _member(item, "NewText")
    if new_text is _MISSING or new_text is None:
        new_text = ""
    if not isinstance(new_text, str):
        raise _bad(f"{where}: NewText must be a string")
    return TextEdit(start, end, _utf8(new_text))


def _offset(where: str, span: dict[str, Any], name: str) -> int:
    point = _member(span, name)
    if not isinstance(point, dict):
        raise _bad(f"{where}: Span.{name} must be an object")
    offset = _member(point, "offset")
    # bool is an int subclass; Go would refuse true as much as 1.5.
    if not isinstance(offset, int) or isinstance(offset, bool) or offset < 0:
        raise _bad(f"{where}: Span.{name}.offset must be a non-negative integer")
    return offset


def _member(obj: dict[str, Any], name: str) -> Any:
    """The value under `name`, else under the first name Go's case folding equates with it."""
    if name in obj:
        return obj[name]
    folded = fold_name(name)
    for key, value in obj.items():
        if fold_name(key) == folded:
            return value
    return _MISSING


def _utf8(text: str) -> bytes:
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError:
        # An unpaired \ud800-style escape: Go decodes it to U+FFFD, so the bytes (and the hash
        # the CLI expects) match only if we do the same.
        repaired = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
        return repaired.encode("utf-8")


def _bad(detail: str) -> InvalidArgument:
    return InvalidArgument(f"Bad Request: invalid checkpoint delta: {detail}")
