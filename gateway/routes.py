"""THE route table: every REST path the gateway serves, with its access rule and audit event.

The aiohttp router and /openapi.json (gateway/openapi.py) are built from this list only. A
handler's name is its operation id (the official SDK's method name where one exists).
"""

from __future__ import annotations

from aiohttp import web

from gateway import audit_events as events
from gateway.audit_events import NOT_AUDITED
from gateway.convert import checked_body
from gateway.handlers import (
    agent_pools,
    audit,
    copilot,
    deployment_schedules,
    deployments,
    history,
    hooks,
    identity,
    oidc,
    organizations,
    retention,
    secrets,
    stack_access,
    stack_settings,
    stacks,
    system,
    teams,
    tokens,
    updates,
    users,
)

# Re-exported: the table's vocabulary, for readers of the table.
from gateway.route import Access as Access
from gateway.route import Handler as Handler
from gateway.route import Route as Route
from gateway.route import agent, org, public, site_admin, stack, update, user
from gateway.schemas import BodyChecker, Schema, SchemaSet, closed_schema, load_schemas

# Roles and stack permissions by name, shared with the service methods' access table.
from services.common.call_access import ADMIN, MEMBER, READ, STACK_ADMIN, VIEWER, WRITE

S = "/api/stacks/{orgName}/{projectName}/{stackName}"
# Every kind's per-update paths; the CLI always uses the literal `update` (protocol §1.4).
KIND = "{updateKind:update|preview|refresh|destroy}"
U = f"{S}/{KIND}/{{updateID}}"
VERSION = "{version}"  # any segment: the handler answers 400 for one that is not a version
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
ISSUERS = "/api/orgs/{orgName}/oidc/issuers"
ISSUER = f"{ISSUERS}/{{issuerId}}"
ORG_HOOK = f"{ORG}/hooks/{{hookName}}"
STACK_HOOK = f"{S}/hooks/{{hookName}}"
SCHEDULES = f"{DEPLOYMENTS}/schedules"
SCHEDULE = f"{SCHEDULES}/{{scheduleID}}"
DRIFT_SCHEDULES = f"{DEPLOYMENTS}/drift/schedules"
TTL_SCHEDULES = f"{DEPLOYMENTS}/ttl/schedules"


