"""What several handlers (and the console) show or read the same way: Pulumi's shapes of
shared records (users, roles, updates), the wire values they parse (roles, stack permissions),
and the reads behind shared lists (an organization's stacks, the ones a caller may read)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
from aiohttp import web

from gateway.context import BACKENDS, STACK, TOKEN, call_options
from gateway.errors import bad_request
from protos.cairn.v1 import agent_pools_pb2, common_pb2, identity_pb2, stacks_pb2, updates_pb2

ROLE_LABELS: dict[common_pb2.Role.ValueType, str] = {
    common_pb2.ROLE_VIEWER: "viewer",
    common_pb2.ROLE_MEMBER: "member",
    common_pb2.ROLE_ADMIN: "admin",
}
ROLES_BY_LABEL = {label: role for role, label in ROLE_LABELS.items()}


def iso_time(seconds: int) -> str:
    """Unix seconds as RFC 3339 UTC, as the SDK's datetime fields read it."""
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pulumi_role(role: common_pb2.Role.ValueType) -> str:
    """Pulumi's `OrganizationRole` has no viewer: viewers show as members whose role id
    (`fgaRole`, `roleId`) says `viewer`."""
    return "admin" if role == common_pb2.ROLE_ADMIN else "member"


def parse_role(value: Any, name: str = "role") -> common_pb2.Role.ValueType:
    """`admin`, `member` or `viewer`; anything else is a 400."""
    role = ROLES_BY_LABEL.get(value) if isinstance(value, str) else None
    if role is None:
        raise bad_request(f"'{name}' must be one of admin, member or viewer")
    return role


def user_info_json(user: identity_pb2.User) -> dict[str, Any]:
    """Pulumi's `UserInfo`."""
    return {
        "name": user.name or user.login,
        "githubLogin": user.login,
        "avatarUrl": "",
        "email": user.email,
    }


def organization_summary_json(membership: identity_pb2.Membership) -> dict[str, Any]:
    """Pulumi's `OrganizationSummaryWithRole`, plus Cairn's exact role as `roleId`."""
    return {
        "githubLogin": membership.organization,
        "name": membership.organization,
        "avatarUrl": "",
        "role": pulumi_role(membership.role),
        "roleId": ROLE_LABELS.get(membership.role, ""),
    }


# Pages of stacks read to name an organization's stacks: bounded, like every loop.
_STACK_PAGE_SIZE = 1000
_MAX_STACK_PAGES = 100
GRANTABLE = (101, 102, 103, 104)


async def organization_stacks(request: web.Request, organization: str) -> list[stacks_pb2.Stack]:
    """Every stack of one organization, a bounded number of pages."""
    stacks: list[stacks_pb2.Stack] = []
    token = ""
    for _ in range(_MAX_STACK_PAGES):
        reply = await request.app[BACKENDS].stacks.ListStacks(
            stacks_pb2.ListStacksRequest(
                visible_organizations=[organization],
                organization=organization,
                continuation_token=token,
                page_size=_STACK_PAGE_SIZE,
            ),
            **call_options(request),
        )
        stacks.extend(reply.stacks)
        token = reply.continuation_token
        if not token:
            break
    return stacks


async def readable_stacks(
    request: web.Request, stacks: list[stacks_pb2.Stack]
) -> list[stacks_pb2.Stack]:
    """The stacks the caller may read, in order: a list never shows what `GET S` refuses."""
    if not stacks:
        return []
    reply = await request.app[BACKENDS].identity.FilterReadableStacks(
        identity_pb2.FilterReadableStacksRequest(
            token=request[TOKEN],
            stacks=[
                identity_pb2.StackCandidate(
                    stack_id=stack.id,
                    organization=stack.ref.organization,
                    owner_login=stack.owner_login,
                )
                for stack in stacks
            ],
        ),
        **call_options(request),
    )
    readable = set(reply.stack_ids)
    return [stack for stack in stacks if stack.id in readable]


def parse_permission(value: Any, name: str, *, allow_none: bool = False) -> int:
    """A grantable stack permission (101, 102, 103, 104); 0 or null too when `allow_none`."""
    if allow_none and value in (None, 0) and not isinstance(value, bool):
        return identity_pb2.STACK_PERMISSION_NONE
    if isinstance(value, bool) or value not in GRANTABLE:
        raise bad_request(f"'{name}' must be 101 (read), 102 (write), 103 (admin) or 104 (creator)")
    return int(value)


def _flat_info(info: updates_pb2.UpdateInfo) -> dict[str, Any]:
    """The CLI's UpdateInfo (`pulumi stack history`)."""
    payload: dict[str, Any] = {
        "kind": info.kind,
        "startTime": info.start_time,
        "endTime": info.end_time,
        "message": info.message,
        "environment": dict(info.environment),
        "config": orjson.Fragment(info.config or b"{}"),
        "result": info.result,
        "version": info.version,
        "resourceChanges": dict(info.resource_changes),
    }
    if info.resource_count:
        payload["resourceCount"] = info.resource_count
    if info.state_pruned:
        # Cairn's own member: history retention removed this version's state (its export
        # answers 410); the update, its events and summary are kept.
        payload["statePruned"] = True
    return payload


