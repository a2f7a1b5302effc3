"""The limits the services enforce, as JSON Schema, for /openapi.json and the route table.

Every fragment is built from services/common/limits.py, the definitions the services'
validators compile, so the document and the server cannot drift apart. `REQUEST_MEMBERS`
and `QUERY_PARAMETERS` merge these into the catalogue's schemas (gateway/schemas/__init__.py);
`PATH_VARIABLES` constrains named path segments (gateway/openapi.py).

The route table's body check (BodyChecker) reads types, enums and shapes only: the services
word the refusals of a bad name or an over-long text themselves.
"""

from __future__ import annotations

from typing import Any

from gateway.views import ROLES_BY_LABEL
from services.common import limits

Schema = dict[str, Any]


def _whole(pattern: str) -> str:
    """A pattern matching the whole value, as the services' `fullmatch` does."""
    return f"^(?:{pattern})$"


# Integers travel in protobuf fields of these widths (gateway/convert.py); query integers
# are 32 bits wide unless QUERY_INTEGER_BITS says otherwise.
UPDATE_KINDS = ("update", "preview", "refresh", "destroy")
INT32_BITS = 32
INT64_BITS = 64
QUERY_INTEGER_BITS: dict[tuple[str, str], int] = {
    ("get_deployment_logs", "offset"): INT64_BITS,
}


def integer_range(bits: int) -> Schema:
    """The values a signed integer of `bits` bits holds."""
    bound = 1 << (bits - 1)
    return {"minimum": -bound, "maximum": bound - 1}


IDENTITY_NAME: Schema = {"type": "string", "pattern": _whole(limits.IDENTITY_NAME)}
STACK_NAME: Schema = {
    "type": "string",
    "pattern": _whole(limits.STACK_NAME),
    "not": {"enum": list(limits.RESERVED_STACK_NAMES)},
}
EMAIL: Schema = {
    "type": "string",
    "maxLength": limits.MAX_EMAIL_LENGTH,
    "pattern": _whole(limits.EMAIL),
}
LINK_SECRET: Schema = {"type": "string", "pattern": _whole(limits.LINK_SECRET)}


def text(max_length: int, *, is_required: bool = False) -> Schema:
    """Free text: bounded, never a NUL; a required one is not empty either."""
    schema: Schema = {"maxLength": max_length, "pattern": _whole(limits.TEXT_WITHOUT_NUL)}
    if is_required:
        schema["minLength"] = 1
    return schema


def _nullable(schema: Schema) -> Schema:
    kind = schema.get("type")
    return {**schema, "type": [kind, "null"]} if isinstance(kind, str) else schema


def _optional_url() -> Schema:
    """An http(s) URL, or empty for none."""
    return {
        "maxLength": limits.MAX_URL_LENGTH,
        "pattern": f"^(?:|{limits.HTTP_URL})$",
    }


PATH_VARIABLES: dict[str, Schema] = {
    "orgName": IDENTITY_NAME,
    "userLogin": IDENTITY_NAME,
    "login": IDENTITY_NAME,
    "userName": IDENTITY_NAME,
    "teamName": IDENTITY_NAME,
    "hookName": IDENTITY_NAME,
    "projectName": STACK_NAME,
    "stackName": STACK_NAME,
}

# A JSON Web Key Set (RFC 7517) as it travels: the SDK's JSONWebKeySet model names the
# fields of the Go type behind it, whose JSON is this. Public keys only (no private `d`).
JWK_SET: Schema = {
    "type": "object",
    "properties": {
        "keys": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {"kty": {"type": "string"}},
                "required": ["kty"],
                "not": {"required": ["d"]},
                "additionalProperties": True,
            },
        }
    },
    "required": ["keys"],
    "additionalProperties": True,
}

