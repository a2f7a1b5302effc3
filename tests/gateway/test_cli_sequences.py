"""The Pulumi CLI's own call sequences (protocol doc §2.1–2.3, §2.12–2.17), step by step."""

from __future__ import annotations

import base64
from typing import Any

from tests.gateway.conftest import ADMIN_TOKEN, Cairn

S = "/api/stacks/admin/web/dev"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


async def init(cairn: Cairn) -> None:
    """INIT: capabilities, default organization, user (order not fixed in the CLI)."""
    capabilities = await cairn.json("GET", "/api/capabilities")
    for entry in capabilities["capabilities"]:
        assert isinstance(entry["capability"], str) and entry["capability"]
        # A malformed recognised entry makes the CLI drop every capability.
        if entry["capability"] == "delta-checkpoint-uploads-v2":
            assert entry["version"] == 2
            assert isinstance(entry["configuration"]["checkpointCutoffSizeBytes"], int)
    default = await cairn.json("GET", "/api/user/organizations/default")
    assert default == {"GitHubLogin": "admin", "Messages": []}
    user = await cairn.json("GET", "/api/user")
    assert user["githubLogin"] == "admin"


async def test_login_returns_what_the_cli_requires(any_cairn: Cairn) -> None:
    user = await any_cairn.json("GET", "/api/user")
    assert user["githubLogin"] == "admin"
    assert user["organizations"] and all(o["githubLogin"] for o in user["organizations"])
    assert user["tokenInfo"]["name"] == "admin-token"
    refused = await any_cairn.call("GET", "/api/user", token="pul-not-a-real-token")
    assert refused.status == 401
    body = await refused.json()
    assert body["code"] == 401 and body["message"].startswith("Unauthorized")


async def test_stack_init_select_and_get(any_cairn: Cairn) -> None:
    await init(any_cairn)
    missing = await any_cairn.call("GET", S)
    assert missing.status == 404
    tags = {"pulumi:project": "web", "pulumi:runtime": "nodejs", "vcs:kind": "github.com"}
    created = await any_cairn.json(
        "POST", "/api/stacks/admin/web", body={"stackName": "dev", "tags": tags}
    )
    assert created["stackName"] == "dev" and created["version"] == 0
    stack = await any_cairn.json("GET", S)
    assert stack["orgName"] == "admin" and stack["projectName"] == "web"
    assert stack["stackName"] == "dev"
    assert stack["tags"] == tags
    assert stack["version"] == 0 and stack["activeUpdate"] == ""
    assert stack["id"] == created["id"]
    assert "config" not in stack, "config switches the CLI to remote-config mode"
    again = await any_cairn.call("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    assert again.status == 409
    assert "already exists" in (await again.json())["message"]


async def test_pulumi_new_checks_the_project(any_cairn: Cairn) -> None:
    absent = await any_cairn.call("HEAD", "/api/stacks/admin/web")
    assert absent.status == 404
    await any_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    present = await any_cairn.call("HEAD", "/api/stacks/admin/web")
    assert present.status == 200


async def test_config_set_secret_and_get(any_cairn: Cairn) -> None:
    await any_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    encrypted = await any_cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64("hunter2")})
    ciphertext = encrypted["ciphertext"]
    assert base64.b64decode(ciphertext) != b"hunter2"
    decrypted = await any_cairn.json("POST", f"{S}/decrypt", body={"ciphertext": ciphertext})
    assert base64.b64decode(decrypted["plaintext"]) == b"hunter2"

    values = ['"a"', '{"b":1}', ""]
    batch = await any_cairn.json(
        "POST", f"{S}/batch-encrypt", body={"plaintexts": [b64(v) for v in values]}, gzipped=True
    )
    assert len(batch["ciphertexts"]) == 3
    sent = [*batch["ciphertexts"], ciphertext]
    plain = await any_cairn.json(
        "POST", f"{S}/batch-decrypt", body={"ciphertexts": sent}, gzipped=True
    )
    # The CLI looks up every ciphertext string exactly as it sent it.
    assert set(plain["plaintexts"]) == set(sent)
    assert [base64.b64decode(plain["plaintexts"][c]).decode() for c in sent] == [
        *values,
        "hunter2",
    ]


