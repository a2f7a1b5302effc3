"""Stack settings through the gateway: metadata, notification settings, ownership, transfer,
annotations and starter workflows, on SQLite and PostgreSQL."""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest
import yaml

from protos.cairn.v1 import common_pb2, identity_pb2
from tests.gateway.cli import SECRET_SIG, begin, deployment, resource, stack_resource
from tests.gateway.conftest import ADMIN, MEMBER, VIEWER, Cairn
from tests.gateway.test_bad_input import error_of

S = "/api/stacks/admin/web/dev"
MOVED = "/api/stacks/acme/web/dev"
SECRETS: dict[str, Any] = {
    "type": "service",
    "state": {"url": "http://127.0.0.1", "owner": "admin", "project": "web", "stack": "dev"},
}


async def create(cairn: Cairn, token: str | None = None, **tags: str) -> dict[str, Any]:
    kwargs: dict[str, Any] = {} if token is None else {"token": token}
    created: dict[str, Any] = await cairn.json(
        "POST",
        "/api/stacks/admin/web",
        body={"stackName": "dev", "tags": {"pulumi:project": "web", **tags}},
        **kwargs,
    )
    return created


async def add_user(
    cairn: Cairn, login: str, name: str, role: common_pb2.Role.ValueType | None = None
) -> str:
    """A user (with a display name), maybe in organization `admin`; returns a token."""
    await cairn.identity.CreateUser(identity_pb2.CreateUserRequest(login=login, name=name))
    if role is not None:
        await cairn.identity.SetMembership(
            identity_pb2.SetMembershipRequest(organization="admin", user_login=login, role=role)
        )
    reply = await cairn.identity.CreateAccessToken(
        identity_pb2.CreateAccessTokenRequest(user_login=login, name="tests")
    )
    token: str = reply.token
    return token


async def organization(
    cairn: Cairn, name: str, admin: str, member_role: common_pb2.Role.ValueType | None
) -> None:
    """An organization administered by `admin`, with the admin user in it at `member_role`."""
    await cairn.identity.CreateOrganization(
        identity_pb2.CreateOrganizationRequest(name=name, admin_login=admin)
    )
    if member_role is not None:
        await cairn.identity.SetMembership(
            identity_pb2.SetMembershipRequest(
                organization=name, user_login="admin", role=member_role
            )
        )


# -- metadata and notification settings ---------------------------------------------------


async def test_metadata_and_notification_settings(any_cairn: Cairn) -> None:
    cairn = any_cairn
    created = await create(cairn)
    metadata = await cairn.json("GET", f"{S}/metadata")
    assert metadata == {
        "id": created["id"],
        "orgName": "admin",
        "projectName": "web",
        "stackName": "dev",
        "ownedBy": {"name": "admin", "githubLogin": "admin", "avatarUrl": ""},
        "notificationSettings": {"notifyUpdateFailure": False, "notifyUpdateSuccess": False},
    }

    changed = await cairn.json(
        "PATCH",
        f"{S}/notifications/settings",
        body={"notifyUpdateFailure": True, "notifyUpdateSuccess": False},
    )
    expected = {
        **metadata,
        "notificationSettings": {"notifyUpdateFailure": True, "notifyUpdateSuccess": False},
    }
    assert changed == expected
    assert await cairn.json("GET", f"{S}/metadata") == expected
    flipped = await cairn.json(
        "PATCH",
        f"{S}/notifications/settings",
        body={"notifyUpdateFailure": False, "notifyUpdateSuccess": True},
    )
    assert flipped["notificationSettings"] == {
        "notifyUpdateFailure": False,
        "notifyUpdateSuccess": True,
    }

    for bad in (
        {"notifyUpdateFailure": True},
        {"notifyUpdateFailure": None, "notifyUpdateSuccess": True},
        {"notifyUpdateFailure": "yes", "notifyUpdateSuccess": True},
        ["notifyUpdateFailure"],
    ):
        await error_of(cairn, "PATCH", f"{S}/notifications/settings", 400, body=bad)
    await error_of(cairn, "PATCH", f"{S}/notifications/settings", 400, raw=b"{")
    assert (await cairn.json("GET", f"{S}/metadata"))["notificationSettings"] == {
        "notifyUpdateFailure": False,
        "notifyUpdateSuccess": True,
    }
    await error_of(cairn, "GET", "/api/stacks/admin/web/nope/metadata", 404)

    viewer = await add_user(cairn, "vera", "Vera", VIEWER)
    assert (await cairn.json("GET", f"{S}/metadata", token=viewer))["id"] == created["id"]
    body = {"notifyUpdateFailure": True, "notifyUpdateSuccess": True}
    await error_of(cairn, "PATCH", f"{S}/notifications/settings", 403, token=viewer, body=body)
    assert (await cairn.json("GET", f"{S}/metadata"))["notificationSettings"] == {
        "notifyUpdateFailure": False,
        "notifyUpdateSuccess": True,
    }


