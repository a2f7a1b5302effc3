"""Client mistakes get a 4xx with Pulumi's JSON error body, and nothing is written."""

from __future__ import annotations

import base64
import gzip
from collections.abc import AsyncIterator

import pytest

from services.common.config import Settings
from tests.gateway.conftest import MEMBER, VIEWER, AiohttpClient, Cairn, running_cairn

S = "/api/stacks/admin/web/dev"


async def error_of(cairn: Cairn, method: str, path: str, status: int, **kwargs: object) -> str:
    response = await cairn.call(method, path, **kwargs)  # type: ignore[arg-type]
    assert response.status == status, await response.text()
    if method == "HEAD":
        return ""
    assert response.content_type == "application/json"
    body = await response.json()
    assert body["code"] == status and isinstance(body["message"], str) and body["message"]
    message: str = body["message"]
    return message


async def stack_names(cairn: Cairn) -> list[str]:
    listing = await cairn.json("GET", "/api/user/stacks")
    return sorted(f"{s['projectName']}/{s['stackName']}" for s in listing["stacks"])


async def test_malformed_bodies_are_400_and_create_nothing(cairn: Cairn) -> None:
    create = "/api/stacks/admin/web"
    await error_of(cairn, "POST", create, 400, raw=b"{not json")
    await error_of(cairn, "POST", create, 400, raw=b"")
    await error_of(cairn, "POST", create, 400, body=["stackName", "dev"])
    await error_of(cairn, "POST", create, 400, body={"stackName": 7})
    await error_of(cairn, "POST", create, 400, body={"stackName": "dev", "tags": ["a"]})
    await error_of(cairn, "POST", create, 400, body={"stackName": "dev", "tags": {"a": 1}})
    await error_of(cairn, "POST", create, 400, body={"stackName": "dev", "config": "x"})
    assert await stack_names(cairn) == []
    # aiohttp closes the connection after an undecodable body, so this comes last.
    await error_of(
        cairn,
        "POST",
        create,
        400,
        raw=b"\x1f\x8b broken",
        gzipped=False,
        headers={"Content-Encoding": "gzip"},
    )


async def test_bad_names_are_400(cairn: Cairn) -> None:
    await error_of(cairn, "POST", "/api/stacks/admin/web", 400, body={"stackName": "a b"})
    await error_of(cairn, "POST", "/api/stacks/admin/web", 400, body={"stackName": "x" * 101})
    await error_of(cairn, "POST", "/api/stacks/admin/we%20b", 400, body={"stackName": "dev"})
    await error_of(cairn, "POST", "/api/stacks/bad%20org/web", 400, body={"stackName": "dev"})
    assert await stack_names(cairn) == []


async def test_bad_tags_leave_the_old_tags(cairn: Cairn) -> None:
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev", "tags": {"a": "1"}})
    await error_of(cairn, "PATCH", f"{S}/tags", 400, body={"bad tag!": "x"})
    await error_of(cairn, "PATCH", f"{S}/tags", 400, body={"a": "v" * 257})
    await error_of(cairn, "PATCH", f"{S}/tags", 400, body={"a": None})
    assert (await cairn.json("GET", S))["tags"] == {"a": "1"}


async def test_unknown_stacks_and_routes_are_404(cairn: Cairn) -> None:
    await error_of(cairn, "GET", S, 404)
    await error_of(cairn, "DELETE", S, 404)
    await error_of(cairn, "POST", f"{S}/encrypt", 404, body={"plaintext": ""})
    await error_of(cairn, "POST", f"{S}/rename", 404, body={"newName": "x"})
    await error_of(cairn, "GET", "/api/no/such/route/here/at/all", 404)
    await error_of(cairn, "PUT", "/api/user", 405)
    refused = await cairn.call("DELETE", "/api/user/tokens")
    assert refused.status == 405
    assert {m.strip() for m in refused.headers["Allow"].split(",")} >= {"GET", "POST"}


