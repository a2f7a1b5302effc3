"""Delta checkpoints: edit parsing, the pure splice, and the incrementally hashed working text."""

from __future__ import annotations

import hashlib
import json
from typing import Any, Self

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.updates.delta import (
    DEFAULT_CHUNK_SIZE,
    Hasher,
    TextEdit,
    WorkingText,
    apply_edits,
    parse_edits,
)

# Multi-byte UTF-8 (offsets may split a character: the server works on bytes) and raw bytes.
texts = st.one_of(
    st.text(max_size=300).map(lambda text: text.encode("utf-8")),
    st.binary(max_size=300),
)
new_texts = st.text(max_size=40).map(lambda text: text.encode("utf-8"))
chunk_sizes = st.sampled_from([1, 2, 3, 5, 16, 64])


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def naive_apply(base: bytes, edits: list[TextEdit] | tuple[TextEdit, ...]) -> bytes:
    """Splice one edit at a time, last first, so earlier offsets stay valid."""
    text = base
    for edit in reversed(edits):
        text = text[: edit.start] + edit.new_text + text[edit.end :]
    return text


@st.composite
def edits_for(draw: st.DrawFn, size: int) -> list[TextEdit]:
    """Sorted, non-overlapping edits against a text of `size` bytes (equal points: insertions)."""
    points = sorted(draw(st.lists(st.integers(0, size), max_size=12)))
    pairs = zip(points[0::2], points[1::2], strict=False)
    return [TextEdit(start, end, draw(new_texts)) for start, end in pairs]


def edit_json(edit: TextEdit) -> dict[str, Any]:
    """An edit the way the CLI marshals a gotextdiff.TextEdit."""
    return {
        "Span": {
            "uri": "",
            "start": {"line": 1, "column": 0, "offset": edit.start},
            "end": {"line": 1, "column": 0, "offset": edit.end},
        },
        "NewText": edit.new_text.decode("utf-8"),
    }


class CountingHasher:
    """SHA-256 that counts the bytes fed to it (shared by all its copies)."""

    def __init__(self, inner: Any, fed: list[int]) -> None:
        self._inner = inner
        self._fed = fed

    def update(self, data: bytes | bytearray | memoryview, /) -> None:
        self._fed[0] += memoryview(data).nbytes
        self._inner.update(data)

    def copy(self) -> Self:
        return type(self)(self._inner.copy(), self._fed)

    def hexdigest(self) -> str:
        return str(self._inner.hexdigest())


# -- apply -------------------------------------------------------------------------------


@given(st.data(), texts, chunk_sizes)
def test_working_text_agrees_with_the_references(
    data: st.DataObject, base: bytes, chunk_size: int
) -> None:
    edits = data.draw(edits_for(len(base)))
    expected = naive_apply(base, edits)
    assert apply_edits(base, edits) == expected

    text = WorkingText(base, chunk_size=chunk_size)
    assert text.sha256_hex() == sha(base)
    assert text.apply(edits, sha(expected))
    assert text.to_bytes() == expected
    assert text.size == len(expected)
    assert text.sha256_hex() == sha(expected)


@given(st.data(), texts, chunk_sizes)
def test_a_wrong_hash_changes_nothing(data: st.DataObject, base: bytes, chunk_size: int) -> None:
    edits = data.draw(edits_for(len(base)))
    wrong = sha(naive_apply(base, edits) + b"!")
    text = WorkingText(base, chunk_size=chunk_size)

    assert not text.apply(edits, wrong)
    assert text.to_bytes() == base
    assert text.sha256_hex() == sha(base)
    # The cached states survived too: a correct delta still applies.
    expected = naive_apply(base, edits)
    assert text.apply(edits, sha(expected).upper())
    assert text.sha256_hex() == sha(expected)


@given(st.data(), texts, chunk_sizes, st.integers(1, 12))
def test_repeated_applies_keep_the_states_right(
    data: st.DataObject, base: bytes, chunk_size: int, rounds: int
) -> None:
    text = WorkingText(base, chunk_size=chunk_size)
    model = base
    for _ in range(rounds):
        edits = data.draw(edits_for(len(model)))
        result = naive_apply(model, edits)
        if data.draw(st.booleans()):
            assert not text.apply(edits, sha(result + b"?"))
        else:
            assert text.apply(edits, sha(result))
            model = result
        assert text.to_bytes() == model
        assert text.sha256_hex() == sha(model)
    # Rebuilding from scratch gives the same hash the incremental states gave.
    assert WorkingText(text.to_bytes(), chunk_size=chunk_size).sha256_hex() == text.sha256_hex()


