"""THE route table: every REST path the gateway serves, with its access rule.

The aiohttp router and /openapi.json (gateway/openapi.py) are built from this list only. A
handler's name is its operation id (the official SDK's method name where one exists).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from gateway.convert import strict_body
from gateway.handlers import (
    agent_pools,
    audit,
    copilot,
    deployments,
    history,
    identity,
    organizations,
    secrets,
    stack_access,
    stack_settings,
    stacks,
    system,
    teams,
    tokens,
    updates,
)
from gateway.schemas import Schema, SchemaSet, closed_schema, load_schemas
from protos.cairn.v1 import common_pb2, identity_pb2

# Roles and stack permissions by name, shared with the service methods' access table.
from services.common.call_access import ADMIN, MEMBER, READ, STACK_ADMIN, VIEWER, WRITE

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

S = "/api/stacks/{orgName}/{projectName}/{stackName}"
# Every kind's per-update paths; the CLI always uses the literal `update` (protocol §1.4).
KIND = "{updateKind:update|preview|refresh|destroy}"
U = f"{S}/{KIND}/{{updateID}}"
VERSION = r"{version:\d+}"
POOLS = "/api/orgs/{orgName}/agent-pools"
AGENT = "/api/agents/{agentId}"
DEPLOYMENTS = f"{S}/deployments"
RESOURCES = f"{S}/resources"
# A URN, path-encoded or not: it holds `::` and often `/` (aiohttp keeps `%2F` until matching).
URN = "{urn:.+}"
ORG = "/api/orgs/{orgName}"
TEAM = f"{ORG}/teams/{{teamName}}"
CONSOLE_S = "/api/console/stacks/{orgName}/{projectName}/{stackName}"
AUDIT = "/api/orgs/{orgName}/auditlogs"


class Access(Enum):
    PUBLIC = "public"  # no token
    USER = "user"  # any valid access token
    ORG = "org"  # access token with (at least) `role` in {orgName}
    STACK = "stack"  # {stackName} exists and the token holds `permission` on it
    UPDATE = "update"  # `update-token <lease>` of the update in the path
    AGENT = "agent"  # `token <agent pool token>`


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

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", system.health, Access.PUBLIC, summary="Health of every service"),
    Route("GET", "/livez", system.get_liveness, Access.PUBLIC, summary="The gateway answers"),
    Route("GET", "/readyz", system.get_readiness, Access.PUBLIC, summary="Every service answers"),
    Route("GET", "/metrics", system.get_metrics, Access.PUBLIC, summary="Prometheus metrics"),
    Route("GET", "/openapi.json", system.get_openapi_document, Access.PUBLIC),
    Route("GET", "/api/capabilities", system.get_capabilities, Access.PUBLIC),
    Route("GET", "/api/cli/version", system.get_cli_version, Access.PUBLIC),
    Route("GET", "/api/admin/bootstrap", identity.get_bootstrap_status, Access.PUBLIC),
    Route(
        "POST",
        "/api/admin/bootstrap",
        identity.bootstrap_first_admin,
        Access.PUBLIC,
        shows_secret=True,
    ),
    Route(
        "POST",
        "/api/admin/bootstrap/first-admin",
        identity.bootstrap_first_admin_alias,
        Access.PUBLIC,
        shows_secret=True,
    ),
    Route("GET", "/api/user", identity.get_current_user, Access.USER),
    Route("GET", "/api/user/organizations/default", identity.get_default_organization, Access.USER),
    Route("GET", "/api/user/stacks", stacks.list_user_stacks, Access.USER),
    Route("GET", "/api/user/organizations", organizations.list_user_organizations, Access.USER),
    Route(
        "POST",
        "/api/orgs",
        organizations.create_organization,
        Access.USER,
        manages_access=True,
        is_body_strict=True,
    ),
    Route("GET", "/api/user/tokens", tokens.list_personal_tokens, Access.USER, manages_access=True),
    Route(
        "POST",
        "/api/user/tokens",
        tokens.create_personal_token,
        Access.USER,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        "/api/user/tokens/{tokenId}",
        tokens.delete_personal_token,
        Access.USER,
        manages_access=True,
    ),
    Route(
        "POST",
        "/api/user/tokens/{tokenId}/rotate",
        tokens.rotate_personal_token,
        Access.USER,
        manages_access=True,
        shows_secret=True,
    ),
    Route(
        "GET",
        "/api/user/pending-invites",
        organizations.list_user_org_invites,
        Access.USER,
        manages_access=True,
    ),
    Route(
        "PATCH",
        f"{ORG}/invites/{{inviteID}}",
        organizations.accept_org_invite,
        Access.USER,
        manages_access=True,
    ),
    Route("GET", ORG, organizations.get_organization, Access.ORG, VIEWER),
    Route(
        "PATCH",
        ORG,
        organizations.update_organization_settings,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route("GET", f"{ORG}/members", organizations.list_organization_members, Access.ORG, VIEWER),
    Route(
        "POST",
        f"{ORG}/members/{{userLogin}}",
        organizations.add_organization_member,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route(
        "PATCH",
        f"{ORG}/members/{{userLogin}}",
        organizations.update_organization_member,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        f"{ORG}/members/{{userLogin}}",
        organizations.delete_organization_member,
        Access.ORG,
        ADMIN,
        manages_access=True,
    ),
    Route(
        "GET",
        f"{ORG}/members/{{userLogin}}/teams",
        teams.get_organization_member_teams,
        Access.ORG,
        VIEWER,
    ),
    Route(
        "GET",
        f"{ORG}/invites",
        organizations.list_org_invites,
        Access.ORG,
        ADMIN,
        manages_access=True,
    ),
    Route(
        "POST",
        f"{ORG}/invites/batch",
        organizations.batch_create_org_invite_email,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        f"{ORG}/invites/{{inviteID}}",
        organizations.cancel_org_invite,
        Access.ORG,
        ADMIN,
        manages_access=True,
    ),
    Route("GET", f"{ORG}/teams", teams.list_teams, Access.ORG, VIEWER),
    Route(
        "POST",
        f"{ORG}/teams/pulumi",
        teams.create_pulumi_team,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route("GET", TEAM, teams.get_team, Access.ORG, VIEWER),
    Route(
        "PATCH",
        TEAM,
        teams.update_team,
        Access.ORG,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route("DELETE", TEAM, teams.delete_team, Access.ORG, ADMIN, manages_access=True),
    Route("GET", f"{ORG}/tokens", tokens.list_org_tokens, Access.ORG, ADMIN, manages_access=True),
    Route(
        "POST",
        f"{ORG}/tokens",
        tokens.create_org_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        f"{ORG}/tokens/{{tokenId}}",
        tokens.delete_org_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
    ),
    Route(
        "POST",
        f"{ORG}/tokens/{{tokenId}}/rotate",
        tokens.rotate_org_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
        shows_secret=True,
    ),
    Route("GET", f"{TEAM}/tokens", tokens.list_team_tokens, Access.ORG, ADMIN, manages_access=True),
    Route(
        "POST",
        f"{TEAM}/tokens",
        tokens.create_team_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        f"{TEAM}/tokens/{{tokenId}}",
        tokens.delete_team_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
    ),
    Route(
        "POST",
        f"{TEAM}/tokens/{{tokenId}}/rotate",
        tokens.rotate_team_token,
        Access.ORG,
        ADMIN,
        manages_access=True,
        shows_secret=True,
    ),
    Route("GET", f"{S}/teams", stack_access.list_stack_teams, Access.STACK, permission=READ),
    Route(
        "GET",
        f"{S}/collaborators",
        stack_access.list_stack_permissions,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "PATCH",
        f"{S}/collaborators/{{userName}}",
        stack_access.update_stack_collaborator,
        Access.STACK,
        permission=STACK_ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route(
        "DELETE",
        f"{S}/collaborators/{{userName}}",
        stack_access.delete_stack_permission,
        Access.STACK,
        permission=STACK_ADMIN,
        manages_access=True,
    ),
    Route(
        "PATCH",
        f"{CONSOLE_S}/teams/{{teamName}}",
        stack_access.update_team_stack_permissions,
        Access.STACK,
        permission=STACK_ADMIN,
        manages_access=True,
        is_body_strict=True,
    ),
    Route(
        "GET",
        "/api/console/orgs/{orgName}/members/{userLogin}/stacks/{projectName}/{stackName}",
        stack_access.list_member_stack_permissions,
        Access.STACK,
        permission=STACK_ADMIN,
    ),
    Route("POST", "/api/ai/chat/preview", copilot.copilot_skill, Access.USER),
    Route(
        "POST",
        "/api/stacks/{orgName}/{projectName}",
        stacks.create_stack,
        Access.ORG,
        MEMBER,
        create_organization=True,
    ),
    Route("HEAD", "/api/stacks/{orgName}/{projectName}", stacks.project_exists, Access.ORG, VIEWER),
    Route("GET", S, stacks.get_stack, Access.STACK, permission=READ),
    Route("DELETE", S, stacks.delete_stack, Access.STACK, permission=STACK_ADMIN),
    Route("POST", f"{S}/rename", stacks.rename_stack, Access.STACK, permission=WRITE),
    Route("PATCH", f"{S}/tags", stacks.update_stack_tags, Access.STACK, permission=WRITE),
    Route("POST", f"{S}/encrypt", secrets.encrypt_value, Access.STACK, permission=WRITE),
    Route(
        "POST",
        f"{S}/decrypt",
        secrets.decrypt_value,
        Access.STACK,
        permission=WRITE,
        shows_secret=True,
    ),
    Route("GET", f"{S}/metadata", stack_settings.get_stack_metadata, Access.STACK, permission=READ),
    Route(
        "PATCH",
        f"{S}/notifications/settings",
        stack_settings.update_stack_notification_settings,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "POST",
        f"{S}/ownership",
        stack_settings.reassign_stack_ownership,
        Access.STACK,
        permission=STACK_ADMIN,
    ),
    Route(
        "POST", f"{S}/transfer", stack_settings.transfer_stack, Access.STACK, permission=STACK_ADMIN
    ),
    Route(
        "GET",
        f"{S}/annotations/{{kind}}",
        stack_settings.get_stacks_annotation,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "PATCH",
        f"{S}/annotations/{{kind}}",
        stack_settings.upsert_stacks_annotations,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "POST",
        f"{S}/workflow",
        stack_settings.get_stack_starter_workflow,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "POST", f"{S}/batch-encrypt", secrets.batch_encrypt_value, Access.STACK, permission=WRITE
    ),
    Route(
        "POST",
        f"{S}/batch-decrypt",
        secrets.batch_decrypt_value,
        Access.STACK,
        permission=WRITE,
        shows_secret=True,
    ),
    Route(
        "POST",
        f"{S}/decrypt/log-decryption",
        secrets.log_only_decrypt_value,
        Access.STACK,
        permission=READ,
    ),
    Route("POST", f"{S}/{KIND}", updates.create_update, Access.STACK, permission=WRITE),
    Route("POST", U, updates.start_update, Access.STACK, permission=WRITE, shows_secret=True),
    Route("GET", U, updates.get_update_status, Access.STACK, permission=READ),
    Route("POST", f"{U}/cancel", updates.cancel_update, Access.STACK, permission=WRITE),
    Route("GET", f"{U}/events", updates.get_update_events, Access.STACK, permission=READ),
    Route("POST", f"{U}/renew_lease", updates.renew_update_lease, Access.UPDATE, shows_secret=True),
    Route("PATCH", f"{U}/checkpoint", updates.patch_update_checkpoint, Access.UPDATE),
    Route(
        "PATCH",
        f"{U}/checkpointverbatim",
        updates.patch_update_checkpoint_verbatim,
        Access.UPDATE,
    ),
    Route("PATCH", f"{U}/checkpointdelta", updates.patch_update_checkpoint_delta, Access.UPDATE),
    Route("PATCH", f"{U}/journalentries", updates.patch_update_journal_entries, Access.UPDATE),
    Route("POST", f"{U}/events/batch", updates.post_engine_event_batch, Access.UPDATE),
    Route("POST", f"{U}/events", updates.post_engine_event, Access.UPDATE),
    Route("POST", f"{U}/log", updates.append_update_log_entry, Access.UPDATE),
    Route("POST", f"{U}/complete", updates.complete_update, Access.UPDATE),
    Route("GET", f"{S}/updates", updates.get_stack_updates, Access.STACK, permission=READ),
    Route(
        "GET", f"{S}/updates/latest", updates.get_latest_stack_update, Access.STACK, permission=READ
    ),
    Route("GET", f"{S}/updates/{VERSION}", updates.get_stack_update, Access.STACK, permission=READ),
    Route("GET", f"{S}/export", updates.export_stack, Access.STACK, permission=READ),
    Route(
        "GET",
        f"{S}/export/{VERSION}",
        updates.export_stack_at_version,
        Access.STACK,
        permission=READ,
    ),
    Route("POST", f"{S}/import", updates.import_stack, Access.STACK, permission=WRITE),
    Route(
        "GET", f"{RESOURCES}/count", history.get_stack_resource_count, Access.STACK, permission=READ
    ),
    Route(
        "GET",
        f"{RESOURCES}/latest",
        history.get_latest_stack_resources,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{RESOURCES}/latest/{URN}",
        history.get_latest_stack_resource,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET", f"{RESOURCES}/{VERSION}", history.get_stack_resources, Access.STACK, permission=READ
    ),
    Route(
        "GET",
        f"{RESOURCES}/{VERSION}/{URN}",
        history.get_stack_resource,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/updates/{VERSION}/summary",
        history.get_stack_update_summary,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/updates/latest/timeline",
        history.get_latest_update_timeline,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/updates/{VERSION}/timeline",
        history.get_update_timeline,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/updates/{VERSION}/previews",
        history.get_stack_previews,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/previews/{{updateID}}",
        history.get_stack_preview,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{S}/previews/{{updateID}}/summary",
        history.get_stack_preview_summary,
        Access.STACK,
        permission=READ,
    ),
    Route("GET", f"{S}/activity", history.get_stack_activity, Access.STACK, permission=READ),
    Route(
        "GET",
        f"{S}/downstreamreferences",
        history.list_downstream_stack_references,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET", f"{CONSOLE_S}/overview", history.get_stack_overview, Access.STACK, permission=READ
    ),
    # `latest` first: the route below would take it for an update id.
    Route(
        "GET",
        f"{CONSOLE_S}/updates/latest/summary",
        history.update_summary_handler_latest,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{CONSOLE_S}/updates/{{updateID}}/summary",
        history.update_summary,
        Access.STACK,
        permission=READ,
    ),
    Route("GET", POOLS, agent_pools.list_org_agent_pool, Access.ORG, ADMIN),
    Route(
        "POST",
        POOLS,
        agent_pools.create_org_agent_pool,
        Access.ORG,
        ADMIN,
        shows_secret=True,
        is_body_strict=True,
    ),
    Route("GET", f"{POOLS}/{{poolId}}", agent_pools.get_agent_pool, Access.ORG, ADMIN),
    Route(
        "PATCH",
        f"{POOLS}/{{poolId}}",
        agent_pools.patch_org_agent_pool,
        Access.ORG,
        ADMIN,
        is_body_strict=True,
    ),
    Route("DELETE", f"{POOLS}/{{poolId}}", agent_pools.delete_org_agent_pool, Access.ORG, ADMIN),
    Route("POST", "/api/agents/register", agent_pools.register_agent, Access.AGENT),
    Route("POST", f"{AGENT}/heartbeat", agent_pools.agent_heartbeat, Access.AGENT),
    Route("POST", f"{AGENT}/claim", agent_pools.claim_deployment, Access.AGENT, shows_secret=True),
    Route(
        "POST",
        f"{AGENT}/deployments/{{deploymentId}}/logs",
        agent_pools.append_deployment_logs,
        Access.AGENT,
    ),
    Route(
        "POST",
        f"{AGENT}/deployments/{{deploymentId}}/finish",
        agent_pools.finish_deployment,
        Access.AGENT,
    ),
    Route(
        "GET",
        f"{DEPLOYMENTS}/settings",
        deployments.get_deployment_settings,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/settings",
        deployments.patch_deployment_settings,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "PUT",
        f"{DEPLOYMENTS}/settings",
        deployments.replace_deployment_settings,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "DELETE",
        f"{DEPLOYMENTS}/settings",
        deployments.delete_deployment_settings,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/settings/encrypt",
        deployments.encrypt_deployment_settings_secret,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "POST",
        DEPLOYMENTS,
        deployments.create_api_deployment_handler_v2,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "GET",
        DEPLOYMENTS,
        deployments.list_stack_deployments_handler_v2,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        "/api/orgs/{orgName}/deployments",
        deployments.list_org_deployments,
        Access.ORG,
        VIEWER,
    ),
    Route(
        "GET",
        f"{DEPLOYMENTS}/{{deploymentId}}",
        deployments.get_deployment,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "GET",
        f"{DEPLOYMENTS}/{{deploymentId}}/logs",
        deployments.get_deployment_logs,
        Access.STACK,
        permission=READ,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/{{deploymentId}}/cancel",
        deployments.cancel_deployment,
        Access.STACK,
        permission=WRITE,
    ),
    Route(
        "POST",
        f"{S}/decrypt/log-batch-decryption",
        secrets.log_only_batch_decrypt_value,
        Access.STACK,
        permission=READ,
    ),
    # The audit log: read-only, org admins (site admins for the instance-wide export).
    Route("GET", AUDIT, audit.list_audit_log_events_handler_v1, Access.ORG, ADMIN),
    Route(
        "GET",
        f"{AUDIT}/export",
        audit.export_audit_log_events_handler_v1,
        Access.ORG,
        ADMIN,
        is_text_accepted=True,
    ),
    Route("GET", f"{AUDIT}/event-types", audit.list_audit_log_event_types, Access.ORG, ADMIN),
    Route(
        "GET",
        "/api/admin/auditlogs/export",
        audit.export_instance_audit_log_events,
        Access.USER,
        is_text_accepted=True,
    ),
)

ROUTES_BY_OPERATION: dict[str, Route] = {route.operation_id: route for route in ROUTES}


def request_schema(route: Route, schemas: SchemaSet) -> Schema | None:
    """The body schema of a route's operation; closed (no other members) for strict bodies."""
    operation = schemas.operations.get(route.operation_id)
    schema = None if operation is None else operation.request
    if not route.is_body_strict:
        return schema
    if schema is None:
        raise ValueError(f"{route.operation_id}: a strict body needs a request schema")
    return closed_schema(schema, schemas.components)


def add_routes(app: web.Application) -> None:
    """Register every route with aiohttp, named by operation id; strict bodies are checked
    against their schema before the handler runs (after authentication)."""
    schemas = load_schemas()
    for route in ROUTES:
        handler = route.handler
        schema = request_schema(route, schemas)
        if route.is_body_strict and schema is not None:
            handler = strict_body(handler, schema)
        app.router.add_route(route.method, route.path, handler, name=route.operation_id)
