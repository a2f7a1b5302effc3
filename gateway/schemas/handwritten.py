"""Schemas of the operations neither the REST catalogue nor the official SDK describes.

Each follows what its handler answers (gateway/handlers/system.py, identity.py,
agent_pools.py, organizations.py, tokens.py, stack_access.py, audit.py); entries use the same
shape as catalogue.json. A new route outside the catalogue and the SDK adds its entry here.
"""

from __future__ import annotations

from typing import Any

KINDS = ("update", "preview", "refresh", "destroy")

_STRING = {"type": "string"}
_OPTIONAL_STRING = {"type": ["string", "null"]}


def _object(required: dict[str, Any], optional: dict[str, Any] | None = None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        schema["required"] = list(required)
    return schema


_HEALTH = _object(
    {
        "status": {"type": "string", "enum": ["ok"]},
        "services": {
            "type": "object",
            "additionalProperties": {"type": "string", "enum": ["serving", "unavailable"]},
        },
    }
)

_BOOTSTRAP = {
    "summary": "Create the first admin user, organization and access token while none exists.",
    "request": _object(
        {},
        {
            "login": _OPTIONAL_STRING,
            "name": _OPTIONAL_STRING,
            "email": _OPTIONAL_STRING,
            "organization": _OPTIONAL_STRING,
        },
    ),
    "responses": {
        "201": _object(
            {
                "token": _STRING,
                "user": _object(
                    {
                        "id": _STRING,
                        "githubLogin": _STRING,
                        "name": _STRING,
                        "email": _STRING,
                        "siteAdmin": {"type": "boolean"},
                    }
                ),
                "organization": _object({"id": _STRING, "githubLogin": _STRING}),
            }
        )
    },
    "errors": [400, 409],
}

_REF = "#/components/schemas/"
_ROLE = {"type": "string", "enum": ["admin", "member"]}
_ROLE_ID = {"type": "string", "enum": ["admin", "member", "viewer"]}
_GRANTABLE = {"type": "integer", "enum": [101, 102, 103, 104]}

# gateway/handlers/tokens.py `_rotate`: the same id, a new value shown this once.
_ROTATE_TOKEN = {
    "summary": "Replace an access token's value; the old value stops working at once.",
    "responses": {"200": _object({"id": _STRING, "tokenValue": _STRING})},
}

# gateway/audit_records.py `export_response`: CSV (the default), or `{"auditLogEvents": [...]}`
# with `format=json`; clients accepting only text/plain (the SDK) get either as text/plain.
_AUDIT_EXPORT_QUERY = [
    {"name": "format", "required": False, "schema": {"type": "string", "enum": ["csv", "json"]}},
    {"name": "startTime", "required": False, "schema": {"type": "integer", "minimum": 0}},
    {"name": "endTime", "required": False, "schema": {"type": "integer", "minimum": 0}},
    {"name": "eventFilter", "required": False, "schema": _STRING},
    {"name": "userFilter", "required": False, "schema": _STRING},
]
_AUDIT_EXPORT_MEDIA: dict[str, Any] = {
    "text/csv": _STRING,
    "application/json": _object(
        {"auditLogEvents": {"type": "array", "items": {"$ref": _REF + "AuditLogEvent"}}}
    ),
    "text/plain": _STRING,
}

# gateway/handlers/users.py `admin_user_json`: a user as site admins see one.
_ADMIN_USER = _object(
    {
        "id": _STRING,
        "githubLogin": _STRING,
        "name": _STRING,
        "email": _STRING,
        "avatarUrl": _STRING,
        "siteAdmin": {"type": "boolean"},
        # Unix seconds.
        "created": {"type": "integer"},
        "disabled": {"type": "boolean"},
        # Unix seconds; 0 while enabled.
        "disabledAt": {"type": "integer"},
    }
)
_NEW_TOKEN = _object({"id": _STRING, "tokenValue": _STRING})
_SET_USER_STATE = {"responses": {"200": _ADMIN_USER}, "errors": [403, 404, 409]}
_WEBHOOK_FIELDS: dict[str, Any] = {
    "organizationName": _STRING,
    "projectName": _OPTIONAL_STRING,
    "stackName": _OPTIONAL_STRING,
    "envName": _OPTIONAL_STRING,
    "name": _OPTIONAL_STRING,
    "displayName": _STRING,
    "payloadUrl": _STRING,
    "active": {"type": "boolean"},
    "format": {"type": ["string", "null"], "enum": ["raw", "slack", "ms_teams", None]},
    "filters": {"type": ["array", "null"], "items": _STRING},
    "groups": {"type": ["array", "null"], "items": _STRING},
}
# The SDK's `Webhook`: what create and update take; `secret` is write-only.
_WEBHOOK = {
    "type": "object",
    "properties": {**_WEBHOOK_FIELDS, "secret": _OPTIONAL_STRING},
    "required": ["organizationName", "displayName", "payloadUrl", "active"],
}
# `WebhookResponse`: never the secret; `secretCiphertext` is always empty.
_WEBHOOK_RESPONSE = {
    "type": "object",
    "properties": {
        **_WEBHOOK_FIELDS,
        "hasSecret": {"type": "boolean"},
        "secretCiphertext": {"type": "string", "maxLength": 0},
    },
    "required": ["organizationName", "name", "displayName", "payloadUrl", "active", "hasSecret"],
}
# `WebhookDelivery`: one attempt; headers are JSON text, the response body an excerpt.
_WEBHOOK_DELIVERY = _object(
    {
        "id": _STRING,
        "kind": _STRING,
        "payload": _STRING,
        # Unix milliseconds.
        "timestamp": {"type": "integer"},
        # Milliseconds.
        "duration": {"type": "integer"},
        "requestUrl": _STRING,
        "requestHeaders": _STRING,
        # 0 when no answer came.
        "responseCode": {"type": "integer"},
        "responseHeaders": _STRING,
        "responseBody": _STRING,
    }
)


def _webhook_operations(scope: str, prefix: str) -> dict[str, dict[str, Any]]:
    """The eight webhook operations of one scope (organization or stack)."""
    hook = {"$ref": _REF + "WebhookResponse"}
    delivery = {"$ref": _REF + "WebhookDelivery"}
    body = {"$ref": _REF + "Webhook"}
    return {
        f"list_{prefix}_webhooks": {
            "summary": f"The {scope}'s webhooks (secrets never included).",
            "responses": {"200": {"type": "array", "items": hook}},
        },
        f"create_{prefix}_webhook": {
            "summary": f"Create a webhook of the {scope}; its payload URL must be http(s).",
            "request": body,
            "responses": {"200": hook},
            "errors": [400, 404, 409],
        },
        f"get_{prefix}_webhook": {
            "summary": f"One webhook of the {scope}.",
            "responses": {"200": hook},
            "errors": [404],
        },
        f"update_{prefix}_webhook": {
            "summary": f"Change a webhook of the {scope}; an absent secret is kept, an empty "
            "one removed.",
            "request": body,
            "responses": {"200": hook},
            "errors": [400, 404],
        },
        f"delete_{prefix}_webhook": {
            "summary": f"Delete a webhook of the {scope} and its recorded deliveries.",
            "responses": {"204": None},
            "errors": [404],
        },
        f"get_{prefix}_webhook_deliveries": {
            "summary": "The webhook's recorded delivery attempts, newest first.",
            "responses": {"200": {"type": "array", "items": delivery}},
            "errors": [404],
        },
        f"ping_{prefix}_webhook": {
            "summary": "Send a `ping` event now; answers the attempt.",
            "responses": {"200": delivery},
            "errors": [404],
        },
        f"redeliver_{prefix}_webhook_event": {
            "summary": "Send a recorded delivery's payload again now; answers the attempt.",
            "responses": {"200": delivery},
            "errors": [404],
        },
    }


_KEEP_VERSIONS = {"type": ["integer", "null"], "minimum": 1, "maximum": 1_000_000}
_RETENTION_BODY = {
    "type": "object",
    "properties": {"keepVersions": _KEEP_VERSIONS},
    "required": ["keepVersions"],
}
_ORGANIZATION_RETENTION = _object({"keepVersions": _KEEP_VERSIONS})
_STACK_RETENTION = _object(
    {
        "keepVersions": _KEEP_VERSIONS,
        "organizationKeepVersions": _KEEP_VERSIONS,
        "effectiveKeepVersions": _KEEP_VERSIONS,
    }
)
_RETENTION_OPERATIONS: dict[str, dict[str, Any]] = {
    "get_organization_state_retention": {
        "summary": "How many newest versions of each stack keep their full state (null: all).",
        "responses": {"200": _ORGANIZATION_RETENTION},
    },
    "set_organization_state_retention": {
        "summary": "Keep the full state of each stack's newest `keepVersions` versions (null: "
        "all); older versions keep their update, events and summary, and their export answers "
        "410. Applied at once.",
        "request": _RETENTION_BODY,
        "responses": {"200": _ORGANIZATION_RETENTION},
        "errors": [400],
    },
    "get_stack_state_retention": {
        "summary": "The stack's own retention setting, its organization's, and the one that "
        "applies.",
        "responses": {"200": _STACK_RETENTION},
    },
    "set_stack_state_retention": {
        "summary": "The stack's own retention setting over its organization's (null: follow "
        "the organization's). Applied at once.",
        "request": _RETENTION_BODY,
        "responses": {"200": _STACK_RETENTION},
        "errors": [400],
    },
}


# Schedules (gateway/handlers/deployment_schedules.py): a standard five-field cron
# expression evaluated in UTC, or an RFC 3339 time that must lie in the future.
_CRON = {
    "type": ["string", "null"],
    "maxLength": 255,
    "pattern": r"^\s*[0-9A-Za-z*/,?-]+(\s+[0-9A-Za-z*/,?-]+){4}\s*$",
}
_DATE_TIME = {"type": ["string", "null"], "format": "date-time", "minLength": 1}
_SCHEDULED_ACTION = {"200": {"$ref": f"{_REF}ScheduledAction"}}
_DEPLOYMENT_SCHEDULE = {
    # One of scheduleCron and scheduleOnce (the handler answers 400 otherwise).
    "summary": "Schedule a deployment: on a cron schedule (five fields, UTC) or once.",
    "request": {
        "type": "object",
        "properties": {
            "scheduleCron": _CRON,
            "scheduleOnce": _DATE_TIME,
            "request": {"anyOf": [{"$ref": f"{_REF}CreateDeploymentRequest"}, {"type": "null"}]},
        },
        # One of the two, not null, and not both (`patternProperties`: a strict body closes
        # only `properties`).
        "anyOf": [
            {"patternProperties": {f"^{name}$": {"type": "string"}}, "required": [name]}
            for name in ("scheduleCron", "scheduleOnce")
        ],
        "not": {
            "patternProperties": {"^(scheduleCron|scheduleOnce)$": {"type": "string"}},
            "required": ["scheduleCron", "scheduleOnce"],
        },
    },
    "responses": _SCHEDULED_ACTION,
    "errors": [400, 404],
}
_DRIFT_SCHEDULE = {
    "summary": "Detect drift (a refresh preview) on a cron schedule, optionally remediating.",
    "request": {
        "type": "object",
        "properties": {"scheduleCron": _CRON, "autoRemediate": {"type": ["boolean", "null"]}},
        "required": ["scheduleCron"],
    },
    "responses": _SCHEDULED_ACTION,
    "errors": [400, 404, 409],
}
_TTL_SCHEDULE = {
    "summary": "Destroy the stack at a time, and delete it afterwards when asked.",
    "request": {
        "type": "object",
        "properties": {
            "timestamp": {**_DATE_TIME, "type": "string"},
            "deleteAfterDestroy": {"type": ["boolean", "null"]},
        },
        "required": ["timestamp"],
    },
    "responses": _SCHEDULED_ACTION,
    "errors": [400, 404, 409],
}
_JOB_STATUS = {
    "type": "string",
    "enum": ["not-started", "accepted", "running", "failed", "succeeded", "skipped"],
}

OPERATIONS: dict[str, dict[str, Any]] = {
    "list_deleted_stacks": {
        "summary": "Deleted stacks of the organization that can still be restored.",
        "responses": {
            "200": _object(
                {"deletedStacks": {"type": "array", "items": {"$ref": _REF + "DeletedStack"}}}
            )
        },
    },
    "restore_deleted_stack": {
        "summary": "Restore a deleted stack with its history, under its old name or stackName.",
        "request": _object({}, {"stackName": _OPTIONAL_STRING}),
        "responses": {"204": None},
        "errors": [400, 404, 409],
    },
    "create_scheduled_deployment": _DEPLOYMENT_SCHEDULE,
    "update_scheduled_deployment": _DEPLOYMENT_SCHEDULE,
    "create_scheduled_drift_deployment": _DRIFT_SCHEDULE,
    "update_scheduled_drift_deployment": _DRIFT_SCHEDULE,
    "create_scheduled_ttl_deployment": _TTL_SCHEDULE,
    "update_scheduled_ttl_deployment": _TTL_SCHEDULE,
    "get_deployments_status": {
        "summary": "The status of a deployment's job, found by its id alone.",
        "responses": {"200": _JOB_STATUS},
        "errors": [401, 403, 404],
    },
    **_webhook_operations("organization", "organization"),
    **_RETENTION_OPERATIONS,
    **_webhook_operations("stack", "stack"),
    "health": {
        "summary": "Health of every service (the same as /readyz).",
        "responses": {"200": _HEALTH},
        "errors": [503],
    },
    "get_readiness": {
        "summary": "Ready when every service answers its gRPC health check.",
        "responses": {"200": _HEALTH},
        "errors": [503],
    },
    "get_liveness": {
        "summary": "The gateway process answers HTTP.",
        "responses": {"200": _object({"status": {"type": "string", "enum": ["ok"]}})},
    },
    "get_metrics": {
        "summary": "Prometheus exposition of request and RPC metrics.",
        "responses": {"200": {"type": "string"}},
        "media_types": ["text/plain", "application/openmetrics-text"],
    },
    "get_openapi_document": {
        "summary": "This OpenAPI document, built from the route table.",
        "responses": {
            "200": _object(
                {"openapi": _STRING, "info": {"type": "object"}, "paths": {"type": "object"}}
            )
        },
    },
    "get_capabilities": {
        "summary": "Capabilities the CLI may use against this server.",
        "responses": {
            "200": _object(
                {
                    "capabilities": {
                        "type": "array",
                        "items": _object(
                            {"capability": _STRING},
                            {"version": {"type": "integer"}, "configuration": {"type": "object"}},
                        ),
                    }
                }
            )
        },
    },
    "get_cli_version": {
        "summary": "The CLI versions this server speaks to.",
        "responses": {
            "200": _object(
                {
                    "latestVersion": _STRING,
                    "oldestWithoutWarning": _STRING,
                    "latestDevVersion": _STRING,
                }
            )
        },
    },
    "get_bootstrap_status": {
        "summary": "Whether the first admin still has to be created, and how users log in.",
        "responses": {
            "200": _object(
                {
                    "bootstrapNeeded": {"type": "boolean"},
                    "loginMethods": {"type": "array", "items": _STRING},
                }
            )
        },
    },
    "bootstrap_first_admin": _BOOTSTRAP,
    "register_agent": {
        "summary": "A self-hosted agent joins its pool (pool token).",
        "request": _object(
            {},
            {
                "version": _OPTIONAL_STRING,
                "platform": _OPTIONAL_STRING,
                "hostname": _OPTIONAL_STRING,
                "ip": _OPTIONAL_STRING,
                "pid": {"type": ["integer", "string", "null"]},
            },
        ),
        "responses": {
            "200": _object(
                {
                    "agentID": _STRING,
                    "poolID": _STRING,
                    "heartbeatIntervalSeconds": {"type": "integer"},
                }
            )
        },
    },
    "agent_heartbeat": {
        "summary": "An agent is alive; the answer names its deployments that were cancelled.",
        "responses": {
            "200": _object({"cancelledDeployments": {"type": "array", "items": _STRING}})
        },
        "errors": [404],
    },
    "claim_deployment": {
        "summary": "An agent takes the next queued deployment of its pool (204 when none).",
        "responses": {
            "200": _object(
                {
                    "deploymentID": _STRING,
                    "version": {"type": "integer"},
                    "operation": _STRING,
                    "orgName": _STRING,
                    "projectName": _STRING,
                    "stackName": _STRING,
                    "settings": {"type": "object"},
                    # PULUMI_ACCESS_TOKEN (the requester's, short-lived) and PULUMI_BACKEND_URL.
                    "environment": {"type": "object", "additionalProperties": _STRING},
                    # The settings' secret values, which the agent masks in its log lines.
                    "secretValues": {"type": "array", "items": _STRING},
                }
            ),
            "204": None,
        },
        "errors": [404],
    },
    "append_deployment_logs": {
        "summary": "An agent sends log lines of a deployment it runs.",
        "request": _object({}, {"lines": {"type": ["array", "null"], "items": _STRING}}),
        "responses": {"200": _object({"cancelled": {"type": "boolean"}})},
        "errors": [404, 409],
    },
    "finish_deployment": {
        "summary": "An agent reports the end of a deployment it ran.",
        "request": _object({}, {"status": _OPTIONAL_STRING, "message": _OPTIONAL_STRING}),
        "responses": {"204": None},
        "errors": [404, 409],
    },
    "list_user_organizations": {
        "summary": "The caller's organizations, with their role in each.",
        "responses": {
            "200": _object(
                {
                    "organizations": {
                        "type": "array",
                        "items": _object(
                            {
                                "githubLogin": _STRING,
                                "name": _STRING,
                                "avatarUrl": _STRING,
                                "role": _ROLE,
                                "roleId": _ROLE_ID,
                            }
                        ),
                    }
                }
            )
        },
    },
    "create_organization": {
        "summary": "Create an organization with the caller as its admin.",
        "request": _object({"name": _STRING}),
        "responses": {
            "201": _object(
                {
                    "githubLogin": _STRING,
                    "name": _STRING,
                    "avatarUrl": _STRING,
                    "repos": {"type": "array", "maxItems": 0},
                    "id": _STRING,
                    # Unix seconds.
                    "created": {"type": "integer"},
                    "defaultStackPermission": {"$ref": _REF + "StackPermission"},
                    "memberCount": {"type": "integer", "minimum": 1},
                    "role": {"type": "string", "enum": ["admin"]},
                }
            )
        },
        "errors": [409],
    },
    "create_user": {
        "summary": "Create a user (site admins); with issueToken, also their first personal "
        "access token, shown this once.",
        "request": _object(
            {"login": _STRING, "email": _STRING},
            {
                "name": _OPTIONAL_STRING,
                "avatarUrl": _OPTIONAL_STRING,
                "issueToken": {"type": ["boolean", "null"]},
            },
        ),
        "responses": {"201": _object({"user": _ADMIN_USER}, {"token": _NEW_TOKEN})},
        "errors": [409],
    },
    "list_users": {
        "summary": "List users by login (site admins), filtered by a login or email substring "
        "and by state, a page at a time.",
        "query": [
            {"name": "query", "required": False, "schema": _STRING},
            {
                "name": "state",
                "required": False,
                "schema": {"type": "string", "enum": ["enabled", "disabled"]},
            },
            {
                "name": "pageSize",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "maximum": 500},
            },
            {"name": "continuationToken", "required": False, "schema": _STRING},
        ],
        "responses": {
            "200": _object(
                {"users": {"type": "array", "items": _ADMIN_USER}},
                {"continuationToken": _STRING},
            )
        },
    },
    "get_user": {"summary": "One user (site admins).", "responses": {"200": _ADMIN_USER}},
    "disable_user": {
        "summary": "Disable a user (site admins): every access token and console session of "
        "theirs stops at once; their history stays. 409 for the last enabled site admin.",
        **_SET_USER_STATE,
    },
    "enable_user": {
        "summary": "Enable a disabled user again (site admins); revoked tokens stay revoked. "
        'With {"issueToken": true}, a new personal access token, shown this once.',
        "request": _object({}, {"issueToken": {"type": ["boolean", "null"]}}),
        "responses": {"200": _object(_ADMIN_USER["properties"], {"token": _NEW_TOKEN})},
        "errors": [403, 404, 409],
    },
    "update_current_user": {
        "summary": "Change the caller's own name, email or avatar URL (http or https); "
        "answers as GET /api/user.",
        "request": _object(
            {},
            {"name": _OPTIONAL_STRING, "email": _OPTIONAL_STRING, "avatarUrl": _OPTIONAL_STRING},
        ),
        "responses": {
            "200": _object(
                {
                    "id": _STRING,
                    "githubLogin": _STRING,
                    "name": _STRING,
                    "email": _STRING,
                    "avatarUrl": _STRING,
                    "organizations": {
                        "type": "array",
                        "items": {"$ref": _REF + "OrganizationSummaryWithRole"},
                    },
                    "siteAdmin": {"type": "boolean"},
                }
            )
        },
    },
    "accept_invite_link": {
        "summary": "Join through an invitation link: its code, a new login (and name). Creates "
        "the user and the membership and answers their first access token, shown this once.",
        "request": _object({"code": _STRING, "login": _STRING}, {"name": _OPTIONAL_STRING}),
        "responses": {
            "201": _object(
                {
                    "user": _ADMIN_USER,
                    "organization": {"$ref": _REF + "OrganizationSummaryWithRole"},
                    "token": _NEW_TOKEN,
                    "loginCommand": _STRING,
                }
            )
        },
        "errors": [404, 409],
    },
    "rotate_personal_token": _ROTATE_TOKEN,
    "update_stack_collaborator": {
        "summary": "Grant a member an explicit permission on the stack (101 read, 102 write, "
        "103 admin).",
        "request": _object({"permission": _GRANTABLE}),
        "responses": {"204": None},
    },
    "export_instance_audit_log_events": {
        "summary": "Every organization's audit log entries and the site-level ones in a time "
        "window (site admins); siteLevel=true for only the site-level ones.",
        "query": [
            *_AUDIT_EXPORT_QUERY,
            {"name": "siteLevel", "required": False, "schema": {"type": "boolean"}},
        ],
        "responses": {"200": _STRING},
        "errors": [403],
    },
}

