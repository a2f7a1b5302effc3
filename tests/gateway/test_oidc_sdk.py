"""CI logins without long-lived tokens: OIDC issuers, their authorization policies and the
token exchange, through the official SDK and the way the Pulumi CLI calls it, against a local
OIDC issuer on loopback."""

from __future__ import annotations

import asyncio
import urllib.error
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from joserfc import jwt
from joserfc.jwk import RSAKey

try:
    from pulumi_cloud_sdk.apis.miscellaneous_api_ import MiscellaneousApi
    from pulumi_cloud_sdk.apis.organizations_api_ import OrganizationsApi
    from pulumi_cloud_sdk.models import (
        AuthPolicyDefinition,
        AuthPolicyUpdateRequest,
        CreatePulumiTeamRequest,
        OidcIssuerRegistrationRequest,
        OidcIssuerUpdateRequest,
    )
except ImportError:  # pragma: no cover - CI installs it with the dev extra
    pytest.skip(
        "pulumi-cloud-sdk is not installed (pip install -e '.[dev]')", allow_module_level=True
    )

from gateway.audit import AUDIT_RECORDER
from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, MEMBER, AiohttpClient, Cairn, running_cairn
from tests.gateway.sdk import SdkCaller, sdk_client
from tests.oidc_issuer import OidcIssuer

ORG = "admin"
AUDIENCE = f"urn:pulumi:org:{ORG}"
EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN = "urn:ietf:params:oauth:token-type:id_token"
TOKEN_TYPE = "urn:pulumi:token-type:access_token:"


class Sdk(SdkCaller):
    def __init__(self, cairn: Cairn, token: str = ADMIN_TOKEN) -> None:
        super().__init__(cairn, token)
        self.orgs = OrganizationsApi(self.client)
        # The exchange needs no access token: the CI's JWT is the credential.
        self.misc = MiscellaneousApi(sdk_client(cairn, ""))


def _settings(settings: Settings, **overrides: Any) -> Settings:
    return settings.model_copy(
        update={
            "oidc_allow_http_loopback_issuers": True,
            "oidc_token_max_ttl_seconds": 600,
            **overrides,
        }
    )


@pytest.fixture
async def oidc_cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    async for running in running_cairn(_settings(settings), aiohttp_client):
        yield running


@pytest.fixture
async def issuer() -> AsyncIterator[OidcIssuer]:
    running = await OidcIssuer().start()
    try:
        yield running
    finally:
        await running.stop()


def _rule(token_type: str, rules: dict[str, Any], **names: str) -> AuthPolicyDefinition:
    return AuthPolicyDefinition(
        decision=names.pop("decision", "allow"),
        token_type=token_type,
        authorized_permissions=[],
        rules=rules,
        **names,
    )


async def _register(api: Sdk, issuer: OidcIssuer, **extra: Any) -> tuple[str, str]:
    """Register the issuer and allow the repository's main branch; (issuer id, policy id)."""
    registered = await api(
        api.orgs.register_oidc_issuer,
        ORG,
        OidcIssuerRegistrationRequest(name="github", url=issuer.url, **extra),
    )
    policy = await api(api.orgs.get_auth_policy, ORG, registered.id)
    assert policy.policies == []
    updated = await api(
        api.orgs.update_auth_policy,
        ORG,
        policy.id,
        AuthPolicyUpdateRequest(
            policies=[
                _rule(
                    "organization",
                    {"sub": "repo:acme/infra:ref:refs/heads/*", "repository": "acme/infra"},
                ),
                _rule("team", {"repository": "acme/*"}, team_name="ops"),
                _rule("personal", {"repository": "acme/infra"}, user_login="dana"),
                _rule(
                    "organization",
                    {"ref": "refs/heads/forbidden"},
                    decision="deny",
                ),
            ]
        ),
    )
    assert updated.version == policy.version + 1 and len(updated.policies) == 4
    return registered.id, policy.id


