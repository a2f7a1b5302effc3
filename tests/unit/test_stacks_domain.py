"""Pure rules of the stacks service: names, tags, renames, paging and continuation tokens."""

from __future__ import annotations

import re
import string

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.stacks.domain import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    StackPath,
    decode_continuation_token,
    encode_continuation_token,
    rename_target,
    resolve_page_size,
    stack_query,
    validate_name,
    validate_tags,
)

NAME_ALPHABET = string.ascii_letters + string.digits + "_.-"
TAG_NAME_ALPHABET = NAME_ALPHABET + ":"

valid_names = st.text(NAME_ALPHABET, min_size=1, max_size=100).filter(
    lambda name: name not in (".", "..")
)
paths = st.builds(StackPath, valid_names, valid_names, valid_names)


# -- names ---------------------------------------------------------------------------------


@given(valid_names)
def test_valid_names_pass(name: str) -> None:
    assert validate_name("stack", name) == name


@given(st.text(min_size=1, max_size=100).filter(lambda n: any(c not in NAME_ALPHABET for c in n)))
def test_names_with_other_characters_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_name("stack", name)
    assert info.value.message.startswith(f"Bad Request: invalid stack name '{name}': ")


def test_name_message_matches_the_service() -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_name("stack", "a/b")
    assert info.value.message == (
        "Bad Request: invalid stack name 'a/b': names may only contain alphanumerics, "
        "hyphens, underscores, or periods"
    )


@pytest.mark.parametrize("name", ["", ".", "..", "x" * 101])
def test_empty_long_and_dot_names_are_refused(name: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid project name"):
        validate_name("project", name)


def test_longest_name_passes() -> None:
    assert validate_name("organization", "x" * 100) == "x" * 100


# -- tags ----------------------------------------------------------------------------------


@given(
    st.dictionaries(
        st.text(TAG_NAME_ALPHABET, min_size=1, max_size=40),
        st.text(max_size=256),
        max_size=100,
    )
)
def test_valid_tag_sets_pass(tags: dict[str, str]) -> None:
    assert validate_tags(tags) == tags


@pytest.mark.parametrize(
    ("tags", "fragment"),
    [
        ({"": "x"}, "invalid tag name ''"),
        ({"a b": "x"}, "invalid tag name 'a b'"),
        ({"t" * 41: "x"}, "invalid tag name '" + "t" * 41 + "'"),
        ({"ok": "v" * 257}, "invalid value for tag 'ok'"),
        ({f"t{i}": "" for i in range(101)}, "at most 100 tags"),
    ],
)
def test_bad_tags_are_refused_by_name(tags: dict[str, str], fragment: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        validate_tags(tags)
    assert info.value.message.startswith("Bad Request: ")
    assert fragment in info.value.message


def test_tag_limits_are_inclusive() -> None:
    tags = {"pulumi:project": "v" * 256, "t" * 40: ""} | {f"t{i}": "" for i in range(98)}
    assert validate_tags(tags) == tags


# -- rename --------------------------------------------------------------------------------

CURRENT = StackPath("acme", "web", "dev")


@pytest.mark.parametrize(
    ("new_project", "new_name", "expected"),
    [
        ("site", "", StackPath("acme", "site", "dev")),
        ("", "prod", StackPath("acme", "web", "prod")),
        ("site", "prod", StackPath("acme", "site", "prod")),
        ("web", "prod", StackPath("acme", "web", "prod")),
    ],
)
def test_rename_target_keeps_unchanged_parts(
    new_project: str, new_name: str, expected: StackPath
) -> None:
    assert rename_target(CURRENT, new_project, new_name) == expected


@pytest.mark.parametrize(("new_project", "new_name"), [("", ""), ("web", "dev"), ("web", "")])
def test_rename_to_the_same_place_is_refused(new_project: str, new_name: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        rename_target(CURRENT, new_project, new_name)
    assert info.value.message == "Bad Request: No rename to apply."


def test_rename_target_names_are_validated() -> None:
    with pytest.raises(InvalidArgument, match="invalid project name 'a b'"):
        rename_target(CURRENT, "a b", "")


# -- paging --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("requested", "expected"), [(0, DEFAULT_PAGE_SIZE), (1, 1), (MAX_PAGE_SIZE, MAX_PAGE_SIZE)]
)
def test_page_sizes(requested: int, expected: int) -> None:
    assert resolve_page_size(requested) == expected


@pytest.mark.parametrize("requested", [-1, MAX_PAGE_SIZE + 1])
def test_page_sizes_out_of_range_are_refused(requested: int) -> None:
    with pytest.raises(InvalidArgument):
        resolve_page_size(requested)


short_texts = st.text(max_size=20)


# Tokens are only issued for stored names; short arbitrary text also exercises JSON escaping.
@given(paths | st.builds(StackPath, short_texts, short_texts, short_texts))
def test_continuation_token_round_trips_and_is_url_safe(path: StackPath) -> None:
    token = encode_continuation_token(path)
    assert re.fullmatch(r"[A-Za-z0-9_-]*", token)
    assert decode_continuation_token(token) == path


@given(paths, paths)
def test_continuation_tokens_differ_for_different_stacks(
    first: StackPath, second: StackPath
) -> None:
    if first != second:
        assert encode_continuation_token(first) != encode_continuation_token(second)


@given(st.text(max_size=2000))
def test_decoding_arbitrary_text_only_ever_raises_invalid_argument(token: str) -> None:
    try:
        path = decode_continuation_token(token)
    except InvalidArgument as error:
        assert error.message == "Bad Request: invalid continuation token"
    else:
        assert isinstance(path, StackPath)


@pytest.mark.parametrize(
    "token",
    [
        "",
        "a",
        "e30",  # {}
        "W10",  # []
        "WyJhIiwiYiJd",  # ["a","b"]
        "WzEsMiwzXQ",  # [1,2,3]
        "WyJhIiwiYiIsImMiXQ==",  # padding is never issued
        "WyJhIiwiYiIsImMiXQ+",
        "/////",
        "x" * 2000,
    ],
)
def test_malformed_tokens_are_refused(token: str) -> None:
    with pytest.raises(InvalidArgument, match="invalid continuation token"):
        decode_continuation_token(token)


def test_stack_query_builds_the_keyset_position() -> None:
    token = encode_continuation_token(StackPath("acme", "web", "dev"))
    query = stack_query(
        visible_organizations=["acme", "beta", "acme"],
        organization="",
        project="web",
        tag_name="env",
        tag_value="prod",
        continuation_token=token,
        page_size=0,
    )
    assert query.visible_organizations == frozenset({"acme", "beta"})
    assert query.after == StackPath("acme", "web", "dev")
    assert (query.project, query.tag_name, query.tag_value) == ("web", "env", "prod")
    assert query.page_size == DEFAULT_PAGE_SIZE


def test_stack_query_needs_a_tag_name_for_a_tag_value() -> None:
    with pytest.raises(InvalidArgument, match="tag name"):
        stack_query(
            visible_organizations=["acme"],
            organization="",
            project="",
            tag_name="",
            tag_value="prod",
            continuation_token="",
            page_size=0,
        )