async def test_accept_header_rule(cairn: Cairn) -> None:
    message = await error_of(cairn, "GET", "/api/user", 415, headers={"Accept": "text/html"})
    assert "Accept" in message
    await error_of(cairn, "GET", "/api/user", 415, headers={"Accept": ""})
    ok = await cairn.call("GET", "/api/user", headers={"Accept": "text/html, application/json"})
    assert ok.status == 200
    health = await cairn.call("GET", "/healthz", headers={"Accept": "text/html"})
    assert health.status == 200


async def test_missing_or_invalid_tokens_are_401(cairn: Cairn) -> None:
    await error_of(cairn, "GET", "/api/user", 401, token=None)
    await error_of(cairn, "GET", "/api/user", 401, token="")
    await error_of(cairn, "GET", "/api/user", 401, token="pul-unknown")
    await error_of(cairn, "GET", S, 401, token="pul-unknown")
    await error_of(
        cairn, "GET", "/api/user", 401, token=None, headers={"Authorization": "update-token x"}
    )
    await error_of(
        cairn, "POST", "/api/stacks/admin/web", 401, token="pul-unknown", body={"stackName": "d"}
    )
    assert await stack_names(cairn) == []


async def test_outsiders_learn_nothing(cairn: Cairn) -> None:
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    bob = await cairn.new_user("bob")
    present = await error_of(cairn, "GET", S, 404, token=bob)
    absent = await error_of(cairn, "GET", "/api/stacks/admin/web/nope", 404, token=bob)
    assert present == absent
    await error_of(cairn, "HEAD", "/api/stacks/admin/web", 404, token=bob)
    await error_of(cairn, "POST", f"{S}/decrypt", 404, token=bob, body={"ciphertext": ""})
    await error_of(cairn, "POST", "/api/stacks/admin/web", 404, token=bob, body={"stackName": "x"})
    listing = await cairn.json("GET", "/api/user/stacks?organization=admin", token=bob)
    assert listing["stacks"] == []
    # Bob's own organization works; an unused name is not his to claim: the same 404.
    await cairn.json("POST", "/api/stacks/bob/web", token=bob, body={"stackName": "dev"})
    unused = await error_of(
        cairn, "POST", "/api/stacks/bobs-team/web", 404, token=bob, body={"stackName": "x"}
    )
    taken = await error_of(
        cairn, "POST", "/api/stacks/admin/web", 404, token=bob, body={"stackName": "x"}
    )
    assert unused.replace("bobs-team", "admin") == taken
    user = await cairn.json("GET", "/api/user", token=bob)
    assert sorted(o["githubLogin"] for o in user["organizations"]) == ["bob"]


async def test_roles_are_enforced(cairn: Cairn) -> None:
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev", "tags": {"a": "1"}})
    viewer = await cairn.new_user("vera", org_role=("admin", VIEWER))
    member = await cairn.new_user("mo", org_role=("admin", MEMBER))
    assert (await cairn.json("GET", S, token=viewer))["stackName"] == "dev"
    await error_of(cairn, "PATCH", f"{S}/tags", 403, token=viewer, body={"b": "2"})
    await error_of(cairn, "POST", f"{S}/encrypt", 403, token=viewer, body={"plaintext": ""})
    await error_of(
        cairn, "POST", "/api/stacks/admin/web", 403, token=viewer, body={"stackName": "x"}
    )
    await error_of(cairn, "DELETE", S, 403, token=member)
    await cairn.json("PATCH", f"{S}/tags", token=member, body={"b": "2"}, status=204)
    await cairn.json("POST", "/api/stacks/admin/web", token=member, body={"stackName": "qa"})
    assert await stack_names(cairn) == ["web/dev", "web/qa"]


