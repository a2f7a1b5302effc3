"""Lookups of updates by the tokens they were created with are bounded and name a stack."""

from __future__ import annotations

import pytest

from services.common.errors import InvalidArgument
from services.updates.domain import MAX_TOKEN_LOOKUP, check_token_lookup


def test_a_lookup_names_at_least_one_stack() -> None:
    with pytest.raises(InvalidArgument, match="at least one stack"):
        check_token_lookup(["t1"], [])


def test_a_lookup_is_bounded() -> None:
    too_many = [str(n) for n in range(MAX_TOKEN_LOOKUP + 1)]
    with pytest.raises(InvalidArgument, match="at most"):
        check_token_lookup(too_many, ["s"])
    with pytest.raises(InvalidArgument, match="at most"):
        check_token_lookup(["t"], too_many)
    check_token_lookup(too_many[:-1], ["s"])
    check_token_lookup([], ["s"])
