"""The evaluation's organization, served by an in-memory reader with the peers' shape.

Organization `acme`: five members, four projects, eight stacks (one readable only by its
admin), updates that succeeded and failed with realistic engine events, resources per
version, deployments with logs, and audit entries. `FixtureReader(login)` answers as that
member would be answered: stacks they cannot read are never returned.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from services.common.auth import Caller
from services.common.errors import PermissionDenied
from services.copilot.peers import (
    AuditEntry,
    DeploymentInfo,
    MemberInfo,
    ResourceInfo,
    StackInfo,
    UpdateSummary,
)

ORG = "acme"
T0 = 1_793_000_000  # 2026-10-26
HOUR = 3600
MEMBERS = (
    MemberInfo("alice", "Alice Admin", "admin"),
    MemberInfo("bob", "Bob Builder", "member"),
    MemberInfo("carol", "Carol Reader", "viewer"),
    MemberInfo("dave", "Dave Watcher", "viewer"),
    MemberInfo("erin", "Erin Ops", "member"),
)
# Stacks only some logins may read (every other stack is readable by every member).
RESTRICTED = {"vault/prod": frozenset({"alice"})}


def urn(stack: str, project: str, kind: str, name: str) -> str:
    return f"urn:pulumi:{stack}::{project}::{kind}::{name}"


BUCKET = "aws:s3/bucketV2:BucketV2"
CDN = "aws:cloudfront/distribution:Distribution"
ROLE = "aws:iam/role:Role"
FUNCTION = "aws:lambda/function:Function"
DB = "aws:rds/instance:Instance"
QUEUE = "aws:sqs/queue:Queue"
VNET = "azure-native:network:VirtualNetwork"
SECRET = "aws:secretsmanager/secret:Secret"
STACK_TYPE = "pulumi:pulumi:Stack"


@dataclass
class FixtureUpdate:
    version: int
    kind: str
    result: str
    by: str
    hours: int
    changes: dict[str, int]
    resources: list[tuple[str, str]]  # (type, name) in the state after this update
    events: list[dict[str, Any]] = field(default_factory=list)
    message: str = ""


def _pre(stack: str, project: str, op: str, kind: str, name: str) -> dict[str, Any]:
    return {
        "resourcePreEvent": {
            "metadata": {"op": op, "urn": urn(stack, project, kind, name), "type": kind}
        }
    }


def _error(stack: str, project: str, kind: str, name: str, message: str) -> list[dict[str, Any]]:
    target = urn(stack, project, kind, name)
    return [
        {"diagnosticEvent": {"urn": target, "message": message, "severity": "error"}},
        {"resOpFailedEvent": {"metadata": {"op": "create", "urn": target, "type": kind}}},
    ]


def _summary(result: str, changes: dict[str, int]) -> dict[str, Any]:
    return {"summaryEvent": {"result": result, "resourceChanges": changes}}


WEB_BASE = [(BUCKET, "assets"), (ROLE, "site-role"), (FUNCTION, "render")]
UPDATES: dict[str, list[FixtureUpdate]] = {
    "web/prod": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "alice",
            0,
            {"create": 4},
            WEB_BASE,
            [_pre("prod", "web", "create", k, n) for k, n in WEB_BASE],
            message="First release",
        ),
        FixtureUpdate(
            2,
            "update",
            "succeeded",
            "bob",
            24,
            {"create": 1, "update": 1, "same": 2},
            [*WEB_BASE, (CDN, "site-cdn")],
            [
                _pre("prod", "web", "create", CDN, "site-cdn"),
                _pre("prod", "web", "update", BUCKET, "assets"),
                _pre("prod", "web", "same", ROLE, "site-role"),
            ],
            message="Add the CDN",
        ),
        FixtureUpdate(
            3,
            "update",
            "failed",
            "bob",
            48,
            {"create": 1, "same": 4},
            [*WEB_BASE, (CDN, "site-cdn")],
            [
                _pre("prod", "web", "create", QUEUE, "orders"),
                *_error(
                    "prod",
                    "web",
                    QUEUE,
                    "orders",
                    "creating SQS Queue (orders): NoCredentialProviders: no valid providers "
                    "in chain. Deprecated.",
                ),
                _summary("failed", {"create": 1, "same": 4}),
            ],
            message="Add the orders queue",
        ),
    ],
    "web/staging": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "erin",
            2,
            {"create": 3},
            WEB_BASE,
            [_pre("staging", "web", "create", k, n) for k, n in WEB_BASE],
        ),
        FixtureUpdate(
            2,
            "update",
            "failed",
            "erin",
            30,
            {"create": 1},
            WEB_BASE,
            [
                _pre("staging", "web", "create", BUCKET, "uploads"),
                *_error(
                    "staging",
                    "web",
                    BUCKET,
                    "uploads",
                    "creating S3 Bucket (acme-uploads): BucketAlreadyExists: The requested "
                    "bucket name is not available.",
                ),
                _summary("failed", {"create": 1}),
            ],
        ),
    ],
    "web/dev": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "bob",
            5,
            {"create": 2},
            [(BUCKET, "assets"), (FUNCTION, "render")],
            [_pre("dev", "web", "create", BUCKET, "assets")],
        ),
    ],
    "api/prod": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "alice",
            3,
            {"create": 2},
            [(DB, "main-db"), (FUNCTION, "handler")],
            [_pre("prod", "api", "create", DB, "main-db")],
        ),
        FixtureUpdate(
            2,
            "update",
            "failed",
            "erin",
            40,
            {"create": 1},
            [(DB, "main-db"), (FUNCTION, "handler")],
            [
                _pre("prod", "api", "create", DB, "replica-db"),
                *_error(
                    "prod",
                    "api",
                    DB,
                    "replica-db",
                    "creating RDS DB Instance (replica-db): InstanceQuotaExceeded: DB instance "
                    "quota exceeded",
                ),
                _summary("failed", {"create": 1}),
            ],
        ),
        FixtureUpdate(
            3,
            "update",
            "succeeded",
            "erin",
            50,
            {"create": 1, "delete": 1},
            [(DB, "main-db"), (QUEUE, "jobs")],
            [
                _pre("prod", "api", "create", QUEUE, "jobs"),
                _pre("prod", "api", "delete", FUNCTION, "handler"),
            ],
        ),
    ],
    "api/dev": [
        FixtureUpdate(
            1,
            "update",
            "failed",
            "bob",
            10,
            {"create": 1},
            [],
            [
                _pre("dev", "api", "create", VNET, "vnet"),
                *_error(
                    "dev",
                    "api",
                    VNET,
                    "vnet",
                    "Calling [ToString] on an [Output<T>] is not supported. To get the value "
                    "of an Output<T> as an Output<string> consider using .Apply",
                ),
                _summary("failed", {"create": 1}),
            ],
        ),
    ],
    "vault/prod": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "alice",
            6,
            {"create": 1},
            [(SECRET, "master-key")],
            [_pre("prod", "vault", "create", SECRET, "master-key")],
        ),
    ],
    "data/etl-dev": [],
    "payments-api/dev": [
        FixtureUpdate(
            1,
            "update",
            "succeeded",
            "erin",
            8,
            {"create": 1},
            [(QUEUE, "payments")],
            [_pre("dev", "payments-api", "create", QUEUE, "payments")],
        ),
    ],
}

DEPLOYMENTS: dict[str, list[tuple[DeploymentInfo, list[str]]]] = {
    "web/prod": [
        (
            DeploymentInfo(
                "dep-1", 1, "update", "succeeded", "alice", T0 + 20 * HOUR, T0 + 21 * HOUR, ""
            ),
            ["Updating (prod)", "Resources: 4 unchanged", "Duration: 12s"],
        ),
        (
            DeploymentInfo(
                "dep-2",
                2,
                "update",
                "failed",
                "bob",
                T0 + 60 * HOUR,
                T0 + 61 * HOUR,
                "pulumi up exited with 255",
            ),
            [
                "Updating (prod)",
                "  aws:s3:BucketPolicy site-policy creating",
                "error: creating S3 Bucket Policy: AccessDenied: User arn:aws:iam::1:user/ci "
                "is not authorized to perform s3:PutBucketPolicy",
                "Resources: 1 failed",
            ],
        ),
    ],
    "api/prod": [
        (
            DeploymentInfo(
                "dep-3", 1, "refresh", "succeeded", "erin", T0 + 55 * HOUR, T0 + 56 * HOUR, ""
            ),
            ["Refreshing (prod)", "Resources: 2 unchanged"],
        ),
    ],
}

AUDIT = [
    AuditEntry(T0 + 48 * HOUR, "bob", "stack.update", "acme/web/prod", "update 3"),
    AuditEntry(T0 + 47 * HOUR, "alice", "stack.tags.update", "acme/web/prod", "owner=web"),
    AuditEntry(T0 + 30 * HOUR, "erin", "stack.update", "acme/web/staging", "update 2"),
]


def _stack_id(name: str) -> str:
    return "id-" + name.replace("/", "-")


class FixtureReader:
    """The peers' reads over the fixture, as one member sees them."""

    def __init__(self, login: str) -> None:
        self.login = login
        self.calls = 0

    def _readable(self, name: str) -> bool:
        allowed = RESTRICTED.get(name)
        return allowed is None or self.login in allowed

    def _name(self, stack_id: str) -> str:
        for name in UPDATES:
            if _stack_id(name) == stack_id and self._readable(name):
                return name
        raise PermissionDenied("Forbidden")

    async def members(self, organization: str, caller: Caller) -> list[MemberInfo]:
        self.calls += 1
        return list(MEMBERS) if organization == ORG else []

    async def stacks(
        self, organization: str, project: str, caller: Caller, token: str = ""
    ) -> list[StackInfo]:
        self.calls += 1
        if organization != ORG:
            return []
        found = []
        for name, updates in UPDATES.items():
            stack_project, stack = name.split("/")
            if (project and stack_project != project) or not self._readable(name):
                continue
            last = updates[-1] if updates else None
            found.append(
                StackInfo(
                    id=_stack_id(name),
                    organization=ORG,
                    project=stack_project,
                    stack=stack,
                    version=last.version if last else 0,
                    resource_count=len(last.resources) + 1 if last else 0,
                    last_update=T0 + last.hours * HOUR if last else 0,
                )
            )
        return found

    def _summaries(self, name: str) -> list[UpdateSummary]:
        return [
            UpdateSummary(
                update_id=f"{name}-{u.version}",
                kind=u.kind,
                result=u.result,
                version=u.version,
                start_time=T0 + u.hours * HOUR,
                end_time=T0 + u.hours * HOUR + 60,
                message=u.message,
                resource_changes=u.changes,
                requested_by=u.by,
            )
            for u in reversed(UPDATES[name])
        ]

    async def updates(self, stack_id: str, limit: int, caller: Caller) -> list[UpdateSummary]:
        self.calls += 1
        return self._summaries(self._name(stack_id))[:limit]

    async def update(self, stack_id: str, version: int, caller: Caller) -> UpdateSummary | None:
        self.calls += 1
        found = [u for u in self._summaries(self._name(stack_id)) if u.version == version]
        return found[0] if found else None

    async def events(self, stack_id: str, update_id: str, caller: Caller) -> list[Any]:
        self.calls += 1
        name = self._name(stack_id)
        for update in UPDATES[name]:
            if f"{name}-{update.version}" == update_id:
                return [{"sequence": n, **e} for n, e in enumerate(update.events)]
        return []

    async def resources(
        self, stack_id: str, version: int, caller: Caller
    ) -> tuple[int, list[ResourceInfo]]:
        self.calls += 1
        name = self._name(stack_id)
        project, stack = name.split("/")
        updates = UPDATES[name]
        if not updates:
            return 0, []
        chosen = (
            updates[-1]
            if version == 0
            else next((u for u in updates if u.version == version), None)
        )
        if chosen is None:
            return 0, []
        root = ResourceInfo(urn(stack, project, STACK_TYPE, f"{project}-{stack}"), STACK_TYPE)
        return chosen.version, [
            root,
            *(ResourceInfo(urn(stack, project, k, n), k) for k, n in chosen.resources),
        ]

    async def deployments(
        self, organization: str, stack_id: str, limit: int, caller: Caller
    ) -> list[DeploymentInfo]:
        self.calls += 1
        name = self._name(stack_id)
        listed = [d for d, _ in DEPLOYMENTS.get(name, [])]
        return sorted(listed, key=lambda d: -d.version)[:limit]

    async def deployment_logs(self, stack_id: str, deployment_id: str, caller: Caller) -> list[str]:
        self.calls += 1
        name = self._name(stack_id)
        for deployment, lines in DEPLOYMENTS.get(name, []):
            if deployment.id == deployment_id:
                return lines
        return []

    async def audit(self, organization: str, limit: int, caller: Caller) -> list[AuditEntry]:
        self.calls += 1
        if not any(m.login == self.login and m.role == "admin" for m in MEMBERS):
            raise PermissionDenied("Forbidden")
        return AUDIT[:limit]