def _form(token: str, *, scope: str = "", kind: str = "organization", **extra: str) -> bytes:
    """What `pulumi login --oidc-token ... --oidc-org ...` posts (pkg/backend/httpstate)."""
    members = {
        "audience": AUDIENCE,
        "grant_type": EXCHANGE,
        "requested_token_type": TOKEN_TYPE + kind,
        "scope": scope,
        "subject_token_type": ID_TOKEN,
        "subject_token": token,
        "expiration": "0",
        **extra,
    }
    return urlencode(members).encode()


async def _cli_exchange(cairn: Cairn, body: bytes) -> tuple[int, dict[str, Any]]:
    # The CLI's exchange sends no Accept header and a form body.
    response = await cairn.client.post(
        "/api/oauth/token",
        data=body,
        headers={
            "Content-Type": "application/x-www-form-urlencoded",
            "User-Agent": "pulumi-cli/1 (tests)",
        },
        skip_auto_headers=["Accept"],
    )
    parsed: dict[str, Any] = orjson.loads(await response.read())
    return response.status, parsed


async def test_exchange_through_the_sdk_and_the_cli(oidc_cairn: Cairn, issuer: OidcIssuer) -> None:
    cairn = oidc_cairn
    api = Sdk(cairn)
    issuer_id, _ = await _register(api, issuer)

    listed = await api(api.orgs.list_orgs_oidc_issuers, ORG)
    assert [(i.id, i.issuer, i.url) for i in listed.oidc_issuers] == [
        (issuer_id, issuer.url, issuer.url)
    ]
    renamed = await api(
        api.orgs.update_oidc_issuer,
        ORG,
        issuer_id,
        OidcIssuerUpdateRequest(name="github-actions", max_expiration=300),
    )
    assert (renamed.name, renamed.max_expiration) == ("github-actions", 300)
    fetched = await api(api.orgs.get_oidc_issuer, ORG, issuer_id)
    assert fetched.name == "github-actions" and fetched.last_used is None
    # An http issuer (loopback, tests only) presents no certificate to fingerprint.
    regenerated = await api(api.orgs.regenerate_thumbprints, ORG, issuer_id)
    assert regenerated.thumbprints == []

    # The SDK's `token`: JSON; an organization token, capped by the issuer's 300 seconds.
    granted = await api(
        api.misc.token,
        {
            "grant_type": EXCHANGE,
            "subject_token": issuer.ci_token(AUDIENCE),
            "subject_token_type": ID_TOKEN,
            "audience": AUDIENCE,
            "requested_token_type": TOKEN_TYPE + "organization",
            "expiration": 3600,
        },
    )
    assert granted.issued_token_type == TOKEN_TYPE + "organization"
    assert granted.token_type == "token" and granted.expires_in == 300
    user = await cairn.json("GET", "/api/user", token=granted.access_token)
    assert user["githubLogin"] == ORG
    assert user["tokenInfo"]["organization"] == ORG
    assert (await api(api.orgs.get_oidc_issuer, ORG, issuer_id)).last_used is not None

    # The CLI's form for a team token; the team must exist.
    await api(
        api.orgs.create_pulumi_team,
        ORG,
        CreatePulumiTeamRequest(name="ops", display_name="Ops", description=""),
    )
    status, reply = await _cli_exchange(
        cairn, _form(issuer.ci_token(AUDIENCE), scope="team:ops", kind="team")
    )
    assert status == 200, reply
    assert reply["issued_token_type"] == TOKEN_TYPE + "team" and reply["scope"] == "team:ops"
    team_user = await cairn.json("GET", "/api/user", token=reply["access_token"])
    assert team_user["tokenInfo"]["team"] == "ops"

    # A personal token for a member the policy names.
    await cairn.new_user("dana", org_role=(ORG, MEMBER))
    status, reply = await _cli_exchange(
        cairn, _form(issuer.ci_token(AUDIENCE), scope="user:dana", kind="personal")
    )
    assert status == 200, reply
    assert (await cairn.json("GET", "/api/user", token=reply["access_token"]))[
        "githubLogin"
    ] == "dana"

    await api(api.orgs.delete_oidc_issuer, ORG, issuer_id)
    status, reply = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE)))
    assert status == 401 and "not registered" in reply["message"]