# Operations with the same shapes as another one.
SAME_AS: dict[str, str] = {
    # The one route creating the four kinds of update, by its own id (its body check reads it).
    "create_update": "create_update_for_update",
    "rotate_org_token": "rotate_personal_token",
    "rotate_team_token": "rotate_personal_token",
    "bootstrap_first_admin_alias": "bootstrap_first_admin",
    "get_pulumi_spec": "get_openapi_document",
    # Previews write no checkpoints (403), but the paths exist for every kind.
    "patch_update_checkpoint_preview": "patch_update_checkpoint_update",
    "patch_update_checkpoint_delta_preview": "patch_update_checkpoint_delta_update",
    "patch_update_verbatim_checkpoint_preview": "patch_update_verbatim_checkpoint_update",
}

# Catalogued operations answering other success statuses than the catalogue names.
REPLACED_RESPONSES: dict[str, dict[str, Any]] = {
    # The CLI accepts any 2xx for engine events; they answer 200 with no body (seed 000).
    **{f"record_engine_event_{kind}": {"200": None} for kind in KINDS},
    **{f"record_engine_event_batch_{kind}": {"200": None} for kind in KINDS},
    "cancel_deployment": {"204": None},
    # Deployment schedules' SDK methods read no answer; the handlers answer 204 No Content.
    **{
        name: {"204": None}
        for name in (
            "delete_scheduled_deployment",
            "pause_scheduled_deployment",
            "resume_scheduled_deployment",
            "pause_stack_deployments",
            "resume_stack_deployments",
            "pause_org_deployments",
            "resume_org_deployments",
        )
    },
}

