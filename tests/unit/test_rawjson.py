"""Exact bytes of top-level JSON members, whatever the layout, escapes and key order."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.rawjson import fold_name, raw_member, raw_members

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)
whitespace = st.text(" \t\n\r", max_size=3)


@st.composite
def encodings(draw: st.DrawFn, value: Any) -> str:
    """One of many valid spellings of `value`."""
    return json.dumps(
        value,
        ensure_ascii=draw(st.booleans()),
        indent=draw(st.sampled_from([None, 0, 2])),
        separators=draw(st.sampled_from([None, (",", ":"), (" , ", " : ")])),
    )


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, dict[str, bytes]]:
    """A JSON object spelled freely, with the exact bytes of each member's value."""
    members = draw(st.dictionaries(st.text(max_size=10), json_values, max_size=6))
    spelled = {key: draw(encodings(value)).encode("utf-8") for key, value in members.items()}
    parts = [
        draw(whitespace)
        + json.dumps(key, ensure_ascii=draw(st.booleans()))
        + draw(whitespace)
        + ":"
        + draw(whitespace)
        + value.decode("utf-8")
        + draw(whitespace)
        for key, value in spelled.items()
    ]
    body = ",".join(parts) if parts else draw(whitespace)
    document = draw(whitespace) + "{" + body + "}" + draw(whitespace)
    return document.encode("utf-8"), spelled


@given(documents())
def test_every_member_comes_back_byte_for_byte(case: tuple[bytes, dict[str, bytes]]) -> None:
    document, spelled = case
    for key, value in spelled.items():
        assert raw_member(document, key) == value
    assert raw_members(document, list(spelled)) == spelled


@given(documents(), st.text(max_size=10))
def test_absent_keys_give_none(case: tuple[bytes, dict[str, bytes]], key: str) -> None:
    document, spelled = case
    if any(fold_name(name) == fold_name(key) for name in spelled):
        return
    assert raw_member(document, key) is None
    assert raw_members(document, [key]) == {}


def test_bytes_are_not_reserialised() -> None:
    document = (
        '{ "version" : 3 ,\n "untypedDeployment":{"a":"\\u003cb\\u003e","é":"€ \\"}{\\"",'
        '"n":1.50, "e":1E+2,\t"x":[ ]} , "sequenceNumber":7}'
    ).encode()
    assert raw_member(document, "untypedDeployment") == (
        '{"a":"\\u003cb\\u003e","é":"€ \\"}{\\"","n":1.50, "e":1E+2,\t"x":[ ]}'.encode()
    )
    assert raw_member(document, "version") == b"3"
    assert raw_member(document, "sequenceNumber") == b"7"


def test_strings_with_braces_and_quotes_do_not_confuse_the_scan() -> None:
    document = b'{"a":"}\\"{,\\\\","b":["]",{"c":"}"}],"c":"last"}'
    assert raw_member(document, "a") == b'"}\\"{,\\\\"'
    assert raw_member(document, "b") == b'["]",{"c":"}"}]'
    # A nested "c" is not a top-level member.
    assert raw_member(document, "c") == b'"last"'


def test_keys_spelled_with_escapes_match() -> None:
    assert raw_member(b'{"\\u0061bc":1}', "abc") == b"1"
    assert raw_member(b'{"\\u00e9":"x"}', "é") == b'"x"'


@pytest.mark.parametrize("order", [0, 1])
def test_key_order_does_not_matter(order: int) -> None:
    members = ['"untypedDeployment":{"deployment":{}}', '"version":3', '"sequenceNumber":2']
    members = members[order:] + members[:order]
    document = ("{" + ",".join(members) + "}").encode()
    assert raw_member(document, "untypedDeployment") == b'{"deployment":{}}'
    assert raw_member(document, "sequenceNumber") == b"2"


def test_names_match_case_insensitively_like_go_with_exact_names_first() -> None:
    assert raw_member(b'{"UNTYPEDdeployment":[1]}', "untypedDeployment") == b"[1]"
    assert raw_member(b'{"KEY":1,"key":2}', "key") == b"2"
    assert raw_member(b'{"KEY":1,"Key":2}', "key") == b"1"
    assert raw_member(b'{"key":1,"key":2}', "key") == b"1"
    # Go's Unicode folding: the Kelvin sign folds with k, the long s with s.
    assert raw_member('{"\u212aey":1}'.encode(), "key") == b"1"
    assert raw_member('{"\u017fize":1}'.encode(), "size") == b"1"
    assert raw_member('{"stra\u00dfe":1}'.encode(), "strasse") is None


def test_empty_object_and_nested_absent_key() -> None:
    assert raw_member(b"{}", "a") is None
    assert raw_member(b" {\n} ", "a") is None
    assert raw_member(b'{"b":{"a":1}}', "a") is None


def test_a_large_document() -> None:
    resources = [
        {"urn": f"urn:pulumi:dev::p::t::r{i}", "outputs": {"s": "é" * 20}} for i in range(20000)
    ]
    inner = json.dumps({"deployment": {"resources": resources}}, ensure_ascii=False).encode()
    document = b'{"version":3,"untypedDeployment":' + inner + b',"sequenceNumber":1}'
    assert len(document) > 1_000_000
    assert raw_member(document, "untypedDeployment") == inner


@pytest.mark.parametrize(
    "document",
    [
        b"",
        b"   ",
        b"[]",
        b'"x"',
        b"null",
        b"{",
        b'{"a":1',
        b'{"a":1,}',
        b'{"a" 1}',
        b'{"a":}',
        b"{a:1}",
        b"{'a':1}",
        b'{"a":1} x',
        b'{"a":1}}',
        b'{"a":01}',
        b'{"a":NaN}',
        b'{"a":-Infinity}',
        b'{"a":[1,]}',
        b'{"a":"\x01"}',
        b'{"a":"\xff"}',
        b'\xef\xbb\xbf{"a":1}',
        b'{"a":1,"b":tru}',
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    ],
)
def test_documents_that_are_not_json_objects_are_refused(document: bytes) -> None:
    with pytest.raises(ValueError):
        raw_member(document, "a")
