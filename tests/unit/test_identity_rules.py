"""The rules the identity stores apply inside their transactions, and the console-session
rules, as pure functions."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from services.common.errors import AlreadyExists, InvalidArgument
from services.identity.domain import (
    InviteCandidate,
    MemberStackGrants,
    Organization,
    Role,
    StackPermission,
    TokenInfo,
    TokenKind,
    TokenScope,
    User,
    check_invite,
    check_invite_listing,
    is_stack_owner,
    member_stack_permissions,
    require_minimum_stack_permission,
    require_stack_id,
)
from services.identity.sessions.domain import (
    MAX_SESSION_SECONDS,
    check_session_expiry,
    is_worth_recording,
    validate_session_id,
)
from services.identity.tokens import (
    TokenState,
    TokenUse,
    check_new_token,
    machine_principal,
    token_use,
)

NOW = datetime(2026, 1, 1, tzinfo=UTC)
USER = User(id="u" * 32, login="ann", name="", email="", is_site_admin=False, created_at=NOW)


def candidate(**changes: bool) -> InviteCandidate:
    facts = {"is_repeated": False, "is_member": False, "has_pending_invite": False}
    facts.update(changes)
    return InviteCandidate(recipient="ann@example.com", login="ann", organization="acme", **facts)


def test_token_use() -> None:
    later = NOW + timedelta(hours=1)
    assert token_use(TokenState(None, None, None), NOW) is TokenUse.RECORDED
    assert token_use(TokenState(None, later, NOW), NOW) is TokenUse.ACCEPTED
    assert token_use(TokenState(None, None, NOW), later) is TokenUse.RECORDED
    assert token_use(TokenState(NOW, None, None), later) is TokenUse.REFUSED
    assert token_use(TokenState(None, later, None), later) is TokenUse.REFUSED


def test_machine_principal_acts_as_its_organization_or_team() -> None:
    org = Organization(id="o" * 32, name="acme", created_at=NOW)
    admin = TokenInfo(name="ci", organization="acme", kind=TokenKind.ORGANIZATION, is_admin=True)
    principal = machine_principal(admin, org, "")
    assert principal.user.login == "acme"
    assert principal.memberships[0].role is Role.ADMIN
    team = TokenInfo(name="ci", organization="acme", team="web", kind=TokenKind.TEAM)
    principal = machine_principal(team, org, "web")
    assert principal.user.login == "web"
    assert principal.memberships[0].role is Role.VIEWER
    assert principal.default_organization == "acme"


def test_new_tokens() -> None:
    personal = TokenScope(TokenKind.PERSONAL, user_login="ann")
    organization = TokenScope(TokenKind.ORGANIZATION, organization="acme")
    team = TokenScope(TokenKind.TEAM, organization="acme", team="web")
    check_new_token(personal, "", is_admin=False)
    check_new_token(organization, "ci", is_admin=True)
    with pytest.raises(InvalidArgument):
        check_new_token(organization, "", is_admin=False)
    with pytest.raises(InvalidArgument):
        check_new_token(team, "ci", is_admin=True)
    with pytest.raises(InvalidArgument):
        check_new_token(personal, "laptop", is_admin=True)


def test_invites_in_order_of_precedence() -> None:
    check_invite(candidate())
    with pytest.raises(AlreadyExists, match="more than once"):
        check_invite(candidate(is_repeated=True, is_member=True))
    with pytest.raises(AlreadyExists, match="already a member"):
        check_invite(candidate(is_member=True, has_pending_invite=True))
    with pytest.raises(AlreadyExists, match="pending invitation"):
        check_invite(candidate(has_pending_invite=True))


def test_invites_are_listed_for_one_side() -> None:
    check_invite_listing(organization="acme", login="")
    check_invite_listing(organization="", login="ann")
    for organization, login in (("", ""), ("acme", "ann")):
        with pytest.raises(InvalidArgument):
            check_invite_listing(organization=organization, login=login)


def test_stack_ownership_needs_a_known_owner() -> None:
    assert is_stack_owner("ann", "ann")
    assert not is_stack_owner("bob", "ann")
    assert not is_stack_owner("", "")


def test_member_stack_permissions_explain_the_effective_one() -> None:
    found = MemberStackGrants(
        user=USER,
        role=Role.MEMBER,
        organization_default=StackPermission.READ,
        teams=(),
        explicit=StackPermission.WRITE,
    )
    assert member_stack_permissions(found, is_owner=False).effective is StackPermission.WRITE
    assert member_stack_permissions(found, is_owner=True).effective is StackPermission.CREATOR
    viewer = MemberStackGrants(USER, Role.VIEWER, StackPermission.ADMIN, (), StackPermission.ADMIN)
    assert member_stack_permissions(viewer, is_owner=True).effective is StackPermission.READ


def test_stack_routes_name_a_stack_and_a_permission() -> None:
    assert require_stack_id("s1") == "s1"
    with pytest.raises(InvalidArgument):
        require_stack_id("")
    with pytest.raises(InvalidArgument):
        require_minimum_stack_permission(StackPermission.NONE)


def test_console_sessions() -> None:
    assert validate_session_id("a" * 43) == "a" * 43
    for bad in ("short", "a" * 65, "a" * 42 + "="):
        with pytest.raises(InvalidArgument):
            validate_session_id(bad)
    check_session_expiry(1_000 + MAX_SESSION_SECONDS, 1_000)
    with pytest.raises(InvalidArgument):
        check_session_expiry(1_001 + MAX_SESSION_SECONDS, 1_000)
    assert is_worth_recording(1_001, 1_000)
    assert not is_worth_recording(1_000, 1_000)