async def test_ciphertext_tampering_and_cross_stack_use_are_400(cairn: Cairn) -> None:
    for name in ("dev", "prod"):
        await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": name})
    plaintext = base64.b64encode(b"secret").decode()
    ciphertext = (await cairn.json("POST", f"{S}/encrypt", body={"plaintext": plaintext}))[
        "ciphertext"
    ]
    raw = bytearray(base64.b64decode(ciphertext))
    raw[-1] ^= 1
    tampered = base64.b64encode(bytes(raw)).decode()
    truncated = base64.b64encode(bytes(raw[:8])).decode()
    for bad in (tampered, truncated, "", base64.b64encode(b"garbage").decode()):
        await error_of(cairn, "POST", f"{S}/decrypt", 400, body={"ciphertext": bad})
    await error_of(cairn, "POST", f"{S}/decrypt", 400, body={"ciphertext": "not base64!"})
    await error_of(cairn, "POST", f"{S}/encrypt", 400, body={"plaintext": 5})
    await error_of(cairn, "POST", f"{S}/batch-decrypt", 400, body={"ciphertexts": "x"})
    await error_of(
        cairn, "POST", f"{S}/batch-decrypt", 400, body={"ciphertexts": [ciphertext, tampered]}
    )
    await error_of(
        cairn, "POST", "/api/stacks/admin/web/prod/decrypt", 400, body={"ciphertext": ciphertext}
    )


async def test_bad_query_parameters_are_400(cairn: Cairn) -> None:
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    await error_of(cairn, "DELETE", f"{S}?force=maybe", 400)
    await error_of(cairn, "GET", "/api/user/stacks?continuationToken=%25%25bad", 400)
    await error_of(cairn, "GET", "/api/user/stacks?maxResults=abc", 400)
    await error_of(cairn, "GET", "/api/user/stacks?maxResults=100000", 400)
    assert await stack_names(cairn) == ["web/dev"]


async def test_integers_too_wide_for_their_fields_are_400(cairn: Cairn) -> None:
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    wide = str(2**63)
    await error_of(cairn, "GET", f"{S}/updates?pageSize={2**31}", 400)
    await error_of(cairn, "GET", f"{S}/updates?page=-{wide}", 400)
    # A path version beyond int64 names a version no stack can have.
    await error_of(cairn, "GET", f"{S}/updates/{wide}", 404)
    await error_of(cairn, "GET", f"{S}/export/{wide}", 404)
    await error_of(cairn, "GET", f"{S}/deployments/d/logs?continuationToken={wide}", 400)
    await error_of(cairn, "GET", f"{S}/deployments/d/logs?offset={wide}", 400)
    await cairn.json("GET", f"{S}/updates?pageSize=1000&page=1")


async def test_rename_conflicts_change_nothing(cairn: Cairn) -> None:
    for name in ("dev", "prod"):
        await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": name})
    message = await error_of(
        cairn, "POST", f"{S}/rename", 409, body={"newName": "prod", "newProject": "web"}
    )
    assert "already exists" in message
    await error_of(cairn, "POST", f"{S}/rename", 400, body={"newName": "", "newProject": ""})
    await error_of(cairn, "POST", f"{S}/rename", 400, body={"newName": "other/web/x"})
    await error_of(cairn, "POST", f"{S}/rename", 400, body={"newName": "bad name"})
    assert await stack_names(cairn) == ["web/dev", "web/prod"]


@pytest.fixture
async def small_cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    small = settings.model_copy(update={"max_body_bytes": 4096})
    async for running in running_cairn(small, aiohttp_client):
        yield running


async def test_oversized_bodies_are_413(small_cairn: Cairn) -> None:
    await small_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    big = {"plaintexts": [base64.b64encode(b"x" * 8192).decode()]}
    await error_of(small_cairn, "POST", f"{S}/batch-encrypt", 413, body=big)
    # A small gzip body that inflates past the limit is refused too.
    bomb = gzip.compress(b'{"plaintexts":["' + b"A" * 1_000_000 + b'"]}')
    assert len(bomb) < 4096
    await error_of(
        small_cairn,
        "POST",
        f"{S}/batch-encrypt",
        413,
        raw=bomb,
        headers={"Content-Encoding": "gzip"},
    )


async def test_query_values_outside_their_documentation_are_400(cairn: Cairn) -> None:
    message = await error_of(cairn, "GET", "/api/orgs/admin/tokens?sortDirection=AAA", 400)
    assert "sortDirection" in message and "asc, desc" in message
    await error_of(cairn, "GET", "/api/orgs/admin/tokens?maxResults=many", 400)
    await error_of(cairn, "GET", "/api/orgs/admin/auditlogs/export?format=xml", 400)
    await error_of(cairn, "GET", "/api/user/stacks?maxResults=-5x", 400)
    listed = await cairn.call("GET", "/api/orgs/admin/tokens?sortDirection=asc&sortBy=name")
    assert listed.status == 200, await listed.text()
    # Parameters no route documents are left alone.
    assert (await cairn.call("GET", "/api/user?unknown=anything")).status == 200