_DISPLAY_NAME = text(limits.MAX_DISPLAY_NAME_LENGTH)
_INT32 = integer_range(INT32_BITS)
# A stack's tags: names and value lengths as the stacks service checks them.
_TAGS: Schema = {
    "propertyNames": {"pattern": _whole(limits.TAG_NAME)},
    "additionalProperties": {"type": "string", "maxLength": limits.MAX_TAG_VALUE_LENGTH},
}
_INT64 = integer_range(INT64_BITS)
# A role as `parse_role` (gateway/views.py) reads it: Cairn's three, not all the SDK's.
_ROLE = {"type": "string", "enum": sorted(ROLES_BY_LABEL)}
# Whom an invitation is for: a registered user's login, or an email address (checked as one
# when it holds an '@'); a recipient who is not a user and has no '@' is a 404.
_INVITE_RECIPIENT: Schema = {
    "type": "string",
    "anyOf": [{"pattern": "^[^@\\x00]+$"}, EMAIL],
}
_DESCRIPTION = text(limits.MAX_DESCRIPTION_LENGTH)
_TOKEN_NAME = text(limits.MAX_TOKEN_NAME_LENGTH, is_required=True)

# `PATCH /api/orgs/{orgName}` keeps the default stack permission only; the other settings
# are fixed (GET answers them). The official SDK sends every setting, unset ones as null,
# false or 0, so those values are taken and change nothing; any other value is refused.
_UNSET_BOOLEAN: Schema = {"enum": [False, None]}
_UNSET_NUMBER: Schema = {"enum": [0, None]}
_UNSET: Schema = {"enum": [None]}
ORGANIZATION_SETTINGS: dict[str, Schema] = {
    # 104 (creator) is a stack creator's own permission, never a default.
    "setDefaultStackPermission": {"enum": [0, 101, 102, 103, None]},
    "setDefaultEnvironmentPermission": _UNSET,
    "setDefaultAccountPermission": _UNSET_NUMBER,
    **{
        name: _UNSET_BOOLEAN
        for name in (
            "setMembersCanCreateStacks",
            "setMembersCanInviteCollaborators",
            "setMembersCanDeleteStacks",
            "setMembersCanTransferStacks",
            "setMembersCanCreateAccounts",
            "setMembersCanCreateTeams",
            "setNeoEnabled",
            "setNeoCLIExplanationsDisabled",
            "setNaturalLanguageSearchDisabled",
            "setNeoAgentDisabled",
        )
    },
    "setAiEnablement": _UNSET,
    "setNeoApprovalMode": _UNSET,
    "setNeoTaskSharingMode": _UNSET,
    "setPreferredVCS": _UNSET,
    "setDefaultDeploymentRoleId": _UNSET,
    "setDefaultAgentPoolID": _UNSET,
    "setMaxAccessTokenExpiryDays": _UNSET_NUMBER,
}

# A stack a team change names: both names, as `_stack` (gateway/handlers/teams.py) needs them.
# (`patternProperties`, not `properties`: the member's schema stays the SDK model's, which a
# strict body closes.)
_TEAM_STACK_NAMES: Schema = {"patternProperties": {"^(projectName|stackName)$": STACK_NAME}}
# A grant: 101 (read) to 104 (creator); 0 removes nothing here (`parse_permission`).
_TEAM_GRANT: Schema = {
    "patternProperties": {
        **_TEAM_STACK_NAMES["patternProperties"],
        "^permission$": {"enum": [101, 102, 103, 104]},
    }
}
# Cairn has no environments (Pulumi ESC): a team's environment changes must be null.
_TEAM_CHANGES: dict[str, Schema] = {
    "addStackPermission": _TEAM_GRANT,
    "editStackPermission": _TEAM_GRANT,
    "removeStack": _TEAM_STACK_NAMES,
    **{
        name: _UNSET
        for name in (
            "addEnvironmentPermission",
            "editEnvironmentPermission",
            "removeEnvironment",
        )
    },
}
_TEAM_CHANGE_RULES: Schema = {
    # A member action names its member.
    "anyOf": [
        {"patternProperties": {"^memberAction$": {"type": "null"}}},
        {
            "patternProperties": {"^member$": {"type": "string", "minLength": 1}},
            "required": ["member"],
        },
    ],
    # One stack permission change at a time.
    "not": {
        "patternProperties": {"^(addStackPermission|editStackPermission)$": {"type": "object"}},
        "required": ["addStackPermission", "editStackPermission"],
    },
}