def _unsigned(claims: dict[str, Any]) -> str:
    def encoded(value: dict[str, Any]) -> str:
        import base64

        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    return f"{encoded({'alg': 'none', 'typ': 'JWT'})}.{encoded(claims)}."


async def test_every_refusal_is_a_clear_4xx_without_a_token(
    oidc_cairn: Cairn, issuer: OidcIssuer
) -> None:
    cairn = oidc_cairn
    api = Sdk(cairn)
    await _register(api, issuer)
    stranger = RSAKey.generate_key(2048, parameters={"kid": issuer.kid_of("RSA")}, private=True)
    forged = jwt.encode(
        {"alg": "RS256", "kid": issuer.kid_of("RSA")}, issuer.ci_claims(AUDIENCE), stranger
    )
    now = int(issuer.clock())
    cases: list[tuple[bytes, int, str]] = [
        (_form(issuer.ci_token("urn:pulumi:org:other")), 401, "audience"),
        (_form(issuer.ci_token(AUDIENCE, exp=now - 3600, iat=now - 3900)), 401, "expired"),
        (_form(issuer.ci_token(AUDIENCE, nbf=now + 3600)), 401, "not valid yet"),
        (_form(issuer.ci_token(AUDIENCE, iss="https://elsewhere.example")), 401, "registered"),
        (_form(forged), 401, "signature"),
        (_form(_unsigned(issuer.ci_claims(AUDIENCE))), 401, "algorithm (none)"),
        (_form(issuer.ci_token(AUDIENCE, repository="evil/infra")), 403, "no policy"),
        (_form(issuer.ci_token(AUDIENCE, ref="refs/heads/forbidden")), 403, "denies"),
        (_form(issuer.ci_token(AUDIENCE), scope="team:ops", kind="team"), 403, "team 'ops'"),
        (_form(issuer.ci_token(AUDIENCE), scope="user:dana", kind="personal"), 403, "'dana'"),
        (_form(issuer.ci_token(AUDIENCE), grant_type="password"), 400, "grant_type"),
        (_form(issuer.ci_token(AUDIENCE), audience="acme"), 400, "audience must be"),
        (_form(issuer.ci_token(AUDIENCE), kind="team"), 400, "scope team:"),
        (_form(""), 400, "subject_token"),
    ]
    for body, status, message in cases:
        got, reply = await _cli_exchange(cairn, body)
        assert (got, message in reply.get("message", "")) == (status, True), (message, reply)
        assert "access_token" not in reply
        assert reply["code"] == status

    # The SDK sees the refusal as an HTTP error too.
    with pytest.raises(urllib.error.HTTPError) as refused:
        await api(
            api.misc.token,
            {
                "grant_type": EXCHANGE,
                "subject_token": issuer.ci_token("urn:pulumi:org:other"),
                "subject_token_type": ID_TOKEN,
                "audience": AUDIENCE,
                "requested_token_type": TOKEN_TYPE + "organization",
            },
        )
    assert refused.value.code == 401