# -- ownership ----------------------------------------------------------------------------


async def test_the_creator_owns_a_stack_until_ownership_is_reassigned(any_cairn: Cairn) -> None:
    cairn = any_cairn
    member = await add_user(cairn, "alice", "Alice Liddell", MEMBER)
    await add_user(cairn, "bob", "Bob Builder", ADMIN)
    await add_user(cairn, "mallory", "Mallory")  # not in organization admin
    await create(cairn, token=member)
    assert (await cairn.json("GET", f"{S}/metadata"))["ownedBy"] == {
        "name": "Alice Liddell",
        "githubLogin": "alice",
        "avatarUrl": "",
    }

    previous = await cairn.json(
        "POST",
        f"{S}/ownership",
        body={"name": "Bob", "githubLogin": "bob", "avatarUrl": "", "email": None},
    )
    assert previous == {"name": "Alice Liddell", "githubLogin": "alice", "avatarUrl": ""}
    owner = {"name": "Bob Builder", "githubLogin": "bob", "avatarUrl": ""}
    assert (await cairn.json("GET", f"{S}/metadata"))["ownedBy"] == owner

    for bad, status in (
        # Not a member of the organization, or no user at all: the login names nothing.
        ({"name": "M", "githubLogin": "mallory", "avatarUrl": ""}, 404),
        ({"name": "G", "githubLogin": "ghost", "avatarUrl": ""}, 404),
        ({"name": "X", "githubLogin": "bad login", "avatarUrl": ""}, 400),
        ({"name": "N", "avatarUrl": ""}, 400),
        ({"name": "N", "githubLogin": 7, "avatarUrl": ""}, 400),
    ):
        await error_of(cairn, "POST", f"{S}/ownership", status, body=bad)
    # Reassigning ownership needs the admin role.
    body = {"name": "A", "githubLogin": "alice", "avatarUrl": ""}
    await error_of(cairn, "POST", f"{S}/ownership", 403, token=member, body=body)
    await error_of(cairn, "POST", "/api/stacks/admin/web/nope/ownership", 404, body=body)
    assert (await cairn.json("GET", f"{S}/metadata"))["ownedBy"] == owner


# -- transfer ------------------------------------------------------------------------------


async def _seed_state(cairn: Cairn) -> tuple[str, dict[str, Any]]:
    """A stack with an encrypted secret in its state; returns the ciphertext and the state."""
    sealed = await cairn.json(
        "POST", f"{S}/encrypt", body={"plaintext": base64.b64encode(b'"hunter2"').decode()}
    )
    secret = {SECRET_SIG: "1b47061264138c4ac30d75fd1eb44270", "ciphertext": sealed["ciphertext"]}
    resources = [stack_resource("web", "dev", {"password": secret}), resource("web", "dev", "a")]
    state = {"version": 3, "deployment": deployment(resources, SECRETS)}
    await cairn.json("POST", f"{S}/import", body=state)
    return sealed["ciphertext"], state


