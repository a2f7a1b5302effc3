"""The only code issuing SQL for OIDC issuers and their authorization policies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from services.common.clock import Clock, aware
from services.common.db import Sessions
from services.common.errors import AlreadyExists, NotFound
from services.identity.domain import TokenKind
from services.identity.models import OrganizationRow, UserRow
from services.identity.oidc.domain import (
    AuthPolicy,
    Decision,
    Issuer,
    IssuerChange,
    IssuerRegistration,
    PolicyRule,
    claim_rules_json,
    parse_claim_rules,
)
from services.identity.oidc.models import OidcIdentityRow, OidcIssuerRow, OidcPolicyRow
from services.identity.rows import (
    new_id,
    optional_aware,
    organization_row,
    user_row_by_login,
)


def issuer_not_found(issuer_id: str) -> NotFound:
    return NotFound(f"Not Found: OIDC issuer '{issuer_id[:64]}'")


def policy_not_found(policy_id: str) -> NotFound:
    return NotFound(f"Not Found: authorization policy '{policy_id[:64]}'")


class OidcStore:
    def __init__(self, sessions: Sessions, clock: Clock) -> None:
        self._sessions = sessions
        self._clock = clock

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), tz=UTC)

    async def register(
        self, organization: str, registration: IssuerRegistration, issuer: str
    ) -> Issuer:
        """A new issuer of the organization, with an empty policy (refusing every exchange)."""
        now = self._now()
        try:
            async with self._sessions.begin() as session:
                org = await organization_row(session, organization)
                row = OidcIssuerRow(
                    id=new_id(),
                    organization_id=org.id,
                    name=registration.name,
                    url=registration.url,
                    issuer=issuer,
                    thumbprints=",".join(registration.thumbprints),
                    jwks=registration.jwks,
                    max_expiration=registration.max_expiration,
                    created_at=now,
                    modified_at=now,
                    last_used_at=None,
                )
                session.add(row)
                await session.flush()
                policy = OidcPolicyRow(
                    id=new_id(),
                    issuer_id=row.id,
                    version=1,
                    policies="[]",
                    created_at=now,
                    modified_at=now,
                )
                session.add(policy)
                await session.flush()
                return _issuer(row, org.name, policy.id)
        except IntegrityError:
            raise AlreadyExists(
                f"Conflict: the organization already trusts the issuer {issuer[:200]}"
            ) from None

    async def list(self, organization: str) -> list[Issuer]:
        async with self._sessions() as session:
            org = await organization_row(session, organization)
            found = await session.execute(
                select(OidcIssuerRow, OidcPolicyRow.id)
                .join(OidcPolicyRow, OidcPolicyRow.issuer_id == OidcIssuerRow.id)
                .where(OidcIssuerRow.organization_id == org.id)
                .order_by(OidcIssuerRow.created_at, OidcIssuerRow.id)
            )
            return [_issuer(row, org.name, policy_id) for row, policy_id in found.all()]

    async def get(self, organization: str, issuer_id: str) -> Issuer:
        async with self._sessions() as session:
            org, row, policy = await _issuer_rows(session, organization, issuer_id)
            return _issuer(row, org.name, policy.id)

    async def find_by_issuer(self, organization: str, issuer: str) -> Issuer | None:
        """The organization's registration whose `iss` is `issuer`, if any."""
        async with self._sessions() as session:
            org = await session.scalar(
                select(OrganizationRow).where(OrganizationRow.name == organization)
            )
            if org is None:
                return None
            found = (
                await session.execute(
                    select(OidcIssuerRow, OidcPolicyRow.id)
                    .join(OidcPolicyRow, OidcPolicyRow.issuer_id == OidcIssuerRow.id)
                    .where(
                        OidcIssuerRow.organization_id == org.id,
                        OidcIssuerRow.issuer == issuer,
                    )
                )
            ).first()
            return None if found is None else _issuer(found[0], org.name, found[1])

    async def update(self, organization: str, issuer_id: str, change: IssuerChange) -> Issuer:
        async with self._sessions.begin() as session:
            org, row, policy = await _issuer_rows(session, organization, issuer_id)
            if change.name is not None:
                row.name = change.name
            if change.thumbprints is not None:
                row.thumbprints = ",".join(change.thumbprints)
            if change.max_expiration is not None:
                row.max_expiration = change.max_expiration
            if change.jwks is not None:
                row.jwks = change.jwks
            row.modified_at = self._now()
            return _issuer(row, org.name, policy.id)

    async def set_thumbprints(
        self, organization: str, issuer_id: str, thumbprints: tuple[str, ...]
    ) -> Issuer:
        return await self.update(organization, issuer_id, IssuerChange(thumbprints=thumbprints))

    async def delete(self, organization: str, issuer_id: str) -> None:
        async with self._sessions.begin() as session:
            _, row, policy = await _issuer_rows(session, organization, issuer_id)
            await session.execute(delete(OidcPolicyRow).where(OidcPolicyRow.id == policy.id))
            await session.execute(delete(OidcIssuerRow).where(OidcIssuerRow.id == row.id))

    async def mark_used(self, issuer_id: str) -> None:
        async with self._sessions.begin() as session:
            row = await session.get(OidcIssuerRow, issuer_id)
            if row is not None:
                row.last_used_at = self._now()

    async def linked_login(self, issuer: str, subject: str) -> str | None:
        """The login a single sign-on identity signs in as, if it signed in before."""
        async with self._sessions() as session:
            found: str | None = await session.scalar(
                select(UserRow.login)
                .join(OidcIdentityRow, OidcIdentityRow.user_id == UserRow.id)
                .where(OidcIdentityRow.issuer == issuer, OidcIdentityRow.subject == subject)
            )
            return found

    async def link(self, issuer: str, subject: str, login: str) -> None:
        async with self._sessions.begin() as session:
            user = await user_row_by_login(session, login)
            session.add(
                OidcIdentityRow(
                    issuer=issuer, subject=subject, user_id=user.id, created_at=self._now()
                )
            )

    async def policy_of_issuer(self, organization: str, issuer_id: str) -> AuthPolicy:
        async with self._sessions() as session:
            _, _, policy = await _issuer_rows(session, organization, issuer_id)
            return _policy(policy)

    async def update_policy(
        self, organization: str, policy_id: str, rules: tuple[PolicyRule, ...]
    ) -> AuthPolicy:
        async with self._sessions.begin() as session:
            org = await organization_row(session, organization)
            found = (
                await session.execute(
                    select(OidcPolicyRow)
                    .join(OidcIssuerRow, OidcPolicyRow.issuer_id == OidcIssuerRow.id)
                    .where(OidcPolicyRow.id == policy_id, OidcIssuerRow.organization_id == org.id)
                )
            ).scalar_one_or_none()
            if found is None:
                raise policy_not_found(policy_id)
            found.policies = orjson.dumps([_rule_json(rule) for rule in rules]).decode()
            found.version += 1
            found.modified_at = self._now()
            await session.flush()
            return _policy(found)