# An OIDC issuer's authorization policy, as the identity service validates it.
_NAMED: Schema = {"type": "string", "minLength": 1}
_CLAIM_VALUE: Schema = {"type": "string", "minLength": 1, "maxLength": limits.MAX_RULE_VALUE_LENGTH}
AUTH_POLICY_RULE: Schema = {
    "type": "object",
    "properties": {
        "decision": {"type": "string", "enum": ["allow", "deny"]},
        "tokenType": {"type": "string", "enum": ["organization", "team", "personal"]},
        "teamName": {"type": ["string", "null"]},
        "userLogin": {"type": ["string", "null"]},
        "runnerID": {"type": ["string", "null"]},
        "roleID": {"type": ["string", "null"]},
        "authorizedPermissions": {"type": ["array", "null"], "items": {"type": "string"}},
        "rules": {
            "type": "object",
            "maxProperties": limits.MAX_RULES_PER_POLICY,
            "propertyNames": {"pattern": _whole(limits.CLAIM_NAME)},
            "additionalProperties": {
                "anyOf": [
                    _CLAIM_VALUE,
                    {"type": "array", "minItems": 1, "items": _CLAIM_VALUE},
                ]
            },
        },
    },
    "required": ["decision", "tokenType", "rules"],
    "allOf": [
        # A team policy names its team, a personal one its user.
        {
            "if": {"properties": {"tokenType": {"const": "team"}}},
            "then": {"properties": {"teamName": _NAMED}, "required": ["teamName"]},
        },
        {
            "if": {"properties": {"tokenType": {"const": "personal"}}},
            "then": {"properties": {"userLogin": _NAMED}, "required": ["userLogin"]},
        },
        # An allow policy needs at least one claim rule.
        {
            "if": {"properties": {"decision": {"const": "allow"}}},
            "then": {"properties": {"rules": {"minProperties": 1}}},
        },
    ],
}

# An UpdateProgramRequest as the updates handler reads it (gateway/handlers/updates.py
# `create_update`), after the Pulumi CLI's `apitype.UpdateProgramRequest`: the CLI sends
# every member (Go's nil slices and maps as null), other clients may leave any out, and each
# member present has its type. `options.dryRun` and config values may not be null.
_NULLABLE_STRING: Schema = {"type": ["string", "null"]}
_NULLABLE_BOOLEAN: Schema = {"type": ["boolean", "null"]}
UPDATE_PROGRAM: Schema = {
    "type": "object",
    "properties": {
        "name": _NULLABLE_STRING,
        "runtime": _NULLABLE_STRING,
        "main": _NULLABLE_STRING,
        "description": _NULLABLE_STRING,
        "options": {
            "type": ["object", "null"],
            "properties": {
                "localPolicyPackPaths": {"type": ["array", "null"], "items": {"type": "string"}},
                "color": _NULLABLE_STRING,
                "dryRun": {"type": "boolean"},
                "parallel": {"type": ["integer", "null"]},
                **{
                    name: _NULLABLE_BOOLEAN
                    for name in (
                        "showConfig",
                        "showReplacementSteps",
                        "showNames",
                        "summary",
                        "debug",
                    )
                },
            },
        },
        "config": {
            "type": ["object", "null"],
            "additionalProperties": {
                "type": "object",
                "properties": {
                    "string": _NULLABLE_STRING,
                    "secret": _NULLABLE_BOOLEAN,
                    "object": _NULLABLE_BOOLEAN,
                },
            },
        },
        "metadata": {
            "type": ["object", "null"],
            "properties": {
                "message": _NULLABLE_STRING,
                "environment": {
                    "type": ["object", "null"],
                    "additionalProperties": {"type": "string"},
                },
            },
        },
        "coherenceWindow": _NULLABLE_STRING,
    },
}

# An untyped deployment as the updates service imports it (`import_stack`, or a new
# stack's initial `state`).
IMPORTED_STATE: Schema = {
    "type": "object",
    "properties": {
        "version": {
            "type": "integer",
            "minimum": limits.MIN_DEPLOYMENT_VERSION,
            "maximum": limits.MAX_DEPLOYMENT_VERSION,
        },
        "features": {"type": ["array", "null"], "items": {"type": "string"}},
        "deployment": {"type": "object", "minProperties": 1},
    },
    "required": ["version", "deployment"],
}

