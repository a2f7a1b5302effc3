"""Which service methods a team's own tools may call with an access token, and how.

Cairn's own processes call any method with a signed principal (`signing.py`). A call made
with an access token instead is held to exactly what the REST route twin of that method
requires: the same organization role or stack permission, found from the same names, and
recorded in the audit log under the same event when it changes something. A method missing
from this table is internal to Cairn: it has no REST twin, or its twin needs a credential
other than an access token (update lease tokens, agent pool tokens), or what it trusts its
caller to have checked cannot be checked from the request alone (UpdateTeam, for one, takes
stack ids the REST route resolves from names within the organization).
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

from protos.cairn.v1 import common_pb2, identity_pb2


class Scope(Enum):
    USER = "user"  # any valid access token
    ORG = "org"  # `role` in the organization named by the string member `field`
    STACK = "stack"  # `permission` on the stack named by the StackRef member `field`
    STACK_ID = "stack_id"  # `permission` on the stack whose stable id is the member `field`


@dataclass(frozen=True)
class MethodAccess:
    scope: Scope
    # The request member naming the scope; dotted for a nested message's member.
    field: str = ""
    role: common_pb2.Role.ValueType = common_pb2.ROLE_UNSPECIFIED
    permission: identity_pb2.StackPermission.ValueType = identity_pb2.STACK_PERMISSION_NONE
    # Changes who may do what: personal access tokens only (as on the REST twin).
    manages_access: bool = False
    # The REST twin's audit event; set for every method that changes something.
    audit_event: str = ""
    # Members that name the caller: filled in when empty, refused when naming someone else.
    caller_fields: tuple[str, ...] = ()


VIEWER = common_pb2.ROLE_VIEWER
MEMBER = common_pb2.ROLE_MEMBER
ADMIN = common_pb2.ROLE_ADMIN
READ = identity_pb2.STACK_PERMISSION_READ
WRITE = identity_pb2.STACK_PERMISSION_WRITE
STACK_ADMIN = identity_pb2.STACK_PERMISSION_ADMIN


def _org(
    role: common_pb2.Role.ValueType,
    field: str = "organization",
    *,
    manages_access: bool = False,
    audit_event: str = "",
    caller_fields: tuple[str, ...] = (),
) -> MethodAccess:
    return MethodAccess(
        Scope.ORG,
        field=field,
        role=role,
        manages_access=manages_access,
        audit_event=audit_event,
        caller_fields=caller_fields,
    )


def _stack(permission: identity_pb2.StackPermission.ValueType, event: str = "") -> MethodAccess:
    return MethodAccess(Scope.STACK, field="ref", permission=permission, audit_event=event)


def _stack_id(permission: identity_pb2.StackPermission.ValueType, event: str = "") -> MethodAccess:
    return MethodAccess(Scope.STACK_ID, field="stack_id", permission=permission, audit_event=event)


_IDENTITY = {
    "GetOrganization": _org(VIEWER),
    "ListMembers": _org(VIEWER),
    "ListMemberTeams": _org(VIEWER),
    "ListTeams": _org(VIEWER),
    "GetTeam": _org(VIEWER),
    "UpdateOrganization": _org(ADMIN, manages_access=True, audit_event="organization.update"),
    "AddMember": _org(ADMIN, manages_access=True, audit_event="member.add"),
    "UpdateMember": _org(ADMIN, manages_access=True, audit_event="member.update"),
    "RemoveMember": _org(ADMIN, manages_access=True, audit_event="member.remove"),
    "CreateTeam": _org(
        ADMIN, manages_access=True, audit_event="team.create", caller_fields=("creator_login",)
    ),
    "DeleteTeam": _org(ADMIN, manages_access=True, audit_event="team.delete"),
}
_STACKS = {
    "CreateStack": _org(MEMBER, field="ref.organization", audit_event="stack.create"),
    "ProjectExists": _org(VIEWER),
    "GetStack": _stack(READ),
    "DeleteStack": _stack(STACK_ADMIN, "stack.delete"),
    "RenameStack": _stack(WRITE, "stack.rename"),
    "ReplaceStackTags": _stack(WRITE, "stack.tags.update"),
    "UpdateNotificationSettings": _stack(WRITE, "stack.notifications.update"),
    "ReassignStackOwner": _stack(STACK_ADMIN, "stack.ownership.update"),
    "GetAnnotation": _stack(READ),
    "UpsertAnnotation": _stack(WRITE, "stack.annotation.update"),
    "GetStarterWorkflow": _stack(READ),
    "ListDownstreamReferences": _stack(READ),
}
_UPDATES = {
    "GetUpdateStatus": _stack_id(READ),
    "ListEngineEvents": _stack_id(READ),
    "ListUpdates": _stack_id(READ),
    "GetUpdate": _stack_id(READ),
    "ExportDeployment": _stack_id(READ),
    "ListResources": _stack_id(READ),
    "GetPreview": _stack_id(READ),
    "ListPreviews": _stack_id(READ),
    "ListActivity": _stack_id(READ),
    "GetUpdateTimeline": _stack_id(READ),
    "SummariseUpdate": _stack_id(READ),
    "ListStackReferences": _stack_id(READ),
    "CancelUpdate": _stack_id(WRITE, "update.cancel"),
    "ImportDeployment": _stack_id(WRITE, "stack.import"),
}
_SECRETS = {
    "Encrypt": _stack_id(WRITE, "secret.encrypt"),
    "Decrypt": _stack_id(WRITE, "secret.decrypt"),
    "BatchEncrypt": _stack_id(WRITE, "secret.encrypt"),
    "BatchDecrypt": _stack_id(WRITE, "secret.decrypt"),
    "LogDecryption": _stack_id(READ, "secret.decrypt.logged"),
}
_AGENT_POOLS = {
    "ListPools": _org(ADMIN),
    "GetPool": _org(ADMIN),
    "CreatePool": _org(ADMIN, audit_event="agent_pool.create"),
    "UpdatePool": _org(ADMIN, audit_event="agent_pool.update"),
    "DeletePool": _org(ADMIN, audit_event="agent_pool.delete"),
    "GetDeploymentSettings": _stack_id(READ),
    "UpdateDeploymentSettings": _stack_id(WRITE, "deployment_settings.update"),
    "DeleteDeploymentSettings": _stack_id(WRITE, "deployment_settings.delete"),
    "EncryptSettingsSecret": _stack_id(WRITE, "deployment_settings.encrypt"),
    "CreateDeployment": _stack_id(WRITE, "deployment.create"),
    "GetDeployment": _stack_id(READ),
    "GetDeploymentLogs": _stack_id(READ),
    "CancelDeployment": _stack_id(WRITE, "deployment.cancel"),
}
_AUDIT = {
    "ListAuditEvents": _org(ADMIN, field="filter.organization"),
    "ExportAuditEvents": _org(ADMIN, field="filter.organization"),
}

TOKEN_ACCESS: dict[str, MethodAccess] = {
    f"/cairn.v1.{service}/{name}": access
    for service, methods in (
        ("IdentityService", _IDENTITY),
        ("StacksService", _STACKS),
        ("UpdatesService", _UPDATES),
        ("SecretsService", _SECRETS),
        ("AgentPoolsService", _AGENT_POOLS),
        ("AuditService", _AUDIT),
    )
    for name, access in methods.items()
}

# Server reflection answers any valid access token.
REFLECTION_ACCESS = MethodAccess(Scope.USER)
# Health checks need no credential: load balancers and orchestrators call them.
UNAUTHENTICATED_PREFIXES = ("/grpc.health.v1.Health/",)
