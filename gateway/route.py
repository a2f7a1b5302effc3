"""What the route table (gateway/routes.py) says about one REST path: the `Route` record, and
one constructor per access kind so that each table row names only what sets it apart.

Kept apart from the table so that what reads routes (middleware, the audit trail, OpenAPI)
never imports the handlers.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum
from typing import TypedDict, Unpack

from aiohttp import web

from gateway.audit_events import AuditEventType, NotAudited
from protos.cairn.v1 import common_pb2, identity_pb2

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Access(Enum):
    PUBLIC = "public"  # no token
    USER = "user"  # any valid access token
    ORG = "org"  # access token with (at least) `role` in {orgName}
    STACK = "stack"  # {stackName} exists and the token holds `permission` on it
    UPDATE = "update"  # `update-token <lease>` of the update in the path
    AGENT = "agent"  # `token <agent pool token>`
    SITE_ADMIN = "site_admin"  # a personal access token of an enabled site admin


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    handler: Handler
    access: Access
    role: common_pb2.Role.ValueType = common_pb2.ROLE_UNSPECIFIED
    create_organization: bool = False
    summary: str = ""
    # Stack routes: the permission needed on the stack (the identity service decides who
    # holds it: roles, team grants, explicit grants, token kind).
    permission: identity_pb2.StackPermission.ValueType = identity_pb2.STACK_PERMISSION_NONE
    # Changes who may do what (members, teams, grants, tokens, invitations): personal
    # access tokens only.
    manages_access: bool = False
    # Also answers clients that accept only text/plain or text/csv (exports).
    is_text_accepted: bool = False
    # Answers with a token or a secret value (shown once, or decrypted): `Cache-Control:
    # no-store`, so no browser or proxy cache keeps it.
    shows_secret: bool = False
    # Cairn's own management bodies (organizations, members, invitations, teams, tokens,
    # grants, agent pools): a member the operation's schema does not name, at any depth, is
    # a 400 naming it, so a typo never half-applies a change. Never set on bodies the Pulumi
    # CLI sends (updates, checkpoints, events, stacks, deployment settings): new CLI versions
    # may add members. What the official SDK sends is in the schemas, so SDK calls still work.
    is_body_strict: bool = False
    # Bodies whose members must have their documented types and enums, while members the
    # schema does not name stay allowed (deployment settings: the CLI sends them, and what is
    # stored must read back through the SDK's models). Strict bodies are checked so too.
    is_body_typed: bool = False
    # The body carries the credential (the OIDC token exchange): refusals count as failed
    # authentications like 401s of token routes, and any Accept header will do (the Pulumi
    # CLI's exchange sends none).
    is_credential_exchange: bool = False

    # Mutating routes: the audit event a call records, or NOT_AUDITED (deliberately not
    # recorded; see gateway/audit_events.py). None on reads, which are never recorded.
    audit: AuditEventType | NotAudited | None = None

    @property
    def operation_id(self) -> str:
        return self.handler.__name__

    @property
    def requires_org_admin(self) -> bool:
        """An organization admin's call: by role, by stack permission, or changing who may
        do what."""
        return (
            self.role == common_pb2.ROLE_ADMIN
            or self.permission == identity_pb2.STACK_PERMISSION_ADMIN
            or self.manages_access
        )


class Options(TypedDict, total=False):
    """A route's optional fields (see `Route`), as the constructors below take them."""

    create_organization: bool
    summary: str
    manages_access: bool
    is_text_accepted: bool
    shows_secret: bool
    is_body_strict: bool
    is_body_typed: bool
    is_credential_exchange: bool
    audit: AuditEventType | NotAudited | None


def public(method: str, path: str, handler: Handler, **options: Unpack[Options]) -> Route:
    """A route anyone may call, without a token."""
    return Route(method, path, handler, Access.PUBLIC, **options)


def user(method: str, path: str, handler: Handler, **options: Unpack[Options]) -> Route:
    """A route for any valid access token."""
    return Route(method, path, handler, Access.USER, **options)


def org(
    method: str,
    path: str,
    handler: Handler,
    role: common_pb2.Role.ValueType,
    **options: Unpack[Options],
) -> Route:
    """A route for a token holding at least `role` in the path's organization."""
    return Route(method, path, handler, Access.ORG, role, **options)


def stack(
    method: str,
    path: str,
    handler: Handler,
    permission: identity_pb2.StackPermission.ValueType,
    **options: Unpack[Options],
) -> Route:
    """A route for a token holding `permission` on the path's (existing) stack."""
    return Route(method, path, handler, Access.STACK, permission=permission, **options)


def site_admin(method: str, path: str, handler: Handler, **options: Unpack[Options]) -> Route:
    """A route for site admins (a personal access token of one)."""
    return Route(method, path, handler, Access.SITE_ADMIN, **options)


def update(method: str, path: str, handler: Handler, **options: Unpack[Options]) -> Route:
    """A route for the lease token (`update-token`) of the update in the path."""
    return Route(method, path, handler, Access.UPDATE, **options)


def agent(method: str, path: str, handler: Handler, **options: Unpack[Options]) -> Route:
    """A route for an agent pool's token."""
    return Route(method, path, handler, Access.AGENT, **options)
