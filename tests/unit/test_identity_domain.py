"""Pure identity rules: names, roles, default organization, token liveness."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import InvalidArgument, NotFound, PermissionDenied
from services.identity.domain import (
    Membership,
    NewUser,
    Principal,
    Role,
    TokenInfo,
    User,
    default_organization,
    make_principal,
    require_role,
    role_in,
    validate_name,
    validate_new_user,
    validate_text,
    with_membership,
)
from services.identity.tokens import is_last_use_stale, is_token_usable

NOW = datetime(2026, 1, 1, tzinfo=UTC)
SPEC = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")


def principal(login: str, *roles: tuple[str, Role]) -> Principal:
    user = User(id="0" * 32, login=login, name="", email="", is_site_admin=False, created_at=NOW)
    members = [Membership(organization=org, user_login=login, role=role) for org, role in roles]
    return make_principal(user, members, TokenInfo(name="laptop"))


@pytest.mark.parametrize("name", ["a", "A1", "acme-corp", "my_org.v2", "9lives", "a" * 100])
def test_good_names(name: str) -> None:
    assert validate_name("organization name", name) == name


@pytest.mark.parametrize(
    "name", ["", "x y", "-a", "_a", ".a", "a/b", "a:b", "é", "a" * 101, "a\n", "\na"]
)
def test_bad_names(name: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_name("organization name", name)
    assert caught.value.message.startswith(f"Bad Request: invalid organization name '{name[:100]}")


def test_bad_name_message() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_name("organization name", "x y")
    assert caught.value.message.startswith(
        "Bad Request: invalid organization name 'x y': use letters, digits, '-', '_' or '.'"
    )


def test_long_bad_names_are_shortened_in_messages() -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_name("user login", " " * 10_000)
    assert len(caught.value.message) < 300


@given(st.text(max_size=120))
def test_validate_name_follows_the_pattern(name: str) -> None:
    expected = SPEC.match(name) is not None and not name.endswith("\n")
    try:
        validate_name("user login", name)
    except InvalidArgument:
        assert not expected
    else:
        assert expected


def test_free_text_limits() -> None:
    assert validate_text("name", "n" * 255, 255) == "n" * 255
    with pytest.raises(InvalidArgument, match="longer than 255"):
        validate_text("name", "n" * 256, 255)
    with pytest.raises(InvalidArgument, match="NUL"):
        validate_text("email", "a\x00b", 320)
    with pytest.raises(InvalidArgument, match="email"):
        validate_new_user(NewUser(login="alice", email="e" * 321))
    with pytest.raises(InvalidArgument, match="user login"):
        validate_new_user(NewUser(login="al ice"))


def test_roles_are_ordered_and_labelled() -> None:
    assert Role.VIEWER < Role.MEMBER < Role.ADMIN
    assert [role.label for role in Role] == ["viewer", "member", "admin"]
    assert all(Role.from_label(role.label) is role for role in Role)


@pytest.mark.parametrize(
    ("role", "minimum"),
    [(role, minimum) for role in Role for minimum in Role if role >= minimum],
)
def test_require_role_grants_equal_or_higher(role: Role, minimum: Role) -> None:
    assert require_role("acme", role, minimum) is role


def test_require_role_forbids_lower_roles() -> None:
    with pytest.raises(PermissionDenied) as caught:
        require_role("acme", Role.VIEWER, Role.MEMBER)
    assert caught.value.message == "Forbidden: this requires the member role in organization 'acme'"


def test_require_role_hides_organizations_from_outsiders() -> None:
    with pytest.raises(NotFound) as caught:
        require_role("acme", None, Role.VIEWER)
    assert caught.value.message == "Not Found: organization 'acme' not found"


def test_default_organization() -> None:
    assert default_organization("erin", ["zeta", "erin", "aaa"]) == "erin"
    assert default_organization("erin", ["zeta", "beta"]) == "beta"
    assert default_organization("erin", []) == ""


def test_principal_orders_memberships_and_finds_roles() -> None:
    found = principal("bob", ("zeta", Role.ADMIN), ("beta", Role.VIEWER))

    assert [m.organization for m in found.memberships] == ["beta", "zeta"]
    assert found.default_organization == "beta"
    assert role_in(found, "zeta") is Role.ADMIN
    assert role_in(found, "acme") is None


def test_with_membership_adds_or_replaces_one_organization() -> None:
    before = principal("bob", ("zeta", Role.VIEWER))

    joined = with_membership(before, "bob", Role.ADMIN)
    promoted = with_membership(joined, "zeta", Role.MEMBER)

    assert joined.default_organization == "bob"
    assert [(m.organization, m.role) for m in promoted.memberships] == [
        ("bob", Role.ADMIN),
        ("zeta", Role.MEMBER),
    ]
    assert promoted.token_info == before.token_info
    assert before.memberships == (Membership("zeta", "bob", Role.VIEWER),)


def test_token_liveness() -> None:
    later = NOW + timedelta(hours=1)
    assert is_token_usable(now=NOW, revoked_at=None, expires_at=None)
    assert is_token_usable(now=NOW, revoked_at=None, expires_at=later)
    assert not is_token_usable(now=later, revoked_at=None, expires_at=later)
    assert not is_token_usable(now=NOW, revoked_at=NOW, expires_at=None)


def test_last_use_is_recorded_once_a_minute() -> None:
    assert is_last_use_stale(None, NOW)
    assert not is_last_use_stale(NOW, NOW + timedelta(seconds=59))
    assert is_last_use_stale(NOW, NOW + timedelta(seconds=60))


def test_token_expiry_from_unix_seconds() -> None:
    from services.identity.tokens import LATEST_EXPIRY_SECONDS, expiry_from_unix

    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert expiry_from_unix(0, now) is None
    assert expiry_from_unix(int(now.timestamp()) + 60, now) == datetime(
        2026, 1, 1, 0, 1, tzinfo=UTC
    )
    assert expiry_from_unix(LATEST_EXPIRY_SECONDS, now) is not None
    for refused in (-1, int(now.timestamp()), LATEST_EXPIRY_SECONDS + 1, 2**62):
        with pytest.raises(InvalidArgument):
            expiry_from_unix(refused, now)