# Additional success statuses of catalogued operations.
EXTRA_RESPONSES: dict[str, dict[str, Any]] = {}

# Additional error statuses of catalogued operations.
EXTRA_ERRORS: dict[str, list[int]] = {
    # The conversation's `cloudContext.orgId` names an organization that does not exist.
    "copilot_skill": [404],
    # Already a member; the last admin cannot leave or be demoted (409).
    "add_organization_member": [409],
    "update_organization_member": [409],
    "delete_organization_member": [409],
    # An invitee who is not a user, already a member or already invited.
    "batch_create_org_invite_email": [404, 409],
    "accept_org_invite": [409],
    "create_pulumi_team": [409],
    # A deployment that already finished cannot be cancelled. The official SDK's
    # `cancel_deployment` reads no answer, so the 204 of a cancel it accepts suits it.
    "cancel_deployment": [409],
    # No agent pool can run it: the stack's settings name none and the organization has none.
    "create_api_deployment_handler_v2": [409],
    # The state of a version that state retention pruned (gateway/handlers/retention.py).
    "export_stack_at_version": [410],
    "get_stack_resources": [410],
    "get_stack_resource": [410],
}

# Operations whose handlers read an absent or empty body as `{}`; every other body is required.
OPTIONAL_BODIES: tuple[str, ...] = (
    *(f"start_update_for_{kind}" for kind in KINDS),
    *(f"renew_update_lease_{kind}" for kind in KINDS),
    "bootstrap_first_admin",
    "bootstrap_first_admin_alias",
    "log_only_decrypt_value",
    "log_only_batch_decrypt_value",
    "register_agent",
    # No body adds the user as a member.
    "add_organization_member",
    # No body enables the user without a new token.
    "enable_user",
)

