"""THE route table: every REST path the gateway serves, with its access rule.

The aiohttp router (and later /openapi.json) is built from this list only. A handler's name
is its operation id (the official SDK's method name where one exists).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from enum import Enum

from aiohttp import web

from gateway.handlers import (
    agent_pools,
    audit,
    copilot,
    deployments,
    identity,
    secrets,
    stacks,
    system,
    updates,
)
from protos.cairn.v1 import common_pb2

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

S = "/api/stacks/{orgName}/{projectName}/{stackName}"
# Every kind's per-update paths; the CLI always uses the literal `update` (protocol §1.4).
KIND = "{updateKind:update|preview|refresh|destroy}"
U = f"{S}/{KIND}/{{updateID}}"
VERSION = r"{version:\d+}"
POOLS = "/api/orgs/{orgName}/agent-pools"
AGENT = "/api/agents/{agentId}"
DEPLOYMENTS = f"{S}/deployments"
AUDIT = "/api/orgs/{orgName}/auditlogs"


class Access(Enum):
    PUBLIC = "public"  # no token
    USER = "user"  # any valid access token
    ORG = "org"  # access token with a role in {orgName}
    STACK = "stack"  # ORG, and {stackName} must exist (resolved to its stable id)
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
    # Also answers clients that accept only text/plain or text/csv (exports).
    is_text_accepted: bool = False

    @property
    def operation_id(self) -> str:
        return self.handler.__name__


VIEWER = common_pb2.ROLE_VIEWER
MEMBER = common_pb2.ROLE_MEMBER
ADMIN = common_pb2.ROLE_ADMIN

ROUTES: tuple[Route, ...] = (
    Route("GET", "/healthz", system.health, Access.PUBLIC, summary="Health of every service"),
    Route("GET", "/livez", system.get_liveness, Access.PUBLIC, summary="The gateway answers"),
    Route("GET", "/readyz", system.get_readiness, Access.PUBLIC, summary="Every service answers"),
    Route("GET", "/metrics", system.get_metrics, Access.PUBLIC, summary="Prometheus metrics"),
    Route("GET", "/api/capabilities", system.get_capabilities, Access.PUBLIC),
    Route("GET", "/api/cli/version", system.get_cli_version, Access.PUBLIC),
    Route("GET", "/api/admin/bootstrap", identity.get_bootstrap_status, Access.PUBLIC),
    Route("POST", "/api/admin/bootstrap", identity.bootstrap_first_admin, Access.PUBLIC),
    Route(
        "POST",
        "/api/admin/bootstrap/first-admin",
        identity.bootstrap_first_admin_alias,
        Access.PUBLIC,
    ),
    Route("GET", "/api/user", identity.get_current_user, Access.USER),
    Route("GET", "/api/user/organizations/default", identity.get_default_organization, Access.USER),
    Route("GET", "/api/user/stacks", stacks.list_user_stacks, Access.USER),
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
    Route("GET", S, stacks.get_stack, Access.STACK, VIEWER),
    Route("DELETE", S, stacks.delete_stack, Access.STACK, ADMIN),
    Route("POST", f"{S}/rename", stacks.rename_stack, Access.STACK, MEMBER),
    Route("PATCH", f"{S}/tags", stacks.update_stack_tags, Access.STACK, MEMBER),
    Route("POST", f"{S}/encrypt", secrets.encrypt_value, Access.STACK, MEMBER),
    Route("POST", f"{S}/decrypt", secrets.decrypt_value, Access.STACK, MEMBER),
    Route("POST", f"{S}/batch-encrypt", secrets.batch_encrypt_value, Access.STACK, MEMBER),
    Route("POST", f"{S}/batch-decrypt", secrets.batch_decrypt_value, Access.STACK, MEMBER),
    Route(
        "POST", f"{S}/decrypt/log-decryption", secrets.log_only_decrypt_value, Access.STACK, VIEWER
    ),
    Route("POST", f"{S}/{KIND}", updates.create_update, Access.STACK, MEMBER),
    Route("POST", U, updates.start_update, Access.STACK, MEMBER),
    Route("GET", U, updates.get_update_status, Access.STACK, VIEWER),
    Route("POST", f"{U}/cancel", updates.cancel_update, Access.STACK, MEMBER),
    Route("GET", f"{U}/events", updates.get_update_events, Access.STACK, VIEWER),
    Route("POST", f"{U}/renew_lease", updates.renew_update_lease, Access.UPDATE),
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
    Route("GET", f"{S}/updates", updates.get_stack_updates, Access.STACK, VIEWER),
    Route("GET", f"{S}/updates/latest", updates.get_latest_stack_update, Access.STACK, VIEWER),
    Route("GET", f"{S}/updates/{VERSION}", updates.get_stack_update, Access.STACK, VIEWER),
    Route("GET", f"{S}/export", updates.export_stack, Access.STACK, VIEWER),
    Route("GET", f"{S}/export/{VERSION}", updates.export_stack_version, Access.STACK, VIEWER),
    Route("POST", f"{S}/import", updates.import_stack, Access.STACK, MEMBER),
    Route("GET", POOLS, agent_pools.list_org_agent_pool, Access.ORG, ADMIN),
    Route("POST", POOLS, agent_pools.create_org_agent_pool, Access.ORG, ADMIN),
    Route("GET", f"{POOLS}/{{poolId}}", agent_pools.get_agent_pool, Access.ORG, ADMIN),
    Route("PATCH", f"{POOLS}/{{poolId}}", agent_pools.patch_org_agent_pool, Access.ORG, ADMIN),
    Route("DELETE", f"{POOLS}/{{poolId}}", agent_pools.delete_org_agent_pool, Access.ORG, ADMIN),
    Route("POST", "/api/agents/register", agent_pools.register_agent, Access.AGENT),
    Route("POST", f"{AGENT}/heartbeat", agent_pools.agent_heartbeat, Access.AGENT),
    Route("POST", f"{AGENT}/claim", agent_pools.claim_deployment, Access.AGENT),
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
        VIEWER,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/settings",
        deployments.patch_deployment_settings,
        Access.STACK,
        MEMBER,
    ),
    Route(
        "PUT",
        f"{DEPLOYMENTS}/settings",
        deployments.replace_deployment_settings,
        Access.STACK,
        MEMBER,
    ),
    Route(
        "DELETE",
        f"{DEPLOYMENTS}/settings",
        deployments.delete_deployment_settings,
        Access.STACK,
        MEMBER,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/settings/encrypt",
        deployments.encrypt_deployment_settings_secret,
        Access.STACK,
        MEMBER,
    ),
    Route("POST", DEPLOYMENTS, deployments.create_api_deployment_handler_v2, Access.STACK, MEMBER),
    Route("GET", DEPLOYMENTS, deployments.list_stack_deployments_handler_v2, Access.STACK, VIEWER),
    Route(
        "GET",
        "/api/orgs/{orgName}/deployments",
        deployments.list_org_deployments,
        Access.ORG,
        VIEWER,
    ),
    Route(
        "GET", f"{DEPLOYMENTS}/{{deploymentId}}", deployments.get_deployment, Access.STACK, VIEWER
    ),
    Route(
        "GET",
        f"{DEPLOYMENTS}/{{deploymentId}}/logs",
        deployments.get_deployment_logs,
        Access.STACK,
        VIEWER,
    ),
    Route(
        "POST",
        f"{DEPLOYMENTS}/{{deploymentId}}/cancel",
        deployments.cancel_deployment,
        Access.STACK,
        MEMBER,
    ),
    Route(
        "POST",
        f"{S}/decrypt/log-batch-decryption",
        secrets.log_only_batch_decrypt_value,
        Access.STACK,
        VIEWER,
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


def add_routes(app: web.Application) -> None:
    """Register every route with aiohttp, named by operation id."""
    for route in ROUTES:
        app.router.add_route(route.method, route.path, route.handler, name=route.operation_id)