async def _issuer_rows(
    session: AsyncSession, organization: str, issuer_id: str
) -> tuple[OrganizationRow, OidcIssuerRow, OidcPolicyRow]:
    org = await organization_row(session, organization)
    found = (
        await session.execute(
            select(OidcIssuerRow, OidcPolicyRow)
            .join(OidcPolicyRow, OidcPolicyRow.issuer_id == OidcIssuerRow.id)
            .where(OidcIssuerRow.id == issuer_id, OidcIssuerRow.organization_id == org.id)
        )
    ).first()
    if found is None:
        raise issuer_not_found(issuer_id)
    return org, found[0], found[1]


def _issuer(row: OidcIssuerRow, organization: str, policy_id: str) -> Issuer:
    return Issuer(
        id=row.id,
        organization=organization,
        name=row.name,
        url=row.url,
        issuer=row.issuer,
        thumbprints=tuple(t for t in row.thumbprints.split(",") if t),
        jwks=row.jwks,
        max_expiration=row.max_expiration,
        created_at=aware(row.created_at),
        modified_at=aware(row.modified_at),
        last_used_at=optional_aware(row.last_used_at),
        policy_id=policy_id,
    )


def _rule_json(rule: PolicyRule) -> dict[str, Any]:
    return {
        "decision": rule.decision.value,
        "tokenType": rule.token_kind.value,
        "teamName": rule.team_name,
        "userLogin": rule.user_login,
        "roleID": rule.role_id,
        "runnerID": rule.runner_id,
        "authorizedPermissions": list(rule.authorized_permissions),
        "rules": orjson.loads(claim_rules_json(rule.rules)),
    }


def _rule(value: dict[str, Any]) -> PolicyRule:
    return PolicyRule(
        decision=Decision(value["decision"]),
        token_kind=TokenKind(value["tokenType"]),
        team_name=value.get("teamName", ""),
        user_login=value.get("userLogin", ""),
        role_id=value.get("roleID", ""),
        runner_id=value.get("runnerID", ""),
        authorized_permissions=tuple(value.get("authorizedPermissions", ())),
        rules=parse_claim_rules(orjson.dumps(value.get("rules", {})).decode()),
    )


def _policy(row: OidcPolicyRow) -> AuthPolicy:
    return AuthPolicy(
        id=row.id,
        issuer_id=row.issuer_id,
        version=row.version,
        created_at=aware(row.created_at),
        modified_at=aware(row.modified_at),
        rules=tuple(_rule(value) for value in orjson.loads(row.policies)),
    )