async def test_rotated_keys_and_registration_key_sets(
    oidc_cairn: Cairn, issuer: OidcIssuer
) -> None:
    cairn = oidc_cairn
    api = Sdk(cairn)
    await _register(api, issuer)
    status, _ = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE)))
    assert status == 200
    new_kid = issuer.rotate("EC")
    status, reply = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE, kid=new_kid)))
    assert status == 200, reply
    assert issuer.jwks_fetches == 2

    # An issuer the server cannot reach: its keys come with the registration.
    offline = await OidcIssuer().start()
    await offline.stop()
    registered = await api(
        api.orgs.register_oidc_issuer,
        ORG,
        OidcIssuerRegistrationRequest(name="offline", url=offline.url, jwks=offline.jwks()),
    )
    policy = await api(api.orgs.get_auth_policy, ORG, registered.id)
    await api(
        api.orgs.update_auth_policy,
        ORG,
        policy.id,
        AuthPolicyUpdateRequest(policies=[_rule("organization", {"sub": "repo:acme/*"})]),
    )
    status, reply = await _cli_exchange(
        cairn, _form(offline.ci_token(AUDIENCE, kid=offline.kid_of("EC")))
    )
    assert status == 200, reply
    # A private key in a registration is refused.
    private = {"keys": [offline.keys[offline.kid_of("RSA")][0].as_dict(private=True)]}
    refused = await cairn.call(
        "POST",
        f"/api/orgs/{ORG}/oidc/issuers",
        body={"name": "leaky", "url": "https://leaky.example", "jwks": private},
    )
    assert refused.status == 400 and "public keys only" in (await refused.json())["message"]


async def test_expiry_is_capped_and_respected(oidc_cairn: Cairn, issuer: OidcIssuer) -> None:
    cairn = oidc_cairn
    await _register(Sdk(cairn), issuer)
    status, reply = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE), expiration="99999"))
    assert status == 200 and reply["expires_in"] == 600  # CAIRN_OIDC_TOKEN_MAX_TTL_SECONDS
    status, reply = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE), expiration="1"))
    assert status == 200 and reply["expires_in"] == 1
    await cairn.json("GET", "/api/user", token=reply["access_token"])
    await asyncio.sleep(1.5)
    await cairn.json("GET", "/api/user", 401, token=reply["access_token"])


async def test_exchanges_are_audited_without_the_jwt(oidc_cairn: Cairn, issuer: OidcIssuer) -> None:
    cairn = oidc_cairn
    issuer_id, _ = await _register(Sdk(cairn), issuer)
    token = issuer.ci_token(AUDIENCE)
    status, reply = await _cli_exchange(cairn, _form(token))
    assert status == 200
    refused_token = issuer.ci_token(AUDIENCE, repository="evil/infra")
    assert (await _cli_exchange(cairn, _form(refused_token)))[0] == 403
    await cairn.client.app[AUDIT_RECORDER].flush(5)

    found = await cairn.json("GET", f"/api/orgs/{ORG}/auditlogs?pageSize=1000")
    exchanges = [e for e in found["auditLogEvents"] if e["event"] == "oidc.exchange"]
    assert len(exchanges) == 1
    description = exchanges[0]["description"]
    assert "github" in description and "repo:acme/infra:ref:refs/heads/main" in description
    registered = [e for e in found["auditLogEvents"] if e["event"] == "oidc_issuer.register"]
    assert registered and issuer_id not in token
    site = await cairn.call("GET", "/api/admin/auditlogs/export?format=json&siteLevel=true")
    site_text = await site.text()
    assert "oidc.exchange" in site_text  # the refusal, at site level
    everything = orjson.dumps(found).decode() + site_text
    for secret in (token, refused_token, reply["access_token"]):
        assert secret not in everything
    for jwt_value in (token, refused_token):
        assert jwt_value.split(".")[2] not in everything


async def test_failed_exchanges_are_rate_limited(
    settings: Settings, aiohttp_client: AiohttpClient, issuer: OidcIssuer
) -> None:
    async for cairn in running_cairn(
        _settings(settings, auth_failure_limit="3/minute"), aiohttp_client
    ):
        await _register(Sdk(cairn), issuer)
        wrong = _form(issuer.ci_token("urn:pulumi:org:other"))
        for _ in range(3):
            assert (await _cli_exchange(cairn, wrong))[0] == 401
        status, reply = await _cli_exchange(cairn, _form(issuer.ci_token(AUDIENCE)))
        assert status == 429, reply
        assert "access_token" not in reply