async def test_stack_ls_pages_until_no_token(any_cairn: Cairn) -> None:
    for project, name in [("web", "dev"), ("web", "prod"), ("api", "dev"), ("web", "qa")]:
        await any_cairn.json(
            "POST",
            f"/api/stacks/admin/{project}",
            body={"stackName": name, "tags": {"pulumi:project": project}},
        )
    seen: list[tuple[str, str]] = []
    token = ""
    for _ in range(10):
        path = "/api/user/stacks?project=web&maxResults=2"
        if token:
            path += f"&continuationToken={token}"  # appended raw, as the CLI does
        page: dict[str, Any] = await any_cairn.json("GET", path)
        for summary in page["stacks"]:
            assert summary["projectName"] and summary["stackName"] and summary["id"]
            seen.append((summary["projectName"], summary["stackName"]))
        token = page.get("continuationToken") or ""
        if not token:
            break
    assert seen == [("web", "dev"), ("web", "prod"), ("web", "qa")]
    everything = await any_cairn.json("GET", "/api/user/stacks")
    assert len(everything["stacks"]) == 4 and "continuationToken" not in everything
    tagged = await any_cairn.json("GET", "/api/user/stacks?tagName=pulumi:project&tagValue=api")
    assert [s["stackName"] for s in tagged["stacks"]] == ["dev"]


async def test_stack_tag_set_and_rm(any_cairn: Cairn) -> None:
    await any_cairn.json(
        "POST",
        "/api/stacks/admin/web",
        body={"stackName": "dev", "tags": {"pulumi:project": "web"}},
    )
    current = (await any_cairn.json("GET", S))["tags"]
    await any_cairn.json("PATCH", f"{S}/tags", body={**current, "owner": "me"}, status=204)
    assert (await any_cairn.json("GET", S))["tags"] == {"pulumi:project": "web", "owner": "me"}
    # Seed 001's wrapped form replaces the set too.
    await any_cairn.json("PATCH", f"{S}/tags", body={"tags": {"team": "platform"}}, status=204)
    assert (await any_cairn.json("GET", S))["tags"] == {"team": "platform"}


async def test_stack_rename_keeps_identity_and_secrets(any_cairn: Cairn) -> None:
    created = await any_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    secret = (await any_cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64("pw")}))[
        "ciphertext"
    ]
    response = await any_cairn.call(
        "POST", f"{S}/rename", body={"newName": "prod", "newProject": "web"}
    )
    assert 200 <= response.status < 300
    assert (await any_cairn.call("GET", S)).status == 404
    renamed = await any_cairn.json("GET", "/api/stacks/admin/web/prod")
    assert renamed["id"] == created["id"]
    plain = await any_cairn.json(
        "POST", "/api/stacks/admin/web/prod/decrypt", body={"ciphertext": secret}
    )
    assert base64.b64decode(plain["plaintext"]) == b"pw"
    # Seed 001's fully qualified form moves it to another project.
    await any_cairn.json(
        "POST",
        "/api/stacks/admin/web/prod/rename",
        body={"newName": "admin/other/prod"},
        status=204,
    )
    moved = await any_cairn.json("GET", "/api/stacks/admin/other/prod")
    assert moved["id"] == created["id"]


async def test_stack_rm_deletes_stack_and_its_key(any_cairn: Cairn) -> None:
    await any_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    secret = (await any_cairn.json("POST", f"{S}/encrypt", body={"plaintext": b64("pw")}))[
        "ciphertext"
    ]
    await any_cairn.json("DELETE", f"{S}?force=false", status=204)
    assert (await any_cairn.call("GET", S)).status == 404
    assert (await any_cairn.call("DELETE", f"{S}?force=true")).status == 404
    # A new stack of the same name is a different stack with a different key.
    await any_cairn.json("POST", "/api/stacks/admin/web", body={"stackName": "dev"})
    refused = await any_cairn.call("POST", f"{S}/decrypt", body={"ciphertext": secret})
    assert refused.status == 400


async def test_admin_token_works_with_every_accept_value(any_cairn: Cairn) -> None:
    for accept in ("application/vnd.pulumi+8", "application/json", "*/*"):
        response = await any_cairn.call(
            "GET", "/api/user", token=ADMIN_TOKEN, headers={"Accept": accept}
        )
        assert response.status == 200, accept