ROUTES: tuple[Route, ...] = (
    public("GET", "/healthz", system.health, summary="Health of every service"),
    public("GET", "/livez", system.get_liveness, summary="The gateway answers"),
    public("GET", "/readyz", system.get_readiness, summary="Every service answers"),
    public("GET", "/metrics", system.get_metrics, summary="Prometheus metrics"),
    public("GET", "/openapi.json", system.get_openapi_document),
    public("GET", "/api/openapi/pulumi-spec.json", system.get_pulumi_spec),
    public("GET", "/api/capabilities", system.get_capabilities),
    public("GET", "/api/cli/version", system.get_cli_version),
    public("GET", "/api/admin/bootstrap", identity.get_bootstrap_status),
    public(
        "POST",
        "/api/admin/bootstrap",
        identity.bootstrap_first_admin,
        shows_secret=True,
        audit=events.INSTANCE_BOOTSTRAP,
    ),
    public(
        "POST",
        "/api/admin/bootstrap/first-admin",
        identity.bootstrap_first_admin_alias,
        shows_secret=True,
        audit=events.INSTANCE_BOOTSTRAP,
    ),
    user("GET", "/api/user", identity.get_current_user),
    user(
        "PATCH",
        "/api/user",
        identity.update_current_user,
        is_body_strict=True,
        audit=events.USER_PROFILE_UPDATE,
    ),
    site_admin(
        "POST",
        "/api/admin/users",
        users.create_user,
        shows_secret=True,
        is_body_strict=True,
        audit=events.USER_CREATE,
    ),
    site_admin("GET", "/api/admin/users", users.list_users),
    site_admin("GET", "/api/admin/users/{login}", users.get_user),
    site_admin(
        "POST", "/api/admin/users/{login}/disable", users.disable_user, audit=events.USER_DISABLE
    ),
    site_admin(
        "POST",
        "/api/admin/users/{login}/enable",
        users.enable_user,
        shows_secret=True,
        is_body_strict=True,
        audit=events.USER_ENABLE,
    ),
    public(
        "POST",
        "/api/invites/accept",
        users.accept_invite_link,
        shows_secret=True,
        is_body_strict=True,
        audit=events.INVITE_LINK_ACCEPT,
    ),
    user("GET", "/api/user/organizations/default", identity.get_default_organization),
    user("GET", "/api/user/stacks", stacks.list_user_stacks),
    user("GET", "/api/user/organizations", organizations.list_user_organizations),
    user(
        "POST",
        "/api/orgs",
        organizations.create_organization,
        manages_access=True,
        is_body_strict=True,
        audit=events.ORGANIZATION_CREATE,
    ),
    user("GET", "/api/user/tokens", tokens.list_personal_tokens, manages_access=True),
    user(
        "POST",
        "/api/user/tokens",
        tokens.create_personal_token,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
        audit=events.TOKEN_CREATE,
    ),
    user(
        "DELETE",
        "/api/user/tokens/{tokenId}",
        tokens.delete_personal_token,
        manages_access=True,
        audit=events.TOKEN_DELETE,
    ),
    user(
        "POST",
        "/api/user/tokens/{tokenId}/rotate",
        tokens.rotate_personal_token,
        manages_access=True,
        shows_secret=True,
        audit=events.TOKEN_ROTATE,
    ),
    user(
        "GET", "/api/user/pending-invites", organizations.list_user_org_invites, manages_access=True
    ),
    user(
        "PATCH",
        f"{ORG}/invites/{{inviteID}}",
        organizations.accept_org_invite,
        manages_access=True,
        audit=events.INVITE_ACCEPT,
    ),
    org("GET", ORG, organizations.get_organization, VIEWER),
    org(
        "PATCH",
        ORG,
        organizations.update_organization_settings,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.ORGANIZATION_UPDATE,
    ),
    org("GET", f"{ORG}/members", organizations.list_organization_members, VIEWER),
    org(
        "POST",
        f"{ORG}/members/{{userLogin}}",
        organizations.add_organization_member,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.MEMBER_ADD,
    ),
    org(
        "PATCH",
        f"{ORG}/members/{{userLogin}}",
        organizations.update_organization_member,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.MEMBER_UPDATE,
    ),
    org(
        "DELETE",
        f"{ORG}/members/{{userLogin}}",
        organizations.delete_organization_member,
        ADMIN,
        manages_access=True,
        audit=events.MEMBER_REMOVE,
    ),
    org("GET", f"{ORG}/members/{{userLogin}}/teams", teams.get_organization_member_teams, VIEWER),
    org("GET", f"{ORG}/invites", organizations.list_org_invites, ADMIN, manages_access=True),
    org(
        "POST",
        f"{ORG}/invites/batch",
        organizations.batch_create_org_invite_email,
        ADMIN,
        manages_access=True,
        # An email address without an account gets its one-time link in the answer.
        shows_secret=True,
        is_body_strict=True,
        audit=events.INVITE_CREATE,
    ),
    org(
        "DELETE",
        f"{ORG}/invites/{{inviteID}}",
        organizations.cancel_org_invite,
        ADMIN,
        manages_access=True,
        audit=events.INVITE_CANCEL,
    ),
    org("GET", f"{ORG}/teams", teams.list_teams, VIEWER),
    org(
        "POST",
        f"{ORG}/teams/pulumi",
        teams.create_pulumi_team,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.TEAM_CREATE,
    ),
    org("GET", TEAM, teams.get_team, VIEWER),
    org(
        "PATCH",
        TEAM,
        teams.update_team,
        ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.TEAM_UPDATE,
    ),
    org("DELETE", TEAM, teams.delete_team, ADMIN, manages_access=True, audit=events.TEAM_DELETE),
    org("GET", f"{ORG}/tokens", tokens.list_org_tokens, ADMIN, manages_access=True),
    org(
        "POST",
        f"{ORG}/tokens",
        tokens.create_org_token,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
        audit=events.TOKEN_CREATE,
    ),
    org(
        "DELETE",
        f"{ORG}/tokens/{{tokenId}}",
        tokens.delete_org_token,
        ADMIN,
        manages_access=True,
        audit=events.TOKEN_DELETE,
    ),
    org(
        "POST",
        f"{ORG}/tokens/{{tokenId}}/rotate",
        tokens.rotate_org_token,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        audit=events.TOKEN_ROTATE,
    ),
    org("GET", f"{TEAM}/tokens", tokens.list_team_tokens, ADMIN, manages_access=True),
    org(
        "POST",
        f"{TEAM}/tokens",
        tokens.create_team_token,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        is_body_strict=True,
        audit=events.TOKEN_CREATE,
    ),
    org(
        "DELETE",
        f"{TEAM}/tokens/{{tokenId}}",
        tokens.delete_team_token,
        ADMIN,
        manages_access=True,
        audit=events.TOKEN_DELETE,
    ),
    org(
        "POST",
        f"{TEAM}/tokens/{{tokenId}}/rotate",
        tokens.rotate_team_token,
        ADMIN,
        manages_access=True,
        shows_secret=True,
        audit=events.TOKEN_ROTATE,
    ),
    # OIDC token exchange: the issuers an organization trusts and their policies (admins),
    # and the exchange itself, whose credential is the CI's JWT in the body.
    org("GET", ISSUERS, oidc.list_orgs_oidc_issuers, ADMIN, manages_access=True),
    org(
        "POST",
        ISSUERS,
        oidc.register_oidc_issuer,
        ADMIN,
        manages_access=True,
        audit=events.OIDC_ISSUER_REGISTER,
    ),
    org("GET", ISSUER, oidc.get_oidc_issuer, ADMIN, manages_access=True),
    org(
        "PATCH",
        ISSUER,
        oidc.update_oidc_issuer,
        ADMIN,
        manages_access=True,
        audit=events.OIDC_ISSUER_UPDATE,
    ),
    org(
        "DELETE",
        ISSUER,
        oidc.delete_oidc_issuer,
        ADMIN,
        manages_access=True,
        audit=events.OIDC_ISSUER_DELETE,
    ),
    org(
        "POST",
        f"{ISSUER}/regenerate-thumbprints",
        oidc.regenerate_thumbprints,
        ADMIN,
        manages_access=True,
        audit=events.OIDC_ISSUER_UPDATE,
    ),
    org(
        "GET",
        f"{ORG}/auth/policies/oidcissuers/{{issuerId}}",
        oidc.get_auth_policy,
        ADMIN,
        manages_access=True,
    ),
    org(
        "PATCH",
        f"{ORG}/auth/policies/{{policyId}}",
        oidc.update_auth_policy,
        ADMIN,
        manages_access=True,
        audit=events.AUTH_POLICY_UPDATE,
    ),
    public(
        "POST",
        "/api/oauth/token",
        oidc.token,
        shows_secret=True,
        is_credential_exchange=True,
        audit=events.OIDC_EXCHANGE,
    ),
    stack("GET", f"{S}/teams", stack_access.list_stack_teams, READ),
    stack("GET", f"{S}/collaborators", stack_access.list_stack_permissions, READ),
    stack(
        "PATCH",
        f"{S}/collaborators/{{userName}}",
        stack_access.update_stack_collaborator,
        STACK_ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.STACK_PERMISSION_UPDATE,
    ),
    stack(
        "DELETE",
        f"{S}/collaborators/{{userName}}",
        stack_access.delete_stack_permission,
        STACK_ADMIN,
        manages_access=True,
        audit=events.STACK_PERMISSION_UPDATE,
    ),
    stack(
        "PATCH",
        f"{CONSOLE_S}/teams/{{teamName}}",
        stack_access.update_team_stack_permissions,
        STACK_ADMIN,
        manages_access=True,
        is_body_strict=True,
        audit=events.STACK_PERMISSION_UPDATE,
    ),
    stack(
        "GET",
        "/api/console/orgs/{orgName}/members/{userLogin}/stacks/{projectName}/{stackName}",
        stack_access.list_member_stack_permissions,
        STACK_ADMIN,
    ),
    user("POST", "/api/ai/chat/preview", copilot.copilot_skill, audit=events.COPILOT_CHAT),
    org(
        "POST",
        "/api/stacks/{orgName}/{projectName}",
        stacks.create_stack,
        MEMBER,
        create_organization=True,
        audit=events.STACK_CREATE,
    ),
    org("HEAD", "/api/stacks/{orgName}/{projectName}", stacks.project_exists, VIEWER),
    stack("GET", S, stacks.get_stack, READ),
    stack("DELETE", S, stacks.delete_stack, STACK_ADMIN, audit=events.STACK_DELETE),
    # Deleted stacks inside their restore window (CAIRN_DELETED_STACK_RETENTION_DAYS).
    org("GET", f"{ORG}/restore-stack", stacks.list_deleted_stacks, ADMIN),
    org(
        "POST",
        f"{ORG}/restore-stack/{{programID}}",
        stacks.restore_deleted_stack,
        ADMIN,
        is_body_typed=True,
        audit=events.STACK_RESTORE,
    ),
    stack("POST", f"{S}/rename", stacks.rename_stack, WRITE, audit=events.STACK_RENAME),
    stack("PATCH", f"{S}/tags", stacks.update_stack_tags, WRITE, audit=events.STACK_TAGS_UPDATE),
    stack("POST", f"{S}/encrypt", secrets.encrypt_value, WRITE, audit=events.SECRET_ENCRYPT),
    stack(
        "POST",
        f"{S}/decrypt",
        secrets.decrypt_value,
        WRITE,
        shows_secret=True,
        audit=events.SECRET_DECRYPT,
    ),
    stack("GET", f"{S}/metadata", stack_settings.get_stack_metadata, READ),
    stack(
        "PATCH",
        f"{S}/notifications/settings",
        stack_settings.update_stack_notification_settings,
        WRITE,
        audit=events.STACK_NOTIFICATIONS_UPDATE,
    ),
    stack(
        "POST",
        f"{S}/ownership",
        stack_settings.reassign_stack_ownership,
        STACK_ADMIN,
        audit=events.STACK_OWNERSHIP_UPDATE,
    ),
    stack(
        "POST",
        f"{S}/transfer",
        stack_settings.transfer_stack,
        STACK_ADMIN,
        audit=events.STACK_TRANSFER,
    ),
    stack("GET", f"{S}/annotations/{{kind}}", stack_settings.get_stacks_annotation, READ),
    stack(
        "PATCH",
        f"{S}/annotations/{{kind}}",
        stack_settings.upsert_stacks_annotations,
        WRITE,
        audit=events.STACK_ANNOTATION_UPDATE,
    ),
    stack(
        "POST", f"{S}/workflow", stack_settings.get_stack_starter_workflow, READ, audit=NOT_AUDITED
    ),
    stack(
        "POST",
        f"{S}/batch-encrypt",
        secrets.batch_encrypt_value,
        WRITE,
        audit=events.SECRET_ENCRYPT,
    ),
    stack(
        "POST",
        f"{S}/batch-decrypt",
        secrets.batch_decrypt_value,
        WRITE,
        shows_secret=True,
        audit=events.SECRET_DECRYPT,
    ),
    stack(
        "POST",
        f"{S}/decrypt/log-decryption",
        secrets.log_only_decrypt_value,
        READ,
        audit=events.SECRET_DECRYPT_LOGGED,
    ),
    stack(
        "POST",
        f"{S}/{KIND}",
        updates.create_update,
        WRITE,
        is_body_typed=True,
        audit=events.UPDATE_CREATE,
    ),
    stack("POST", U, updates.start_update, WRITE, shows_secret=True, audit=events.UPDATE_START),
    stack("GET", U, updates.get_update_status, READ),
    stack("POST", f"{U}/cancel", updates.cancel_update, WRITE, audit=events.UPDATE_CANCEL),
    stack("GET", f"{U}/events", updates.get_update_events, READ),
    update(
        "POST", f"{U}/renew_lease", updates.renew_update_lease, shows_secret=True, audit=NOT_AUDITED
    ),
    update("PATCH", f"{U}/checkpoint", updates.patch_update_checkpoint, audit=NOT_AUDITED),
    update(
        "PATCH",
        f"{U}/checkpointverbatim",
        updates.patch_update_checkpoint_verbatim,
        audit=NOT_AUDITED,
    ),
    update(
        "PATCH", f"{U}/checkpointdelta", updates.patch_update_checkpoint_delta, audit=NOT_AUDITED
    ),
    update("PATCH", f"{U}/journalentries", updates.patch_update_journal_entries, audit=NOT_AUDITED),
    update("POST", f"{U}/events/batch", updates.post_engine_event_batch, audit=NOT_AUDITED),
    update("POST", f"{U}/events", updates.post_engine_event, audit=NOT_AUDITED),
    update("POST", f"{U}/log", updates.append_update_log_entry, audit=NOT_AUDITED),
    update("POST", f"{U}/complete", updates.complete_update, audit=events.UPDATE_COMPLETE),
    stack("GET", f"{S}/updates", updates.get_stack_updates, READ),
    stack("GET", f"{S}/updates/latest", updates.get_latest_stack_update, READ),
    stack("GET", f"{S}/updates/{VERSION}", updates.get_stack_update, READ),
    stack("GET", f"{S}/export", updates.export_stack, READ),
    stack("GET", f"{S}/export/{VERSION}", updates.export_stack_at_version, READ),
    stack("POST", f"{S}/import", updates.import_stack, WRITE, audit=events.STACK_IMPORT),
    stack("GET", f"{RESOURCES}/count", history.get_stack_resource_count, READ),
    stack("GET", f"{RESOURCES}/latest", history.get_latest_stack_resources, READ),
    stack("GET", f"{RESOURCES}/latest/{URN}", history.get_latest_stack_resource, READ),
    stack("GET", f"{RESOURCES}/{VERSION}", history.get_stack_resources, READ),
    stack("GET", f"{RESOURCES}/{VERSION}/{URN}", history.get_stack_resource, READ),
    stack("GET", f"{S}/updates/{VERSION}/summary", history.get_stack_update_summary, READ),
    stack("GET", f"{S}/updates/latest/timeline", history.get_latest_update_timeline, READ),
    stack("GET", f"{S}/updates/{VERSION}/timeline", history.get_update_timeline, READ),
    stack("GET", f"{S}/updates/{VERSION}/previews", history.get_stack_previews, READ),
    stack("GET", f"{S}/previews/{{updateID}}", history.get_stack_preview, READ),
    stack("GET", f"{S}/previews/{{updateID}}/summary", history.get_stack_preview_summary, READ),
    stack("GET", f"{S}/activity", history.get_stack_activity, READ),
    stack("GET", f"{S}/downstreamreferences", history.list_downstream_stack_references, READ),
    stack("GET", f"{CONSOLE_S}/overview", history.get_stack_overview, READ),
    # `latest` first: the route below would take it for an update id.
    stack(
        "GET", f"{CONSOLE_S}/updates/latest/summary", history.update_summary_handler_latest, READ
    ),
    stack("GET", f"{CONSOLE_S}/updates/{{updateID}}/summary", history.update_summary, READ),
    org("GET", POOLS, agent_pools.list_org_agent_pool, ADMIN),
    org(
        "POST",
        POOLS,
        agent_pools.create_org_agent_pool,
        ADMIN,
        shows_secret=True,
        is_body_strict=True,
        audit=events.AGENT_POOL_CREATE,
    ),
    org("GET", f"{POOLS}/{{poolId}}", agent_pools.get_agent_pool, ADMIN),
    org(
        "PATCH",
        f"{POOLS}/{{poolId}}",
        agent_pools.patch_org_agent_pool,
        ADMIN,
        is_body_strict=True,
        audit=events.AGENT_POOL_UPDATE,
    ),
    org(
        "DELETE",
        f"{POOLS}/{{poolId}}",
        agent_pools.delete_org_agent_pool,
        ADMIN,
        audit=events.AGENT_POOL_DELETE,
    ),
    agent("POST", "/api/agents/register", agent_pools.register_agent, audit=events.AGENT_REGISTER),
    agent("POST", f"{AGENT}/heartbeat", agent_pools.agent_heartbeat, audit=NOT_AUDITED),
    agent(
        "POST",
        f"{AGENT}/claim",
        agent_pools.claim_deployment,
        shows_secret=True,
        audit=events.DEPLOYMENT_CLAIM,
    ),
    agent(
        "POST",
        f"{AGENT}/deployments/{{deploymentId}}/logs",
        agent_pools.append_deployment_logs,
        audit=NOT_AUDITED,
    ),
    agent(
        "POST",
        f"{AGENT}/deployments/{{deploymentId}}/finish",
        agent_pools.finish_deployment,
        audit=events.DEPLOYMENT_FINISH,
    ),
    stack("GET", f"{DEPLOYMENTS}/settings", deployments.get_deployment_settings, READ),
    stack(
        "POST",
        f"{DEPLOYMENTS}/settings",
        deployments.patch_deployment_settings,
        WRITE,
        is_body_typed=True,
        audit=events.DEPLOYMENT_SETTINGS_UPDATE,
    ),
    stack(
        "PUT",
        f"{DEPLOYMENTS}/settings",
        deployments.replace_deployment_settings,
        WRITE,
        is_body_typed=True,
        audit=events.DEPLOYMENT_SETTINGS_UPDATE,
    ),
    stack(
        "DELETE",
        f"{DEPLOYMENTS}/settings",
        deployments.delete_deployment_settings,
        WRITE,
        audit=events.DEPLOYMENT_SETTINGS_DELETE,
    ),
    stack(
        "POST",
        f"{DEPLOYMENTS}/settings/encrypt",
        deployments.encrypt_deployment_settings_secret,
        WRITE,
        is_body_typed=True,
        audit=events.DEPLOYMENT_SETTINGS_ENCRYPT,
    ),
    stack(
        "POST",
        DEPLOYMENTS,
        deployments.create_api_deployment_handler_v2,
        WRITE,
        is_body_typed=True,
        audit=events.DEPLOYMENT_CREATE,
    ),
    stack("GET", DEPLOYMENTS, deployments.list_stack_deployments_handler_v2, READ),
    org("GET", "/api/orgs/{orgName}/deployments", deployments.list_org_deployments, VIEWER),
    # Schedules (cron or one time), drift detection, TTL stacks, pausing deployments; before
    # the `{deploymentId}` routes, which would take `schedules` or `metadata` for an id.
    stack(
        "POST",
        SCHEDULES,
        deployment_schedules.create_scheduled_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_CREATE,
    ),
    stack("GET", SCHEDULES, deployment_schedules.list_scheduled_deployment, READ),
    stack("GET", SCHEDULE, deployment_schedules.read_scheduled_deployment, READ),
    stack(
        "POST",
        SCHEDULE,
        deployment_schedules.update_scheduled_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_UPDATE,
    ),
    stack(
        "DELETE",
        SCHEDULE,
        deployment_schedules.delete_scheduled_deployment,
        WRITE,
        audit=events.SCHEDULE_DELETE,
    ),
    stack(
        "POST",
        f"{SCHEDULE}/pause",
        deployment_schedules.pause_scheduled_deployment,
        WRITE,
        audit=events.SCHEDULE_PAUSE,
    ),
    stack(
        "POST",
        f"{SCHEDULE}/resume",
        deployment_schedules.resume_scheduled_deployment,
        WRITE,
        audit=events.SCHEDULE_RESUME,
    ),
    stack(
        "GET",
        f"{SCHEDULE}/history",
        deployment_schedules.list_scheduled_deployment_history,
        READ,
    ),
    stack(
        "POST",
        DRIFT_SCHEDULES,
        deployment_schedules.create_scheduled_drift_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_CREATE,
    ),
    stack(
        "POST",
        f"{DRIFT_SCHEDULES}/{{scheduleID}}",
        deployment_schedules.update_scheduled_drift_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_UPDATE,
    ),
    stack(
        "POST",
        TTL_SCHEDULES,
        deployment_schedules.create_scheduled_ttl_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_CREATE,
    ),
    stack(
        "POST",
        f"{TTL_SCHEDULES}/{{scheduleID}}",
        deployment_schedules.update_scheduled_ttl_deployment,
        WRITE,
        is_body_strict=True,
        audit=events.SCHEDULE_UPDATE,
    ),
    stack("GET", f"{S}/drift/runs", deployment_schedules.list_drift_runs, READ),
    stack("GET", f"{S}/drift/runs/{{driftRunId}}", deployment_schedules.get_drift_run, READ),
    stack("GET", f"{S}/drift/status", deployment_schedules.get_stack_drift_status, READ),
    stack(
        "POST",
        f"{DEPLOYMENTS}/pause",
        deployment_schedules.pause_stack_deployments,
        WRITE,
        audit=events.DEPLOYMENTS_PAUSE,
    ),
    stack(
        "POST",
        f"{DEPLOYMENTS}/resume",
        deployment_schedules.resume_stack_deployments,
        WRITE,
        audit=events.DEPLOYMENTS_RESUME,
    ),
    stack("GET", f"{DEPLOYMENTS}/metadata", deployment_schedules.stack_deployments_metadata, READ),
    org(
        "POST",
        f"{ORG}/deployments/pause",
        deployment_schedules.pause_org_deployments,
        ADMIN,
        audit=events.DEPLOYMENTS_PAUSE,
    ),
    org(
        "POST",
        f"{ORG}/deployments/resume",
        deployment_schedules.resume_org_deployments,
        ADMIN,
        audit=events.DEPLOYMENTS_RESUME,
    ),
    org(
        "GET", f"{ORG}/deployments/metadata", deployment_schedules.org_deployments_metadata, VIEWER
    ),
    user(
        "GET",
        "/api/deployments/{deploymentId}/status",
        deployment_schedules.get_deployments_status,
    ),
    stack("GET", f"{DEPLOYMENTS}/{{deploymentId}}", deployments.get_deployment, READ),
    stack("GET", f"{DEPLOYMENTS}/{{deploymentId}}/logs", deployments.get_deployment_logs, READ),
    stack(
        "GET", f"{DEPLOYMENTS}/{{deploymentId}}/updates", deployments.get_deployment_updates, READ
    ),
    stack(
        "POST",
        f"{DEPLOYMENTS}/{{deploymentId}}/cancel",
        deployments.cancel_deployment,
        WRITE,
        audit=events.DEPLOYMENT_CANCEL,
    ),
    stack(
        "POST",
        f"{S}/decrypt/log-batch-decryption",
        secrets.log_only_batch_decrypt_value,
        READ,
        audit=events.SECRET_DECRYPT_LOGGED,
    ),
    # The audit log: read-only, org admins (site admins for the instance-wide export).
    org("GET", AUDIT, audit.list_audit_log_events_handler_v1, ADMIN),
    org(
        "GET",
        f"{AUDIT}/export",
        audit.export_audit_log_events_handler_v1,
        ADMIN,
        is_text_accepted=True,
    ),
    org("GET", f"{AUDIT}/event-types", audit.list_audit_log_event_types, ADMIN),
    user(
        "GET",
        "/api/admin/auditlogs/export",
        audit.export_instance_audit_log_events,
        is_text_accepted=True,
    ),
    # Webhooks: organization admins manage the organization's, stack admins a stack's.
    org("GET", f"{ORG}/hooks", hooks.list_organization_webhooks, ADMIN),
    org(
        "POST",
        f"{ORG}/hooks",
        hooks.create_organization_webhook,
        ADMIN,
        audit=events.WEBHOOK_CREATE,
    ),
    org("GET", f"{ORG}/state-retention", retention.get_organization_state_retention, MEMBER),
    org(
        "PUT",
        f"{ORG}/state-retention",
        retention.set_organization_state_retention,
        ADMIN,
        is_body_strict=True,
        audit=events.STATE_RETENTION_UPDATE,
    ),
    stack("GET", f"{S}/state-retention", retention.get_stack_state_retention, READ),
    stack(
        "PUT",
        f"{S}/state-retention",
        retention.set_stack_state_retention,
        STACK_ADMIN,
        is_body_strict=True,
        audit=events.STATE_RETENTION_UPDATE,
    ),
    org("GET", ORG_HOOK, hooks.get_organization_webhook, ADMIN),
    org(
        "PATCH",
        ORG_HOOK,
        hooks.update_organization_webhook,
        ADMIN,
        audit=events.WEBHOOK_UPDATE,
    ),
    org(
        "DELETE",
        ORG_HOOK,
        hooks.delete_organization_webhook,
        ADMIN,
        audit=events.WEBHOOK_DELETE,
    ),
    org("GET", f"{ORG_HOOK}/deliveries", hooks.get_organization_webhook_deliveries, ADMIN),
    org(
        "POST",
        f"{ORG_HOOK}/deliveries/{{event}}/redeliver",
        hooks.redeliver_organization_webhook_event,
        ADMIN,
        audit=events.WEBHOOK_REDELIVER,
    ),
    org(
        "POST",
        f"{ORG_HOOK}/ping",
        hooks.ping_organization_webhook,
        ADMIN,
        audit=events.WEBHOOK_PING,
    ),
    stack("GET", f"{S}/hooks", hooks.list_stack_webhooks, STACK_ADMIN),
    stack(
        "POST",
        f"{S}/hooks",
        hooks.create_stack_webhook,
        STACK_ADMIN,
        audit=events.WEBHOOK_CREATE,
    ),
    stack("GET", STACK_HOOK, hooks.get_stack_webhook, STACK_ADMIN),
    stack(
        "PATCH",
        STACK_HOOK,
        hooks.update_stack_webhook,
        STACK_ADMIN,
        audit=events.WEBHOOK_UPDATE,
    ),
    stack(
        "DELETE",
        STACK_HOOK,
        hooks.delete_stack_webhook,
        STACK_ADMIN,
        audit=events.WEBHOOK_DELETE,
    ),
    stack("GET", f"{STACK_HOOK}/deliveries", hooks.get_stack_webhook_deliveries, STACK_ADMIN),
    stack(
        "POST",
        f"{STACK_HOOK}/deliveries/{{event}}/redeliver",
        hooks.redeliver_stack_webhook_event,
        STACK_ADMIN,
        audit=events.WEBHOOK_REDELIVER,
    ),
    stack(
        "POST",
        f"{STACK_HOOK}/ping",
        hooks.ping_stack_webhook,
        STACK_ADMIN,
        audit=events.WEBHOOK_PING,
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
            handler = checked_body(handler, BodyChecker(schema, schemas.components), schema)
        elif route.is_body_typed and schema is not None:
            handler = checked_body(handler, BodyChecker(schema, schemas.components))
        app.router.add_route(route.method, route.path, handler, name=route.operation_id)
