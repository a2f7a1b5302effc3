"""The pure rules of people joining: email and avatar URL shapes, invitation links' states,
the last site admin, and who may administer users."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    PermissionDenied,
)
from services.identity.domain import (
    INVITE_LINK_EXPIRED,
    INVITE_LINK_USED,
    InviteCandidate,
    LinkState,
    ProfileChange,
    User,
    check_invite,
    check_invite_link,
    check_site_admins_remain,
    check_token_on_enable,
    require_site_admin,
    validate_avatar_url,
    validate_email,
    validate_link_secret,
    validate_profile,
)
from services.identity.service import new_link_secret

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def user(*, is_site_admin: bool = True, disabled: bool = False) -> User:
    return User(
        id="u",
        login="ann",
        name="",
        email="",
        is_site_admin=is_site_admin,
        created_at=NOW,
        disabled_at=NOW if disabled else None,
    )


@pytest.mark.parametrize("value", ["a@b.io", "first.last+tag@mail.example.com"])
def test_good_emails(value: str) -> None:
    assert validate_email(value) == value


@pytest.mark.parametrize(
    "value", ["", "plain", "a@b", "a b@c.io", "a@@b.io", "@b.io", "a@b.io\n", "a@.io"]
)
def test_bad_emails(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_email(value)


@pytest.mark.parametrize("value", ["", "https://a.example/x.png", "HTTP://a.example"])
def test_good_avatar_urls(value: str) -> None:
    assert validate_avatar_url(value) == value


@pytest.mark.parametrize(
    "value",
    ["javascript:alert(1)", "ftp://a.example/x", "https://", "//a.example", "https://a b/c"],
)
def test_bad_avatar_urls(value: str) -> None:
    with pytest.raises(InvalidArgument):
        validate_avatar_url(value)
    with pytest.raises(InvalidArgument):
        validate_profile(ProfileChange(avatar_url=value))


def test_a_link_works_once_until_it_expires() -> None:
    good = LinkState(expires_at=NOW + timedelta(seconds=1), used_at=None)
    assert check_invite_link(good, NOW) is good
    with pytest.raises(NotFound):
        check_invite_link(None, NOW)
    with pytest.raises(FailedPrecondition, match=INVITE_LINK_USED):
        check_invite_link(LinkState(expires_at=NOW + timedelta(hours=1), used_at=NOW), NOW)
    with pytest.raises(FailedPrecondition, match=INVITE_LINK_EXPIRED):
        check_invite_link(LinkState(expires_at=NOW, used_at=None), NOW)


def test_link_secrets_are_random_shown_once_and_hashed() -> None:
    first, first_hash = new_link_secret()
    second, _ = new_link_secret()
    assert first != second and len(first) == 43 and len(first_hash) == 64
    assert first not in first_hash
    assert validate_link_secret(first) == first
    for wrong in ("", "short", first + "x", "a" * 42 + "!"):
        with pytest.raises(NotFound):
            validate_link_secret(wrong)


def test_the_last_enabled_site_admin_stays() -> None:
    with pytest.raises(FailedPrecondition):
        check_site_admins_remain(user(), 1)
    check_site_admins_remain(user(), 2)
    check_site_admins_remain(user(is_site_admin=False), 1)


def test_only_enabled_site_admins_administer_users() -> None:
    assert require_site_admin(user()).login == "ann"
    for caller in (None, user(is_site_admin=False), user(disabled=True)):
        with pytest.raises(PermissionDenied):
            require_site_admin(caller)


def test_a_token_comes_only_with_enabling() -> None:
    check_token_on_enable(is_disabled=False, issue_token=True)
    with pytest.raises(InvalidArgument):
        check_token_on_enable(is_disabled=True, issue_token=True)


def test_disabled_users_and_addresses_with_a_pending_link_are_not_invited() -> None:
    base = InviteCandidate(
        recipient="x@example.com",
        login="",
        organization="acme",
        is_repeated=False,
        is_member=False,
        has_pending_invite=False,
    )
    check_invite(base)
    with pytest.raises(FailedPrecondition):
        check_invite(
            InviteCandidate(
                recipient="bob",
                login="bob",
                organization="acme",
                is_repeated=False,
                is_member=False,
                has_pending_invite=False,
                is_disabled=True,
            )
        )
    with pytest.raises(AlreadyExists, match=r"x@example\.com"):
        check_invite(
            InviteCandidate(
                recipient="x@example.com",
                login="",
                organization="acme",
                is_repeated=False,
                is_member=False,
                has_pending_invite=True,
            )
        )
