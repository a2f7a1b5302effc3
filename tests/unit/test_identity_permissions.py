"""The one authorisation rule, as a table: token kind x role x grants -> stack permission."""

from __future__ import annotations

import pytest

from services.common.errors import FailedPrecondition, InvalidArgument, NotFound, PermissionDenied
from services.identity.domain import (
    Role,
    StackGrants,
    StackPermission,
    TokenInfo,
    TokenKind,
    check_admins_remain,
    check_manages_access,
    effective_stack_permission,
    require_stack_permission,
    token_role,
    validate_default_permission,
    validate_grant,
)

NONE, READ, WRITE, ADMIN, CREATOR = (
    StackPermission.NONE,
    StackPermission.READ,
    StackPermission.WRITE,
    StackPermission.ADMIN,
    StackPermission.CREATOR,
)
PERSONAL = TokenInfo(name="laptop")
TEAM = TokenInfo(name="ci", organization="acme", team="web", kind=TokenKind.TEAM)
ORG = TokenInfo(name="ci", organization="acme", kind=TokenKind.ORGANIZATION)
ORG_ADMIN = TokenInfo(name="ci", organization="acme", kind=TokenKind.ORGANIZATION, is_admin=True)


def grants(
    default: StackPermission = WRITE,
    teams: tuple[StackPermission, ...] = (),
    explicit: StackPermission = NONE,
    *,
    owner: bool = False,
) -> StackGrants:
    return StackGrants(
        organization_default=default, team_permissions=teams, explicit=explicit, is_owner=owner
    )


@pytest.mark.parametrize(
    ("token", "role", "stack_grants", "expected"),
    [
        # Outsiders hold nothing, whatever is stored.
        (PERSONAL, None, grants(ADMIN, (ADMIN,), ADMIN), NONE),
        # Admins administer every stack.
        (PERSONAL, Role.ADMIN, grants(NONE), ADMIN),
        (PERSONAL, Role.ADMIN, grants(NONE, owner=True), CREATOR),
        # Members: the organization default, raised by teams and explicit grants.
        (PERSONAL, Role.MEMBER, grants(WRITE), WRITE),
        (PERSONAL, Role.MEMBER, grants(NONE), NONE),
        (PERSONAL, Role.MEMBER, grants(READ), READ),
        (PERSONAL, Role.MEMBER, grants(NONE, (READ, WRITE)), WRITE),
        (PERSONAL, Role.MEMBER, grants(READ, (), ADMIN), ADMIN),
        (PERSONAL, Role.MEMBER, grants(NONE, owner=True), CREATOR),
        # Viewers read, and never more, whatever they are granted.
        (PERSONAL, Role.VIEWER, grants(NONE), READ),
        (PERSONAL, Role.VIEWER, grants(ADMIN, (ADMIN,), ADMIN, owner=True), READ),
        # Team tokens: exactly the team's grants; no default, no role baseline.
        (TEAM, Role.VIEWER, grants(ADMIN), NONE),
        (TEAM, Role.VIEWER, grants(ADMIN, (WRITE,)), WRITE),
        (TEAM, Role.VIEWER, grants(NONE, (), ADMIN), NONE),
        (TEAM, None, grants(ADMIN, (ADMIN,)), NONE),
        # Organization tokens act as the organization.
        (ORG, Role.MEMBER, grants(NONE), WRITE),
        (ORG_ADMIN, Role.ADMIN, grants(NONE), ADMIN),
        (ORG, None, grants(ADMIN), NONE),
    ],
)
def test_effective_stack_permission(
    token: TokenInfo,
    role: Role | None,
    stack_grants: StackGrants,
    expected: StackPermission,
) -> None:
    assert effective_stack_permission(token, role, stack_grants) == expected


@pytest.mark.parametrize("minimum", [READ, WRITE, ADMIN])
def test_the_creator_permission_satisfies_every_route(minimum: StackPermission) -> None:
    assert require_stack_permission("acme", Role.MEMBER, CREATOR, minimum) == CREATOR


def test_stack_permission_refusals_hide_the_organization_from_outsiders() -> None:
    with pytest.raises(NotFound, match="organization 'acme' not found"):
        require_stack_permission("acme", None, NONE, READ)
    with pytest.raises(PermissionDenied, match="write permission"):
        require_stack_permission("acme", Role.VIEWER, READ, WRITE)
    assert require_stack_permission("acme", Role.VIEWER, READ, READ) == READ


def test_machine_tokens_act_with_fixed_roles_and_never_manage_access() -> None:
    assert token_role(TEAM) is Role.VIEWER
    assert token_role(ORG) is Role.MEMBER
    assert token_role(ORG_ADMIN) is Role.ADMIN
    check_manages_access(PERSONAL, True)
    for token in (TEAM, ORG, ORG_ADMIN):
        check_manages_access(token, False)
        with pytest.raises(PermissionDenied, match="personal access token"):
            check_manages_access(token, True)


@pytest.mark.parametrize(
    ("current", "new", "admins", "refused"),
    [
        (Role.ADMIN, Role.MEMBER, 1, True),
        (Role.ADMIN, Role.VIEWER, 1, True),
        (Role.ADMIN, None, 1, True),
        (Role.ADMIN, Role.ADMIN, 1, False),
        (Role.ADMIN, Role.MEMBER, 2, False),
        (Role.ADMIN, None, 2, False),
        (Role.MEMBER, None, 1, False),
        (Role.VIEWER, Role.MEMBER, 1, False),
    ],
)
def test_an_organization_keeps_an_admin(
    current: Role, new: Role | None, admins: int, refused: bool
) -> None:
    if refused:
        with pytest.raises(FailedPrecondition, match="at least one admin"):
            check_admins_remain(current, new, admins)
    else:
        check_admins_remain(current, new, admins)


def test_only_read_write_admin_and_creator_can_be_granted() -> None:
    assert [validate_grant(v) for v in (101, 102, 103, 104)] == [READ, WRITE, ADMIN, CREATOR]
    for bad in (0, 100, 105, -1):
        with pytest.raises(InvalidArgument):
            validate_grant(bad)
    assert validate_default_permission(0) is NONE
    with pytest.raises(InvalidArgument):
        validate_default_permission(104)