def test_shrinking_and_growing_across_chunk_boundaries() -> None:
    base = bytes(range(100))
    text = WorkingText(base, chunk_size=16)
    model = base
    steps = [
        [TextEdit(10, 90, b"")],  # shrink below several boundaries
        [TextEdit(5, 5, b"x" * 200)],  # grow across many
        [TextEdit(0, 1, b""), TextEdit(100, 150, "é€😀".encode())],
        [TextEdit(len(model) + 200 - 50, len(model) + 200 - 50, b"tail")],
        [TextEdit(0, 0, b"head"), TextEdit(31, 33, b""), TextEdit(48, 48, b"mid")],
    ]
    for edits in steps:
        edits = [edit for edit in edits if edit.end <= len(model)]
        result = naive_apply(model, edits)
        assert text.apply(edits, sha(result))
        model = result
        assert text.to_bytes() == model
        assert text.sha256_hex() == sha(model)


@given(st.data(), texts)
def test_copies_are_independent(data: st.DataObject, base: bytes) -> None:
    text = WorkingText(base, chunk_size=4)
    clone = text.copy()
    edits = data.draw(edits_for(len(base)))
    result = naive_apply(base, edits)
    assert clone.apply(edits, sha(result))
    assert text.to_bytes() == base
    assert text.sha256_hex() == sha(base)
    assert clone.to_bytes() == result
    # Both keep working from their own states.
    assert text.apply([TextEdit(len(base), len(base), b"!")], sha(base + b"!"))
    assert clone.apply([TextEdit(0, 0, b"?")], sha(b"?" + result))


def test_no_edits_only_checks_the_hash() -> None:
    text = WorkingText(b"abc")
    assert text.apply([], sha(b"abc"))
    assert not text.apply([], sha(b"abd"))
    assert text.to_bytes() == b"abc"


@pytest.mark.parametrize("expected", ["", "zz", "0" * 63, sha(b"ab") + "0", "g" * 64])
def test_malformed_hashes_never_match(expected: str) -> None:
    text = WorkingText(b"a")
    assert not text.apply([TextEdit(1, 1, b"b")], expected)
    assert text.to_bytes() == b"a"


@pytest.mark.parametrize(
    "edits",
    [
        [TextEdit(0, 4, b"")],  # beyond the text
        [TextEdit(4, 4, b"x")],  # insertion beyond the end
        [TextEdit(2, 3, b""), TextEdit(0, 1, b"")],  # unsorted
        [TextEdit(0, 2, b""), TextEdit(1, 3, b"")],  # overlapping
        [TextEdit(2, 1, b"")],  # end before start
        [TextEdit(-1, 1, b"")],  # negative
    ],
)
def test_invalid_edits_are_refused(edits: list[TextEdit]) -> None:
    text = WorkingText(b"abc", chunk_size=2)
    with pytest.raises(InvalidArgument) as info:
        text.apply(edits, sha(b""))
    assert info.value.message.startswith("Bad Request: ")
    assert text.to_bytes() == b"abc"
    assert text.sha256_hex() == sha(b"abc")
    with pytest.raises(InvalidArgument):
        apply_edits(b"abc", edits)


