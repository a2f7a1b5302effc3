"""The catalogue of audit event types: every kind of audit entry, its name, display name and
description (served by `GET /api/orgs/{orgName}/auditlogs/event-types`).

Which route records which event is said by the route itself (`Route.audit` in
gateway/routes.py); this module holds only the kinds of entries, and imports nothing of the
gateway.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from enum import Enum

MUTATING_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


@dataclass(frozen=True)
class AuditEventType:
    """One kind of audit entry."""

    name: str
    display_name: str
    description: str
    # A member of the JSON body naming what a create makes; appended to the target.
    target_field: str = ""
    # A member of the JSON body worth naming in the description (a rename's new name).
    detail_field: str = ""
    # Outcomes that are not recorded: an agent's claim finding no work (every few seconds).
    quiet_statuses: frozenset[int] = frozenset()
    # When set, the only outcomes that are recorded.
    recorded_statuses: frozenset[int] | None = None

    def records(self, status: int) -> bool:
        """Whether a call that ended with `status` is recorded as this event."""
        if status in self.quiet_statuses:
            return False
        return self.recorded_statuses is None or status in self.recorded_statuses


class NotAudited(Enum):
    """A mutating route deliberately not recorded: made thousands of times per update, or
    every few seconds per agent (the update's create/start/cancel/complete and the agent's
    register/claim/finish are recorded instead), or a read that takes its options as a POST
    body. Refusals of such update-token and agent calls for their credential or path are
    still kept at site level (REFUSED_HOT_CALL_EVENT)."""

    NOT_AUDITED = "not audited"


NOT_AUDITED = NotAudited.NOT_AUDITED

STACK_CREATE = AuditEventType(
    "stack.create",
    "Stack Created",
    "A stack was created.",
    target_field="stackName",
)
STACK_DELETE = AuditEventType("stack.delete", "Stack Deleted", "A stack was deleted.")
STACK_RESTORE = AuditEventType(
    "stack.restore",
    "Stack Restored",
    "A deleted stack was restored with its history.",
    detail_field="stackName",
)
STACK_RENAME = AuditEventType(
    "stack.rename",
    "Stack Renamed",
    "A stack was renamed.",
    detail_field="newName",
)
STACK_TAGS_UPDATE = AuditEventType(
    "stack.tags.update",
    "Stack Tags Updated",
    "A stack's tags were changed.",
)
STACK_TRANSFER = AuditEventType(
    "stack.transfer",
    "Stack Transferred",
    "A stack moved to another organization.",
)
STACK_OWNERSHIP_UPDATE = AuditEventType(
    "stack.ownership.update",
    "Stack Ownership Changed",
    "A stack's owner was changed.",
)
STACK_PERMISSION_UPDATE = AuditEventType(
    "stack.permission.update",
    "Stack Permission Changed",
    "A team's or collaborator's access to a stack was changed.",
)
STACK_NOTIFICATIONS_UPDATE = AuditEventType(
    "stack.notifications.update",
    "Stack Notifications Changed",
    "A stack's notification settings were changed.",
)
STACK_ANNOTATION_UPDATE = AuditEventType(
    "stack.annotation.update",
    "Stack Annotation Written",
    "A new version of a stack annotation was stored.",
)
STACK_IMPORT = AuditEventType(
    "stack.import",
    "Stack Imported",
    "A stack's state was replaced by an import.",
)
UPDATE_CREATE = AuditEventType(
    "update.create",
    "Update Created",
    "An update, preview, refresh or destroy was created.",
)
UPDATE_START = AuditEventType("update.start", "Update Started", "An update was started.")
UPDATE_CANCEL = AuditEventType("update.cancel", "Update Cancelled", "An update was cancelled.")
UPDATE_COMPLETE = AuditEventType(
    "update.complete",
    "Update Completed",
    "An update ended (succeeded or failed).",
)
SECRET_ENCRYPT = AuditEventType(
    "secret.encrypt",
    "Secret Encrypted",
    "Values were encrypted with a stack's key.",
)
SECRET_DECRYPT = AuditEventType(
    "secret.decrypt",
    "Secret Decrypted",
    "Values were decrypted with a stack's key.",
)
SECRET_DECRYPT_LOGGED = AuditEventType(
    "secret.decrypt.logged",
    "Secret Decryption Reported",
    "A client reported decrypting values itself.",
)
AGENT_POOL_CREATE = AuditEventType(
    "agent_pool.create",
    "Agent Pool Created",
    "An agent pool was created.",
    detail_field="name",
)
AGENT_POOL_UPDATE = AuditEventType(
    "agent_pool.update",
    "Agent Pool Updated",
    "An agent pool was changed.",
    detail_field="name",
)
AGENT_POOL_DELETE = AuditEventType(
    "agent_pool.delete",
    "Agent Pool Deleted",
    "An agent pool was deleted.",
)
AGENT_REGISTER = AuditEventType("agent.register", "Agent Registered", "An agent joined its pool.")
DEPLOYMENT_CLAIM = AuditEventType(
    "deployment.claim",
    "Deployment Claimed",
    "An agent took a queued deployment.",
    quiet_statuses=frozenset({204}),
)
DEPLOYMENT_FINISH = AuditEventType(
    "deployment.finish",
    "Deployment Finished",
    "An agent reported a deployment's end.",
)
DEPLOYMENT_CREATE = AuditEventType(
    "deployment.create",
    "Deployment Created",
    "A deployment was queued.",
)
DEPLOYMENT_CANCEL = AuditEventType(
    "deployment.cancel",
    "Deployment Cancelled",
    "A deployment was cancelled.",
)
SCHEDULE_CREATE = AuditEventType(
    "deployment_schedule.create",
    "Deployment Schedule Created",
    "A scheduled deployment, drift detection or stack TTL was created.",
)
SCHEDULE_UPDATE = AuditEventType(
    "deployment_schedule.update",
    "Deployment Schedule Updated",
    "A scheduled deployment, drift detection or stack TTL was changed.",
)
SCHEDULE_DELETE = AuditEventType(
    "deployment_schedule.delete",
    "Deployment Schedule Deleted",
    "A scheduled deployment was deleted.",
)
SCHEDULE_PAUSE = AuditEventType(
    "deployment_schedule.pause",
    "Deployment Schedule Paused",
    "A scheduled deployment was paused.",
)
SCHEDULE_RESUME = AuditEventType(
    "deployment_schedule.resume",
    "Deployment Schedule Resumed",
    "A scheduled deployment was resumed.",
)
DEPLOYMENTS_PAUSE = AuditEventType(
    "deployments.pause",
    "Deployments Paused",
    "Deployments of a stack or an organization were paused (they stay queued).",
)
DEPLOYMENTS_RESUME = AuditEventType(
    "deployments.resume",
    "Deployments Resumed",
    "Paused deployments of a stack or an organization were resumed.",
)
DEPLOYMENT_SETTINGS_UPDATE = AuditEventType(
    "deployment_settings.update",
    "Deployment Settings Updated",
    "A stack's deployment settings were changed.",
)
DEPLOYMENT_SETTINGS_DELETE = AuditEventType(
    "deployment_settings.delete",
    "Deployment Settings Deleted",
    "A stack's deployment settings were removed.",
)
DEPLOYMENT_SETTINGS_ENCRYPT = AuditEventType(
    "deployment_settings.encrypt",
    "Deployment Secret Encrypted",
    "A deployment settings value was encrypted.",
)
TOKEN_CREATE = AuditEventType(
    "token.create",
    "Access Token Created",
    "An access token was created.",
)
TOKEN_ROTATE = AuditEventType(
    "token.rotate",
    "Access Token Rotated",
    "An access token got a new value; the old one stopped working.",
)
TOKEN_DELETE = AuditEventType(
    "token.delete",
    "Access Token Deleted",
    "An access token was revoked.",
)
MEMBER_ADD = AuditEventType("member.add", "Member Added", "A user joined an organization.")
MEMBER_UPDATE = AuditEventType(
    "member.update",
    "Member Role Changed",
    "A member's role was changed.",
)
MEMBER_REMOVE = AuditEventType("member.remove", "Member Removed", "A user left an organization.")
INVITE_CREATE = AuditEventType(
    "invite.create",
    "Invitations Sent",
    "Users were invited to an organization.",
)
INVITE_ACCEPT = AuditEventType(
    "invite.accept",
    "Invitation Accepted",
    "An invitation was accepted.",
)
INVITE_CANCEL = AuditEventType(
    "invite.cancel",
    "Invitation Cancelled",
    "An invitation was withdrawn.",
)
TEAM_CREATE = AuditEventType(
    "team.create",
    "Team Created",
    "A team was created.",
    detail_field="name",
)
TEAM_UPDATE = AuditEventType("team.update", "Team Updated", "A team was changed.")
TEAM_DELETE = AuditEventType("team.delete", "Team Deleted", "A team was deleted.")
ORGANIZATION_CREATE = AuditEventType(
    "organization.create",
    "Organization Created",
    "An organization was created.",
    target_field="name",
)
ORGANIZATION_UPDATE = AuditEventType(
    "organization.update",
    "Organization Updated",
    "An organization's settings changed.",
)
USER_DEFAULT_ORGANIZATION_UPDATE = AuditEventType(
    "user.default_organization.update",
    "Default Organization Changed",
    "A user chose another default organization.",
)
USER_CREATE = AuditEventType(
    "user.create",
    "User Created",
    "A site admin created a user.",
    target_field="login",
)
USER_DISABLE = AuditEventType(
    "user.disable",
    "User Disabled",
    "A site admin disabled a user; every access token of theirs was revoked.",
)
USER_ENABLE = AuditEventType(
    "user.enable",
    "User Enabled",
    "A site admin enabled a disabled user again.",
)
USER_PROFILE_UPDATE = AuditEventType(
    "user.profile.update",
    "Profile Updated",
    "A user changed their name, email or avatar.",
)
INVITE_LINK_ACCEPT = AuditEventType(
    "invite.link.accept",
    "Invitation Link Used",
    "Someone joined an organization through an invitation link, as a new user.",
    target_field="login",
)
INSTANCE_BOOTSTRAP = AuditEventType(
    "instance.bootstrap",
    "First Admin Created",
    "The instance's first admin was created.",
    target_field="login",
)
COPILOT_CHAT = AuditEventType(
    "copilot.chat",
    "Copilot Asked",
    "A copilot conversation was started or continued.",
)

WEBHOOK_CREATE = AuditEventType(
    "webhook.create", "Webhook Created", "An organization or stack webhook was created."
)
WEBHOOK_UPDATE = AuditEventType(
    "webhook.update", "Webhook Changed", "An organization or stack webhook was changed."
)
WEBHOOK_DELETE = AuditEventType(
    "webhook.delete", "Webhook Deleted", "An organization or stack webhook was deleted."
)
WEBHOOK_PING = AuditEventType(
    "webhook.ping", "Webhook Pinged", "A ping event was sent to a webhook."
)
WEBHOOK_REDELIVER = AuditEventType(
    "webhook.redeliver", "Webhook Event Redelivered", "A recorded webhook delivery was sent again."
)
STATE_RETENTION_UPDATE = AuditEventType(
    "state_retention.update",
    "History Retention Changed",
    "How many newest versions keep their full state changed (organization or stack); older "
    "versions' state was removed.",
)
# For a mutating call whose route names no event of its own (or that matched no route).
FALLBACK_EVENT = AuditEventType(
    "api.call", "API Call", "A mutating call with no more specific event."
)

# Refusals of the unrecorded update-token and agent calls for their credential or their path:
# kept (at site level), so spraying tokens or update ids at the hot routes leaves a trace.
CREDENTIAL_REFUSALS = frozenset({401, 404})
REFUSED_HOT_CALL_EVENT = dataclasses.replace(FALLBACK_EVENT, recorded_statuses=CREDENTIAL_REFUSALS)

# THE catalogue, in the order the event-types route lists it. Events of other routes may be
# listed before their routes exist; only events some route records (and the fallback) are
# served.
OIDC_ISSUER_REGISTER = AuditEventType(
    "oidc_issuer.register",
    "OIDC Issuer Registered",
    "An OIDC issuer was registered for token exchange.",
    target_field="name",
)
OIDC_ISSUER_UPDATE = AuditEventType(
    "oidc_issuer.update",
    "OIDC Issuer Updated",
    "An OIDC issuer's name, thumbprints, key set or longest token lifetime changed.",
)
OIDC_ISSUER_DELETE = AuditEventType(
    "oidc_issuer.delete", "OIDC Issuer Deleted", "An OIDC issuer is no longer trusted."
)
AUTH_POLICY_UPDATE = AuditEventType(
    "auth_policy.update",
    "Authorization Policy Updated",
    "The rules deciding which OIDC tokens an issuer's exchanges accept changed.",
)
# Exchanges the identity service grants are recorded there, under the organization, naming
# the issuer and the token's subject; the gateway records refusals (site level).
OIDC_EXCHANGE = AuditEventType(
    "oidc.exchange",
    "OIDC Token Exchanged",
    "A CI's OIDC token was exchanged for a short-lived access token (or refused).",
    recorded_statuses=frozenset(range(400, 500)),
)

EVENT_TYPES: tuple[AuditEventType, ...] = (
    STACK_CREATE,
    STACK_DELETE,
    STACK_RESTORE,
    STACK_RENAME,
    STACK_TAGS_UPDATE,
    STACK_TRANSFER,
    STACK_OWNERSHIP_UPDATE,
    STACK_PERMISSION_UPDATE,
    STACK_NOTIFICATIONS_UPDATE,
    STACK_ANNOTATION_UPDATE,
    WEBHOOK_CREATE,
    WEBHOOK_UPDATE,
    WEBHOOK_DELETE,
    WEBHOOK_PING,
    WEBHOOK_REDELIVER,
    STATE_RETENTION_UPDATE,
    STACK_IMPORT,
    UPDATE_CREATE,
    UPDATE_START,
    UPDATE_CANCEL,
    UPDATE_COMPLETE,
    SECRET_ENCRYPT,
    SECRET_DECRYPT,
    SECRET_DECRYPT_LOGGED,
    AGENT_POOL_CREATE,
    AGENT_POOL_UPDATE,
    AGENT_POOL_DELETE,
    AGENT_REGISTER,
    DEPLOYMENT_CLAIM,
    DEPLOYMENT_FINISH,
    DEPLOYMENT_CREATE,
    DEPLOYMENT_CANCEL,
    DEPLOYMENT_SETTINGS_UPDATE,
    DEPLOYMENT_SETTINGS_DELETE,
    DEPLOYMENT_SETTINGS_ENCRYPT,
    SCHEDULE_CREATE,
    SCHEDULE_UPDATE,
    SCHEDULE_DELETE,
    SCHEDULE_PAUSE,
    SCHEDULE_RESUME,
    DEPLOYMENTS_PAUSE,
    DEPLOYMENTS_RESUME,
    TOKEN_CREATE,
    TOKEN_ROTATE,
    TOKEN_DELETE,
    OIDC_ISSUER_REGISTER,
    OIDC_ISSUER_UPDATE,
    OIDC_ISSUER_DELETE,
    AUTH_POLICY_UPDATE,
    OIDC_EXCHANGE,
    MEMBER_ADD,
    MEMBER_UPDATE,
    MEMBER_REMOVE,
    INVITE_CREATE,
    INVITE_ACCEPT,
    INVITE_CANCEL,
    TEAM_CREATE,
    TEAM_UPDATE,
    TEAM_DELETE,
    ORGANIZATION_CREATE,
    ORGANIZATION_UPDATE,
    USER_DEFAULT_ORGANIZATION_UPDATE,
    INSTANCE_BOOTSTRAP,
    COPILOT_CHAT,
    USER_CREATE,
    USER_DISABLE,
    USER_ENABLE,
    USER_PROFILE_UPDATE,
    INVITE_LINK_ACCEPT,
)
