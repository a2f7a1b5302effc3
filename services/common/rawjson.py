"""Exact bytes of top-level JSON members, so payloads are stored as the client sent them."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Collection, Iterator
from typing import Any

# JSON's four whitespace characters; str.isspace() would also accept others Go refuses.
_WHITESPACE = re.compile(r"[ \t\n\r]*")


def fold_name(name: str) -> str:
    """Fold a member name so that names Go's encoding/json treats as equal compare equal."""
    if name.isascii():
        return name.upper()
    return "".join(_fold_char(char) for char in name)


def _fold_char(char: str) -> str:
    # Go folds each rune to one representative of its simple case-folding orbit; lower() then
    # upper() reaches a single representative for the same orbits except where Python maps one
    # character to several (ß -> SS, İ -> i̇), which simple folding leaves alone.
    lower = char.lower()
    if len(lower) != 1:
        return char
    upper = lower.upper()
    return upper if len(upper) == 1 else lower


def raw_member(document: bytes, key: str) -> bytes | None:
    """Exact bytes of top-level member `key`: exact name first, else Go's case-folded match."""
    return raw_members(document, (key,)).get(key)


def raw_members(document: bytes, keys: Collection[str]) -> dict[str, bytes]:
    """Exact bytes of each requested top-level member that is present, keyed as requested."""
    text = _decode(document)
    folded = {key: fold_name(key) for key in keys}
    exact: dict[str, tuple[int, int]] = {}
    loose: dict[str, tuple[int, int]] = {}
    for name, start, end in _top_level_members(text):
        # A duplicate name keeps its first value: the rule is "first match", exact or folded.
        if name in folded and name not in exact:
            exact[name] = (start, end)
        if len(loose) < len(folded):
            name_folded = fold_name(name)
            for key, key_folded in folded.items():
                if key not in loose and key_folded == name_folded:
                    loose[key] = (start, end)
    # For an ASCII text character offsets are byte offsets, so slicing the input avoids an encode.
    is_ascii = text.isascii()
    found: dict[str, bytes] = {}
    for key in keys:
        span = exact.get(key) or loose.get(key)
        if span is None:
            continue
        start, end = span
        found[key] = document[start:end] if is_ascii else text[start:end].encode("utf-8")
    return found


def decode_members(
    document: bytes, keys: Collection[str], *, unbuilt: Collection[str] = ()
) -> dict[str, tuple[Any, bytes]]:
    """Each requested top-level member (exact name, first occurrence): its value and exact bytes.

    One pass over the document: requested members are built while they are scanned (the scan
    that finds a value's end also yields the value), every other member is only validated.
    Members named in `unbuilt` are only validated too: their value reads None.
    """
    text = _decode(document)
    builder = json.JSONDecoder(parse_constant=_refuse_constant, parse_float=_finite_float)
    built = [key for key in keys if key not in unbuilt]
    spans: dict[str, tuple[Any, int, int]] = {}
    for name, start, end, value in _scan_members(text, builder, built):
        if name in keys and name not in spans:
            spans[name] = (value, start, end)
    is_ascii = text.isascii()
    return {
        name: (value, document[start:end] if is_ascii else text[start:end].encode("utf-8"))
        for name, (value, start, end) in spans.items()
    }


def _decode(document: bytes) -> str:
    try:
        return document.decode("utf-8")
    except UnicodeDecodeError as error:
        raise ValueError(f"document is not valid UTF-8 (byte {error.start})") from None


def _top_level_members(text: str) -> Iterator[tuple[str, int, int]]:
    """Yield (name, value start, value end) per top-level member, validating the whole document."""
    for name, start, end, _ in _scan_members(text, None, ()):
        yield name, start, end


def _scan_members(
    text: str, builder: json.JSONDecoder | None, built: Collection[str]
) -> Iterator[tuple[str, int, int, Any]]:
    """Yield (name, value start, value end, value) per top-level member, validating the whole
    document; the value is built (by `builder`) only for names in `built`, else None."""
    # The C scanner validates and finds each value's end; only top-level members loop in Python.
    # Discarding each nested object as soon as it is parsed makes the scan about three times
    # faster than building the tree (no large dicts, far less garbage-collector work).
    decoder = json.JSONDecoder(
        object_pairs_hook=_discard, parse_constant=_refuse_constant, parse_float=_finite_float
    )
    index = _skip(text, 0)
    if text[index : index + 1] != "{":
        raise ValueError("document is not a JSON object")
    index = _skip(text, index + 1)
    if text[index : index + 1] == "}":
        index += 1
    else:
        while True:
            if text[index : index + 1] != '"':
                raise ValueError(f"expected a member name at character {index}")
            try:
                name, index = decoder.raw_decode(text, index)
            except json.JSONDecodeError as error:
                raise ValueError(f"invalid member name: {error}") from None
            index = _skip(text, index)
            if text[index : index + 1] != ":":
                raise ValueError(f"expected ':' at character {index}")
            start = _skip(text, index + 1)
            member_decoder = builder if builder is not None and name in built else decoder
            try:
                value, end = member_decoder.raw_decode(text, start)
            except json.JSONDecodeError as error:
                raise ValueError(f"invalid value of member {name!r}: {error}") from None
            except RecursionError:
                raise ValueError(f"value of member {name!r} is nested too deeply") from None
            yield name, start, end, (value if member_decoder is not decoder else None)
            index = _skip(text, end)
            separator = text[index : index + 1]
            index += 1
            if separator == "}":
                break
            if separator != ",":
                raise ValueError(f"expected ',' or '}}' at character {index - 1}")
            index = _skip(text, index)
    if _skip(text, index) != len(text):
        raise ValueError(f"unexpected data after the object at character {index}")


def _skip(text: str, index: int) -> int:
    match = _WHITESPACE.match(text, index)
    assert match is not None  # the pattern matches the empty string
    return match.end()


def _discard(pairs: list[tuple[str, Any]]) -> None:
    return None


def _finite_float(literal: str) -> float:
    # Python reads 1e400 as infinity; JSON parsers that bound doubles (Go, orjson) refuse it.
    value = float(literal)
    if value in (math.inf, -math.inf):
        raise ValueError(f"number {literal} is out of range")
    return value


def _refuse_constant(name: str) -> None:
    # Python's json accepts NaN and Infinity; JSON (and Go) does not.
    raise ValueError(f"{name} is not valid JSON")