# Operations answering what was stored as sent, in another operation's request shape:
# deployment settings keep nested members as the client wrote them (the SDK's response
# models require members, such as `cacheOptions.enable`, that its request models do not).
ANSWERED_AS_SENT: dict[str, str] = {
    "get_deployment_settings": "replace_deployment_settings",
    "patch_deployment_settings": "patch_deployment_settings",
    "replace_deployment_settings": "replace_deployment_settings",
}

# Operations whose bodies may leave out any member at any depth (or send it null), members
# the SDK's models require included: deployment settings are merged into what is stored (and
# a deployment's or a schedule's overrides into the stack's settings), so a partial object is
# a change of the members it names. Their members' types still hold.
PARTIAL_BODIES: tuple[str, ...] = (
    "patch_deployment_settings",
    "replace_deployment_settings",
    "get_deployment_settings",
    "create_api_deployment_handler_v2",
)
# Operations with such a partial member: a scheduled deployment's `request`.
PARTIAL_MEMBERS: dict[str, str] = {
    "create_scheduled_deployment": "request",
    "update_scheduled_deployment": "request",
}

# Request members this server reads besides those the catalogue names (strict bodies accept
# exactly the members their schema names).
# Cairn's roles are admin, member and viewer (read-only): of the SDK's OrganizationRole
# values only the first two, and `viewer` besides (gateway/convert.py `parse_role`).
_MEMBER_ROLE = {"type": ["string", "null"], "enum": ["admin", "member", "viewer", None]}
EXTRA_REQUEST_MEMBERS: dict[str, dict[str, Any]] = {
    # The role by id, as `PATCH …/members/{userLogin}` takes it (admin, member or viewer).
    "add_organization_member": {"fgaRoleId": _MEMBER_ROLE, "role": _MEMBER_ROLE},
    "update_organization_member": {"fgaRoleId": _MEMBER_ROLE, "role": _MEMBER_ROLE},
}