# Operation id -> request body member -> keywords merged into the member's schema (the
# member must already be in it: adding one would widen a strict body).
REQUEST_MEMBERS: dict[str, dict[str, Schema]] = {
    **{
        name: {
            "login": _nullable(IDENTITY_NAME),
            "organization": _nullable(IDENTITY_NAME),
            "name": _DISPLAY_NAME,
            "email": _nullable(EMAIL),
        }
        for name in ("bootstrap_first_admin", "bootstrap_first_admin_alias")
    },
    "update_current_user": {
        "name": _DISPLAY_NAME,
        "email": _nullable(EMAIL),
        "avatarUrl": _optional_url(),
    },
    "create_user": {
        "login": IDENTITY_NAME,
        "email": EMAIL,
        "name": _DISPLAY_NAME,
        "avatarUrl": _optional_url(),
    },
    "accept_invite_link": {
        "code": LINK_SECRET,
        "login": IDENTITY_NAME,
        "name": _DISPLAY_NAME,
    },
    "create_organization": {"name": IDENTITY_NAME},
    "create_pulumi_team": {
        "name": IDENTITY_NAME,
        "displayName": _DISPLAY_NAME,
        "description": _DESCRIPTION,
    },
    "update_team": {
        "newDisplayName": _DISPLAY_NAME,
        "newDescription": _DESCRIPTION,
        **_TEAM_CHANGES,
    },
    "update_organization_settings": ORGANIZATION_SETTINGS,
    "create_personal_token": {"description": _DESCRIPTION},
    # Custom roles do not exist here: a token is an admin's or a member's (`admin`).
    "create_org_token": {
        "name": _TOKEN_NAME,
        "description": _DESCRIPTION,
        "roleID": {"enum": ["", None]},
    },
    "create_team_token": {"name": _TOKEN_NAME, "description": _DESCRIPTION},
    "copilot_skill": {
        "query": {
            "type": "string",
            "maxLength": limits.MAX_COPILOT_QUERY_LENGTH,
            "pattern": r"\S",
        }
    },
    "rename_stack": {"newName": STACK_NAME, "newProject": STACK_NAME},
    "create_stack": {
        "stackName": STACK_NAME,
        "tags": _TAGS,
        "config": {"patternProperties": {"^environment$": {"minLength": 1}}},
        # An initial state is imported as `import_stack` imports one.
        "state": {"anyOf": [IMPORTED_STATE, {"type": "null"}]},
    },
    # An empty secret is refused as missing.
    "encrypt_deployment_settings_secret": {"secret": {"minLength": 1}},
    "restore_deleted_stack": {"stackName": _nullable(STACK_NAME)},
    "import_stack": {
        name: IMPORTED_STATE["properties"][name] for name in ("version", "deployment")
    },
    **{
        name: {
            "name": {"maxLength": limits.MAX_POOL_NAME_LENGTH, "pattern": r"\S"},
            "description": {"maxLength": limits.MAX_POOL_DESCRIPTION_LENGTH},
        }
        for name in ("create_org_agent_pool", "patch_org_agent_pool")
    },
    "transfer_stack": {"toOrg": IDENTITY_NAME},
    # Cairn negotiates journaling (1) or not (anything else); the value travels as an int32.
    **{
        f"start_update_for_{kind}": {
            "journalVersion": {**_INT32, "type": ["integer", "null"]},
            "tags": _TAGS,
        }
        for kind in UPDATE_KINDS
    },
    **{
        name: {
            "name": {"maxLength": limits.MAX_ISSUER_NAME_LENGTH, "pattern": r"\S"},
            "thumbprints": {
                "items": {"type": "string", "pattern": _whole(limits.CERTIFICATE_THUMBPRINT)}
            },
            # Seconds (0: no limit of the issuer's own).
            "maxExpiration": {"minimum": 0, "maximum": _INT64["maximum"]},
            "jwks": {"anyOf": [JWK_SET, {"type": "null"}]},
        }
        for name in ("register_oidc_issuer", "update_oidc_issuer")
    },
    # The new owner: a login the stacks service checks as it checks names.
    "reassign_stack_ownership": {"githubLogin": STACK_NAME},
    "batch_create_org_invite_email": {
        "invites": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "properties": {
                    "email": _INVITE_RECIPIENT,
                    "role": _ROLE,
                    "roleId": {**_ROLE, "type": ["string", "null"], "enum": [*_ROLE["enum"], None]},
                },
                "required": ["email", "role"],
                "additionalProperties": False,
            },
        }
    },
}