async def test_bodies_outside_the_documented_shapes_are_400(cairn: Cairn) -> None:
    """What /openapi.json narrows or requires, the server refuses (and takes the rest)."""
    org = "/api/orgs/admin"
    # Organization settings: only the default stack permission is kept; the others are taken
    # unset, as the official SDK sends them.
    unset = {"setMembersCanCreateStacks": False, "setNeoEnabled": None}
    settings = await cairn.json(
        "PATCH",
        org,
        body={**unset, "setMaxAccessTokenExpiryDays": 0, "setDefaultStackPermission": 102},
    )
    assert settings["defaultStackPermission"] == 102
    await error_of(cairn, "PATCH", org, 400, body={"setPreferredVCS": "github"})
    await error_of(cairn, "PATCH", org, 400, body={"setDefaultStackPermission": 104})
    await error_of(cairn, "POST", f"{org}/tokens", 400, body={"name": "ci", "roleID": "custom"})
    # Teams: no environments; a member action names its member; one grant at a time.
    await cairn.json("POST", f"{org}/teams/pulumi", body={"name": "ops"})
    team = f"{org}/teams/ops"
    environment = {"projectName": "p", "envName": "e", "permission": "read"}
    await error_of(cairn, "PATCH", team, 400, body={"addEnvironmentPermission": environment})
    await error_of(cairn, "PATCH", team, 400, body={"memberAction": "add"})
    grant = {"projectName": "web", "stackName": "dev", "permission": 101}
    both = {"addStackPermission": grant, "editStackPermission": grant}
    await error_of(cairn, "PATCH", team, 400, body=both)
    # Auth policies: a team rule names its team, an allow rule has a claim rule.
    policy = f"{org}/auth/policies/no-such-policy"
    for rule in (
        {"decision": "allow", "tokenType": "team", "rules": {"sub": "repo"}},
        {"decision": "allow", "tokenType": "organization", "rules": {}},
        {"decision": "maybe", "tokenType": "organization", "rules": {"sub": "repo"}},
    ):
        await error_of(cairn, "PATCH", policy, 400, body={"policies": [rule]})
    valid = {"decision": "allow", "tokenType": "organization", "rules": {"sub": "repo"}}
    await error_of(cairn, "PATCH", policy, 404, body={"policies": [valid]})
    # Stacks: a config names its environment; an initial state has a version and deployment.
    create = "/api/stacks/admin/web"
    await error_of(
        cairn, "POST", create, 400, body={"stackName": "a", "config": {"environment": ""}}
    )
    await error_of(cairn, "POST", create, 400, body={"stackName": "b", "state": {"version": None}})
    assert await stack_names(cairn) == []
    # Update bodies: every member is optional, but one present has its type.
    await cairn.json("POST", create, body={"stackName": "dev"})
    await error_of(cairn, "POST", f"{S}/update", 400, body={"options": {"parallel": "x"}})
    await error_of(cairn, "POST", f"{S}/update", 400, body={"config": {"a:b": {"secret": "no"}}})
    await error_of(cairn, "POST", f"{S}/update", 400, body={"metadata": {"message": 7}})
    cli_body = {
        "name": "web",
        "runtime": "nodejs",
        "main": "",
        "description": "",
        "options": {"localPolicyPackPaths": None, "color": "raw", "dryRun": True, "parallel": 16},
        "config": None,
        "metadata": {"message": "", "environment": {"exec.kind": "cli"}},
    }
    assert "updateID" in await cairn.json("POST", f"{S}/preview", body=cli_body)


async def test_an_optional_body_of_blanks_is_400(cairn: Cairn) -> None:
    """An optional body may be absent or empty; blanks alone are not JSON."""
    await cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    log = f"{S}/decrypt/log-decryption"
    assert (await cairn.call("POST", log, raw=b"")).status == 204
    await error_of(cairn, "POST", log, 400, raw=b"\t")