def update_json(
    info: updates_pb2.UpdateInfo,
    latest_version: int,
    deployment: agent_pools_pb2.DeploymentLink | None = None,
) -> dict[str, Any]:
    """Both shapes at once: the CLI reads the flat fields, the SDK reads `info` and the rest.

    An update a deployment's job made names that deployment (`deploymentId`,
    `deploymentVersion`) beside `requestedBy`, never inside the CLI's flat fields (whose
    `deployment` member is a state).
    """
    flat = _flat_info(info)
    payload = {
        **flat,
        "info": flat,
        "updateID": info.update_id,
        "latestVersion": latest_version,
        "requestedBy": {
            "name": info.requested_by,
            "githubLogin": info.requested_by,
            "avatarUrl": "",
        },
    }
    if deployment is not None:
        payload["deploymentId"] = deployment.deployment_id
        payload["deploymentVersion"] = deployment.version
    return payload


DeploymentLinks = Mapping[str, agent_pools_pb2.DeploymentLink]


async def deployment_links(
    request: web.Request, infos: Iterable[updates_pb2.UpdateInfo]
) -> DeploymentLinks:
    """The deployment (by update id) whose job created each of these updates of the request's
    stack: updates record the access token they were created with, and agent_pools knows which
    tokens it minted for which deployment's job. One call for the lot; none when no update
    was made with a token."""
    created_with = {info.update_id: info.requested_by_token for info in infos}
    tokens = sorted({token for token in created_with.values() if token})
    if not tokens:
        return {}
    reply = await request.app[BACKENDS].agent_pools.FindDeploymentsByTokens(
        agent_pools_pb2.FindDeploymentsByTokensRequest(
            stack_id=request[STACK].id, token_ids=tokens
        ),
        **call_options(request),
    )
    by_token = {link.token_id: link for link in reply.links}
    return {
        update_id: by_token[token] for update_id, token in created_with.items() if token in by_token
    }


# Job tokens one ListUpdatesByTokens call may name (the updates service's bound).
TOKEN_LOOKUP_BATCH = 1000


async def made_updates(
    request: web.Request, deployments: list[agent_pools_pb2.Deployment]
) -> dict[str, list[updates_pb2.UpdateInfo]]:
    """The updates each deployment's job created (by deployment id, oldest first): those made
    with the access tokens minted for its runs. One call for the lot."""
    owners = {
        token: deployment.id for deployment in deployments for token in deployment.job_token_ids
    }
    stack_ids = {deployment.stack_id for deployment in deployments}
    return await updates_by_tokens(request, owners, stack_ids)


async def updates_by_tokens(
    request: web.Request, owners: Mapping[str, str], stack_ids: Iterable[str]
) -> dict[str, list[updates_pb2.UpdateInfo]]:
    """The updates of these stacks created with these job tokens, oldest first, grouped by
    the owner each token is mapped to (a deployment's id). One call per TOKEN_LOOKUP_BATCH
    tokens, an owner's tokens always in the same call."""
    by_owner: dict[str, list[str]] = {}
    for token, owner in sorted(owners.items()):
        by_owner.setdefault(owner, []).append(token)
    batches: list[list[str]] = [[]]
    for tokens in by_owner.values():
        if batches[-1] and len(batches[-1]) + len(tokens) > TOKEN_LOOKUP_BATCH:
            batches.append([])
        batches[-1].extend(tokens)
    stacks = sorted(set(stack_ids))
    found: dict[str, list[updates_pb2.UpdateInfo]] = {}
    for batch in batches:
        if not batch:
            continue
        reply = await request.app[BACKENDS].updates.ListUpdatesByTokens(
            updates_pb2.ListUpdatesByTokensRequest(token_ids=batch, stack_ids=stacks),
            **call_options(request),
        )
        for info in reply.updates:
            found.setdefault(owners[info.requested_by_token], []).append(info)
    return found


async def updates_json(
    request: web.Request, infos: Iterable[updates_pb2.UpdateInfo]
) -> list[dict[str, Any]]:
    """Updates of the request's stack in Pulumi's shape, each naming its deployment if any."""
    listed = list(infos)
    latest = await latest_version(request)
    links = await deployment_links(request, listed)
    return [update_json(info, latest, links.get(info.update_id)) for info in listed]


async def latest_version(request: web.Request) -> int:
    """The stack's newest version (0 before its first update)."""
    reply = await request.app[BACKENDS].updates.GetStackStates(
        updates_pb2.GetStackStatesRequest(stack_ids=[request[STACK].id]), **call_options(request)
    )
    return reply.states[0].version if reply.states else 0


def import_request(stack: stacks_pb2.Stack, untyped: bytes) -> updates_pb2.ImportDeploymentRequest:
    """Import a deployment into a stack (its path checks a service secrets provider's state)."""
    return updates_pb2.ImportDeploymentRequest(
        stack_id=stack.id,
        untyped_deployment=untyped,
        organization=stack.ref.organization,
        project=stack.ref.project,
        stack=stack.ref.stack,
    )