# Operation id -> keywords merged into the whole request schema.
REQUEST_KEYWORDS: dict[str, Schema] = {
    "update_team": _TEAM_CHANGE_RULES,
    # The CLI sends both; a project move alone keeps the name, a name alone the project.
    "rename_stack": {
        "required": [],
        "anyOf": [{"required": ["newName"]}, {"required": ["newProject"]}],
    },
}

# Operation id -> members a request must carry (besides what the catalogue requires).
REQUIRED_MEMBERS: dict[str, tuple[str, ...]] = {
    "import_stack": ("version", "deployment"),
    "copilot_skill": ("query",),
}

# Whole request bodies whose shape the catalogue leaves open.
REQUEST_BODIES: dict[str, Schema] = {
    # `create_update` is the route's own id, whose schema the body check reads (one route
    # serves the four kinds).
    "create_update": UPDATE_PROGRAM,
    **{f"create_update_for_{kind}": UPDATE_PROGRAM for kind in UPDATE_KINDS},
    "update_auth_policy": {
        "type": "object",
        "properties": {
            "policies": {
                "type": "array",
                "maxItems": limits.MAX_POLICY_RULES,
                "items": AUTH_POLICY_RULE,
            }
        },
        "required": ["policies"],
    },
    # A tag set merged into the stack's: names and value lengths as the stacks service checks.
    "update_stack_tags": {"type": "object", **_TAGS},
    # RFC 8693 token exchange (JSON or form): the four members the exchange needs.
    "token": {
        "type": "object",
        "properties": {
            "grant_type": {"type": "string", "enum": [limits.TOKEN_EXCHANGE_GRANT_TYPE]},
            "subject_token_type": {"type": "string", "enum": list(limits.SUBJECT_TOKEN_TYPES)},
            "subject_token": {"type": "string", "minLength": 1},
            "audience": {
                "type": "string",
                "pattern": _whole(limits.TOKEN_EXCHANGE_AUDIENCE_PREFIX + limits.IDENTITY_NAME),
            },
        },
        "required": ["grant_type", "subject_token", "subject_token_type", "audience"],
    },
}

# Operation id -> query parameter -> keywords merged into its schema.
QUERY_PARAMETERS: dict[str, dict[str, Schema]] = {
    **{
        name: {"filter": {"type": "string", "enum": ["active", "revoked", "all"]}}
        for name in ("list_personal_tokens", "list_org_tokens", "list_team_tokens")
    },
    **{
        name: {
            "version": {"minimum": 0, "maximum": limits.MAX_ANNOTATION_VERSION},
            "source": {"pattern": _whole(limits.ANNOTATION_SOURCE)},
        }
        for name in ("upsert_stacks_annotations", "get_stacks_annotation")
    },
    # 0 (or absent) means the default page size and the first page.
    **{
        name: {
            "pageSize": {"minimum": 0, "maximum": limits.MAX_DEPLOYMENT_PAGE_SIZE},
            "page": {"minimum": 0},
        }
        for name in ("list_stack_deployments_handler_v2", "list_org_deployments")
    },
    # Page 0 is every entry (at most MAX_FEED_ITEMS); pages from 1 hold `pageSize` entries.
    **{
        name: {
            "pageSize": {"minimum": 0, "maximum": limits.MAX_FEED_ITEMS},
            "page": {"minimum": 0},
        }
        for name in ("get_stack_activity", "get_stack_previews")
    },
    "get_stack_updates": {
        "pageSize": {"minimum": 0, "maximum": limits.MAX_HISTORY_PAGE_SIZE},
        "page": {"minimum": 0},
    },
}