def test_an_edit_near_the_end_rehashes_only_the_tail() -> None:
    fed = [0]
    base = bytes(range(256)) * (4 * 1024 * 1024 // 256)

    def new_hasher() -> Hasher:
        return CountingHasher(hashlib.sha256(), fed)

    text = WorkingText(base, new_hasher=new_hasher)
    assert fed[0] == len(base)

    fed[0] = 0
    edit = TextEdit(len(base) - 100, len(base) - 50, b"replacement")
    result = apply_edits(base, [edit])
    assert text.apply([edit], sha(result))
    assert text.sha256_hex() == sha(result)
    # At most the partial chunk before the edit plus the new tail.
    assert fed[0] <= DEFAULT_CHUNK_SIZE + 100
    assert fed[0] == len(result) - (edit.start // DEFAULT_CHUNK_SIZE) * DEFAULT_CHUNK_SIZE

    # A refused delta at the end costs the same, and the next one still hashes only the tail.
    fed[0] = 0
    assert not text.apply([TextEdit(text.size, text.size, b"x")], sha(b"wrong"))
    assert fed[0] <= DEFAULT_CHUNK_SIZE + 1
    fed[0] = 0
    assert text.apply([TextEdit(text.size, text.size, b"}")], sha(result + b"}"))
    assert fed[0] <= DEFAULT_CHUNK_SIZE + 1


# -- parse ---------------------------------------------------------------------------------


@given(st.data(), st.integers(0, 1000), st.booleans())
def test_parse_round_trips_and_sorts(data: st.DataObject, size: int, ensure_ascii: bool) -> None:
    edits = data.draw(edits_for(size))
    shuffled = data.draw(st.permutations(edits))
    raw = json.dumps([edit_json(edit) for edit in shuffled], ensure_ascii=ensure_ascii)
    parsed = parse_edits(raw.encode("utf-8"))
    # Stable: insertions at one offset keep the order they were sent in.
    expected = tuple(sorted(shuffled, key=lambda edit: (edit.start, edit.end)))
    assert parsed == expected
    assert parse_edits([edit_json(edit) for edit in shuffled]) == expected
    base = bytes(size)
    assert apply_edits(base, parsed) == naive_apply(base, expected)


def test_parse_reads_the_cli_format() -> None:
    raw = (
        b'[{"Span":{"uri":"","start":{"line":1,"column":0,"offset":4},'
        b'"end":{"line":1,"column":0,"offset":9}},"NewText":"\\u003cb\\u003e \\u0026 \xc3\xa9"}]'
    )
    assert parse_edits(raw) == (TextEdit(4, 9, "<b> & é".encode()),)


def test_parse_accepts_other_key_spellings_like_go() -> None:
    raw = b'[{"span":{"Start":{"Offset":1},"END":{"oFfSeT":2}},"newText":"x"}]'
    assert parse_edits(raw) == (TextEdit(1, 2, b"x"),)
    # An exact spelling wins over a folded one.
    both = b'[{"newtext":"no","Span":{"start":{"offset":0},"end":{"offset":0}},"NewText":"yes"}]'
    assert parse_edits(both) == (TextEdit(0, 0, b"yes"),)


@pytest.mark.parametrize("new_text", ["", ',"NewText":null', ',"NewText":""'])
def test_missing_or_null_new_text_is_a_deletion(new_text: str) -> None:
    raw = '[{"Span":{"start":{"offset":1},"end":{"offset":3}}' + new_text + "}]"
    assert parse_edits(raw.encode()) == (TextEdit(1, 3, b""),)


def test_empty_and_null_deltas_have_no_edits() -> None:
    assert parse_edits(b"[]") == ()
    assert parse_edits(b"null") == ()
    assert parse_edits([]) == ()


def test_unpaired_surrogates_become_replacement_characters_like_go() -> None:
    raw = (
        b'[{"Span":{"start":{"offset":0},"end":{"offset":0}},"NewText":"a\\ud800b\\ud83d\\ude00"}]'
    )
    assert parse_edits(raw) == (TextEdit(0, 0, "a\ufffdb😀".encode()),)


def _edit(start: Any, end: Any, extra: str = "") -> bytes:
    return (
        f'[{{"Span":{{"start":{{"offset":{start}}},"end":{{"offset":{end}}}}}{extra}}}]'
    ).encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"{}",
        b'"edits"',
        b"[1]",
        b"[[]]",
        b"[{}]",
        b'[{"Span":null}]',
        b'[{"Span":{"start":{"offset":1}}}]',
        b'[{"Span":{"start":1,"end":2}}]',
        b'[{"Span":{"start":{},"end":{"offset":1}}}]',
        _edit(-1, 2),
        _edit(1, -2),
        _edit(3, 2),
        _edit(1.0, 2),
        _edit(1, '"2"'),
        _edit("true", 2),
        _edit(1, "null"),
        _edit(1, 2, ',"NewText":5'),
        _edit(1, 2, ',"NewText":["x"]'),
        _edit(1, 2, ',"NewText":NaN'),
        _edit(1, 2)[:-1] + b"," + _edit(1, 3)[1:],  # overlapping
        _edit(0, 5)[:-1] + b"," + _edit(2, 2)[1:],  # insertion inside a replacement
        b"[" + b"[" * 100_000 + b"]" * 100_001,  # nesting deeper than the parser allows
        b'[{"Span":{"start":{"offset":1},"end":{"offset":2}},"NewText":"\xff"}]',
        b"[{'Span': 1}]",
    ],
)
def test_malformed_deltas_are_refused(raw: bytes) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_edits(raw)
    assert info.value.message.startswith("Bad Request: invalid checkpoint delta: ")


def test_adjacent_edits_and_insertions_at_one_offset_are_kept_in_order() -> None:
    raw = json.dumps(
        [
            edit_json(TextEdit(2, 4, b"R")),
            edit_json(TextEdit(2, 2, b"A")),
            edit_json(TextEdit(2, 2, b"B")),
            edit_json(TextEdit(0, 2, b"L")),
            edit_json(TextEdit(4, 4, b"E")),
        ]
    ).encode()
    edits = parse_edits(raw)
    assert [(edit.start, edit.end, edit.new_text) for edit in edits] == [
        (0, 2, b"L"),
        (2, 2, b"A"),
        (2, 2, b"B"),
        (2, 4, b"R"),
        (4, 4, b"E"),
    ]
    assert apply_edits(b"abcdef", edits) == b"LABREef"