async def test_transfer_keeps_history_state_secrets_and_deployments(any_cairn: Cairn) -> None:
    cairn = any_cairn
    created = await create(cairn)
    ciphertext, state = await _seed_state(cairn)
    settings = {"operationContext": {"environmentVariables": {"A": "plain"}}}
    stored_settings = await cairn.json("POST", f"{S}/deployments/settings", body=settings)
    await cairn.json("PATCH", f"{S}/annotations/custom", body={"team": "platform"}, status=204)
    await organization(cairn, "acme", "admin", None)

    await cairn.json("POST", f"{S}/transfer", body={"toOrg": "acme"}, status=204)

    await error_of(cairn, "GET", S, 404)
    moved = await cairn.json("GET", MOVED)
    assert (moved["id"], moved["orgName"], moved["tags"]) == (
        created["id"],
        "acme",
        {"pulumi:project": "web"},
    )
    # The checkpoint is the same but for the secrets provider state, which names the new path.
    exported = await cairn.json("GET", f"{MOVED}/export")
    assert exported["deployment"]["resources"] == state["deployment"]["resources"]
    assert exported["deployment"]["secrets_providers"]["state"] == {
        **SECRETS["state"],
        "owner": "acme",
    }
    opened = await cairn.json("POST", f"{MOVED}/batch-decrypt", body={"ciphertexts": [ciphertext]})
    assert base64.b64decode(opened["plaintexts"][ciphertext]) == b'"hunter2"'
    history = await cairn.json("GET", f"{MOVED}/updates")
    assert [(u["kind"], u["version"]) for u in history["updates"]] == [
        ("rename", 2),
        ("import", 1),
    ]
    assert await cairn.json("GET", f"{MOVED}/deployments/settings") == stored_settings
    annotation = await cairn.json("GET", f"{MOVED}/annotations/custom")
    assert annotation["content"] == {"team": "platform"}
    metadata = await cairn.json("GET", f"{MOVED}/metadata")
    assert (metadata["id"], metadata["orgName"], metadata["ownedBy"]["githubLogin"]) == (
        created["id"],
        "acme",
        "admin",
    )
    listing = await cairn.json("GET", "/api/user/stacks")
    assert [(s["orgName"], s["id"]) for s in listing["stacks"]] == [("acme", created["id"])]


async def test_transfer_hands_the_stack_to_the_caller_when_its_owner_stays_behind(
    any_cairn: Cairn,
) -> None:
    cairn = any_cairn
    member = await add_user(cairn, "alice", "Alice", MEMBER)
    await create(cairn, token=member)
    await organization(cairn, "acme", "admin", None)
    await cairn.json(
        "POST", f"{S}/transfer", body={"toOrg": "acme", "fromOrg": "admin"}, status=204
    )
    owner = (await cairn.json("GET", f"{MOVED}/metadata"))["ownedBy"]
    assert owner["githubLogin"] == "admin"


async def test_refused_transfers_change_nothing(any_cairn: Cairn) -> None:
    cairn = any_cairn
    created = await create(cairn)
    _, state = await _seed_state(cairn)
    await add_user(cairn, "bob", "Bob")
    await organization(cairn, "acme", "admin", None)
    await organization(cairn, "foreign", "bob", None)
    await organization(cairn, "guests", "bob", MEMBER)
    member = await add_user(cairn, "alice", "Alice", MEMBER)

    for body, status in (
        ({}, 400),
        ({"toOrg": ""}, 400),
        ({"toOrg": 5}, 400),
        ({"toOrg": "acme", "fromOrg": "other"}, 400),
        ({"toOrg": "acme", "projectName": "other"}, 400),
        ({"toOrg": "acme", "stackName": "prod"}, 400),
        ({"toOrg": "admin"}, 400),
        # Not a member of the destination, or no such organization: indistinguishable.
        ({"toOrg": "bad org"}, 404),
        ({"toOrg": "foreign"}, 404),
        ({"toOrg": "nowhere"}, 404),
        # A member there, but not an admin.
        ({"toOrg": "guests"}, 403),
    ):
        await error_of(cairn, "POST", f"{S}/transfer", status, body=body)
    # The source organization's admin role is needed too.
    await error_of(cairn, "POST", f"{S}/transfer", 403, token=member, body={"toOrg": "acme"})

    # The destination already holds a stack of that project and name.
    await cairn.json("POST", "/api/stacks/acme/web", body={"stackName": "dev"})
    taken = await cairn.json("GET", MOVED)
    await error_of(cairn, "POST", f"{S}/transfer", 409, body={"toOrg": "acme"})
    assert (await cairn.json("GET", MOVED))["id"] == taken["id"]
    await cairn.json("DELETE", MOVED, status=204)

    # An update in progress.
    run = await begin(cairn, S)
    await error_of(cairn, "POST", f"{S}/transfer", 409, body={"toOrg": "acme"})
    await run.complete()

    await error_of(
        cairn, "POST", "/api/stacks/admin/web/nope/transfer", 404, body={"toOrg": "acme"}
    )
    kept = await cairn.json("GET", S)
    assert (kept["id"], kept["orgName"]) == (created["id"], "admin")
    await error_of(cairn, "GET", MOVED, 404)
    exported = await cairn.json("GET", f"{S}/export")
    assert exported["deployment"]["resources"] == state["deployment"]["resources"]
    assert exported["deployment"]["secrets_providers"] == SECRETS