# Query parameters of catalogued operations that this server reads in another shape.
# Engine events: the catalogue's `type` is a list of integer "type codes" that Pulumi does not
# define anywhere public; Cairn filters by the names the events carry (`type` of each event:
# `resourcePreEvent`, ...; the `Event` suffix may be left out), repeated or comma-separated.
_EVENT_TYPE_NAMES = {
    "type": "array",
    "items": {"type": "string", "pattern": "^[A-Za-z0-9]{1,64}$"},
}
QUERY_SCHEMAS: dict[str, dict[str, Any]] = {
    **{f"get_engine_events_{kind}": {"type": _EVENT_TYPE_NAMES} for kind in KINDS},
    # Pages count from 1 (0: the first); at most 500 runs a page.
    "list_drift_runs": {
        "page": {"type": "integer", "minimum": 0},
        "pageSize": {"type": "integer", "minimum": 0, "maximum": 500},
    },
}

# Operations whose success answer has another shape per media type.
MEDIA_SCHEMAS: dict[str, dict[str, Any]] = {
    "export_audit_log_events_handler_v1": _AUDIT_EXPORT_MEDIA,
    "export_instance_audit_log_events": _AUDIT_EXPORT_MEDIA,
}

# Pulumi's error body, answered for every 4xx and 5xx.
# Members of catalogued components this server reads in more shapes than the SDK writes.
# A deployment's environment variable is a plain string or a SecretValue, as Pulumi Cloud's
# REST API takes both (the SDK writes only the second).
# A SecretValue as an environment variable: its three members only, one of them a string
# (agent_pools `is_secret_value`); stored with the secret encrypted.
_ENVIRONMENT_SECRET: dict[str, Any] = {
    "type": "object",
    "properties": {
        "plaintext": _OPTIONAL_STRING,
        "secret": _OPTIONAL_STRING,
        "ciphertext": {**_OPTIONAL_STRING, "contentEncoding": "base64"},
    },
    "additionalProperties": False,
    # Some member is a string (not every member something else).
    "not": {"additionalProperties": {"not": _STRING}},
}
COMPONENT_MEMBERS: dict[str, dict[str, Any]] = {
    "OperationContextRequest": {
        "environmentVariables": {
            "type": ["object", "null"],
            "additionalProperties": {
                "anyOf": [{"type": "string"}, _ENVIRONMENT_SECRET, {"type": "null"}],
            },
        }
    }
}

COMPONENTS: dict[str, dict[str, Any]] = {
    "DeletedStack": _object(
        {
            "id": _STRING,
            "programId": _STRING,
            "projectName": _STRING,
            "stackName": _STRING,
            "version": {"type": "integer"},
            "deletedAt": {"type": "integer"},
            "lastUpdate": {"$ref": _REF + "UpdateSummary"},
        },
        {"deletedBy": _STRING},
    ),
    "Error": _object({"code": {"type": "integer"}, "message": _STRING}),
    "Webhook": _WEBHOOK,
    "WebhookResponse": _WEBHOOK_RESPONSE,
    "WebhookDelivery": _WEBHOOK_DELIVERY,
}