# -- annotations ---------------------------------------------------------------------------


async def test_annotations_are_versioned_json_values(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create(cairn)
    await error_of(cairn, "GET", f"{S}/annotations/custom", 404)

    raw = b'{"b": 1, "a": [1.50, "x"]}'
    await cairn.json("PATCH", f"{S}/annotations/custom", raw=raw, status=204)
    response = await cairn.call("GET", f"{S}/annotations/custom")
    text = await response.read()
    assert response.status == 200
    # The client's bytes come back as they were sent.
    assert raw in text
    first = orjson.loads(text)
    assert {k: first[k] for k in ("kind", "source", "version", "modifiedBy")} == {
        "kind": "custom",
        "source": "",
        "version": 1,
        "modifiedBy": "admin",
    }
    assert first["content"] == {"b": 1, "a": [1.5, "x"]} and first["modified"] > 0

    await cairn.json(
        "PATCH", f"{S}/annotations/custom?version=1&source=ci", body=["second"], status=204
    )
    second = await cairn.json("GET", f"{S}/annotations/custom")
    assert (second["version"], second["source"], second["content"]) == (2, "ci", ["second"])
    # The version read is stale now.
    await error_of(cairn, "PATCH", f"{S}/annotations/custom?version=1", 409, body={"late": 1})
    await error_of(cairn, "PATCH", f"{S}/annotations/compliance?version=3", 409, body={})
    assert (await cairn.json("GET", f"{S}/annotations/custom"))["version"] == 2

    assert (await cairn.json("GET", f"{S}/annotations/custom?version=1"))["content"] == first[
        "content"
    ]
    assert (await cairn.json("GET", f"{S}/annotations/custom?source=ci"))["version"] == 2
    assert (await cairn.json("GET", f"{S}/annotations/custom?source=ci&version=2"))["version"] == 2
    await error_of(cairn, "GET", f"{S}/annotations/custom?source=ci&version=1", 404)
    await error_of(cairn, "GET", f"{S}/annotations/custom?source=other", 404)
    await error_of(cairn, "GET", f"{S}/annotations/custom?version=9", 404)
    # Kinds are independent; expecting version 0 means "not written yet".
    await cairn.json(
        "PATCH", f"{S}/annotations/compliance?version=0", body={"ok": True}, status=204
    )
    assert (await cairn.json("GET", f"{S}/annotations/compliance"))["version"] == 1

    viewer = await add_user(cairn, "vera", "Vera", VIEWER)
    assert (await cairn.json("GET", f"{S}/annotations/custom", token=viewer))["version"] == 2
    await error_of(cairn, "PATCH", f"{S}/annotations/custom", 403, token=viewer, body={})


async def test_bad_annotations_are_refused_and_change_nothing(any_cairn: Cairn) -> None:
    cairn = any_cairn
    await create(cairn)
    await cairn.json("PATCH", f"{S}/annotations/integration", body={"v": 1}, status=204)
    for path, status, kwargs in (
        (f"{S}/annotations/unknown", 404, {"body": {"v": 2}}),
        (f"{S}/annotations/Custom", 404, {"body": {"v": 2}}),
        (f"{S}/annotations/integration", 400, {"raw": b"{not json"}),
        (f"{S}/annotations/integration", 400, {"raw": b""}),
        (f"{S}/annotations/integration", 400, {"raw": b"[" * 5000 + b"]" * 5000}),
        (f"{S}/annotations/integration", 400, {"raw": b'"' + b"x" * (1 << 20) + b'"'}),
        (f"{S}/annotations/integration?version=-1", 400, {"body": {"v": 2}}),
        (f"{S}/annotations/integration?version=x", 400, {"body": {"v": 2}}),
        (f"{S}/annotations/integration?version={2**40}", 400, {"body": {"v": 2}}),
        (f"{S}/annotations/integration?source=a%20b", 400, {"body": {"v": 2}}),
        ("/api/stacks/admin/web/nope/annotations/integration", 404, {"body": {"v": 2}}),
    ):
        await error_of(cairn, "PATCH", path, status, **kwargs)
    await error_of(cairn, "GET", f"{S}/annotations/unknown", 404)
    await error_of(cairn, "GET", f"{S}/annotations/integration?version=-2", 400)
    await error_of(cairn, "GET", f"{S}/annotations/integration?version={2**40}", 400)
    stored = await cairn.json("GET", f"{S}/annotations/integration")
    assert (stored["version"], stored["content"]) == (1, {"v": 1})

    # A deleted stack takes its annotations along; a new one of that name starts afresh.
    await cairn.json("DELETE", f"{S}?force=true", status=204)
    await create(cairn)
    await error_of(cairn, "GET", f"{S}/annotations/integration", 404)


# -- starter workflows ---------------------------------------------------------------------

RUNTIMES = {
    # runtime: (GitHub Actions setup step, GitLab CI image)
    "nodejs": ("actions/setup-node@v4", "node:22"),
    "python": ("actions/setup-python@v5", "python:3.12"),
    "go": ("actions/setup-go@v5", "golang:1.23"),
    "dotnet": ("actions/setup-dotnet@v4", "mcr.microsoft.com/dotnet/sdk:8.0"),
    "java": ("actions/setup-java@v4", "maven:3-eclipse-temurin-21"),
    "yaml": (None, "buildpack-deps:bookworm-curl"),
}
PREVIEW = 'pulumi preview --stack "$PULUMI_STACK" --non-interactive'
UP = 'pulumi up --stack "$PULUMI_STACK" --yes --non-interactive'


def _github_checks(pipeline: dict[Any, Any], runtime: str, filtered: bool) -> None:
    # YAML 1.1 reads the bare key `on` as true; GitHub reads it as the trigger list.
    triggers = pipeline[True]
    assert set(triggers) == {"pull_request", "push"}
    for trigger in triggers.values():
        assert trigger["branches"] == ["main"]
        assert trigger.get("paths") == (["infra/**"] if filtered else None)
    assert pipeline["env"]["PULUMI_STACK"] == "admin/web/dev"
    assert pipeline["env"]["PULUMI_BACKEND_URL"] == "http://cairn.example.com"
    assert pipeline["env"]["PULUMI_ACCESS_TOKEN"] == "${{ secrets.PULUMI_ACCESS_TOKEN }}"
    setup = RUNTIMES[runtime][0]
    for job, command in (("preview", PREVIEW), ("update", UP)):
        steps = pipeline["jobs"][job]["steps"]
        assert pipeline["jobs"][job]["defaults"]["run"]["working-directory"] == "infra"
        uses = [step["uses"] for step in steps if "uses" in step]
        assert uses == ["actions/checkout@v4"] + ([setup] if setup else [])
        runs = [step["run"] for step in steps if "run" in step]
        assert any("get.pulumi.com" in run for run in runs)
        assert 'pulumi login "$PULUMI_BACKEND_URL"' in runs
        assert "pulumi install" in runs
        assert runs[-1] == command


def _gitlab_checks(pipeline: dict[str, Any], runtime: str, filtered: bool) -> None:
    assert pipeline["variables"] == {
        "PULUMI_BACKEND_URL": "http://cairn.example.com",
        "PULUMI_STACK": "admin/web/dev",
    }
    assert pipeline["default"]["image"] == RUNTIMES[runtime][1]
    before = pipeline["default"]["before_script"]
    assert before[0] == "cd infra"
    assert 'pulumi login "$PULUMI_BACKEND_URL"' in before and before[-1] == "pulumi install"
    for job, command in (("preview", PREVIEW), ("update", UP)):
        assert pipeline[job]["script"] == [command]
        (rule,) = pipeline[job]["rules"]
        assert rule.get("changes") == (["infra/**/*"] if filtered else None)


@pytest.mark.parametrize("runtime", sorted(RUNTIMES))
async def test_starter_workflows_fit_the_runtime(any_cairn: Cairn, runtime: str) -> None:
    cairn = any_cairn
    await create(cairn, **{"pulumi:runtime": runtime})
    for ci_system, check in (("GitHub Actions", _github_checks), ("gitlab-ci", _gitlab_checks)):
        for filtered in (True, False):
            reply = await cairn.json(
                "POST",
                f"{S}/workflow",
                body={
                    "ciSystem": ci_system,
                    "workingDirectory": "./infra/",
                    "enablePathFilters": filtered,
                },
                # Without a configured public URL, pipelines log in where the request went.
                headers={"Host": "cairn.example.com"},
            )
            assert set(reply) == {"content"}
            content = reply["content"]
            assert f"({runtime})" in content.splitlines()[0]
            check(yaml.safe_load(content), runtime, filtered)
