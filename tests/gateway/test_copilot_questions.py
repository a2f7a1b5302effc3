"""The copilot through the gateway on real data: named stacks, follow-ups, visibility."""

from __future__ import annotations

from typing import Any

from tests.gateway.cli import begin, create_stack, resource, stack_path, stack_resource
from tests.gateway.conftest import MEMBER, VIEWER, Cairn
from tests.gateway.test_copilot import CHAT, ask, last_response

PET = "random:index/randomPet:RandomPet"


def pet_urn(stack: str, name: str, project: str = "web") -> str:
    return f"urn:pulumi:{stack}::{project}::{PET}::{name}"


def step(op: str, urn: str) -> dict[str, Any]:
    return {"resourcePreEvent": {"metadata": {"op": op, "urn": urn, "type": PET}}}


async def update(
    cairn: Cairn, project: str, stack: str, pets: list[str], events: list[Any], result: str
) -> None:
    run = await begin(cairn, stack_path("admin", project, stack))
    run.resources = [stack_resource(project, stack, {})] + [
        resource(project, stack, name) for name in pets
    ]
    await run.full_checkpoint({"type": "service", "state": {}})
    await run.send_events(events)
    await run.complete(result)


async def organization(cairn: Cairn) -> None:
    """web/prod with three updates (the last failed), web/dev, api/prod."""
    for project, stack in (("web", "prod"), ("web", "dev"), ("api", "prod")):
        await create_stack(cairn, project, stack)
    await update(
        cairn, "web", "prod", ["a", "b"], [step("create", pet_urn("prod", "a"))], "succeeded"
    )
    await update(
        cairn, "web", "prod", ["a", "b", "c"], [step("create", pet_urn("prod", "c"))], "succeeded"
    )
    await update(
        cairn,
        "web",
        "prod",
        ["a", "b", "c"],
        [
            step("create", pet_urn("prod", "d")),
            {
                "diagnosticEvent": {
                    "urn": pet_urn("prod", "d"),
                    "message": "NoCredentialProviders: no valid providers in chain",
                    "severity": "error",
                }
            },
            {"summaryEvent": {"result": "failed", "resourceChanges": {"create": 1}}},
        ],
        "failed",
    )
    await update(
        cairn, "api", "prod", ["x"], [step("create", pet_urn("prod", "x", "api"))], "succeeded"
    )


async def chat(cairn: Cairn, query: str, token: str | None = None, **extra: Any) -> dict[str, Any]:
    options: dict[str, Any] = {"body": ask(query, **extra)}
    if token is not None:
        options["token"] = token
    reply: dict[str, Any] = await cairn.json("POST", CHAT, **options)
    return reply


async def test_the_questions_the_issue_names(cairn: Cairn) -> None:
    await organization(cairn)

    changed = last_response(await chat(cairn, "What changed in the last update of web/prod?"))
    assert "Update 3" in changed and "**d**" in changed and "None of" not in changed
    latest = last_response(await chat(cairn, "latest updates of stack web/prod"))
    assert all(f"version {n}" in latest for n in (1, 2, 3)) and "api/prod" not in latest
    count = last_response(await chat(cairn, "How many resources does web/prod have?"))
    assert "`web/prod` manages 4 resources" in count and "across" not in count
    stacks = last_response(await chat(cairn, "Which stacks does project web have?"))
    assert "web/prod" in stacks and "web/dev" in stacks and "api/prod" not in stacks
    compare = last_response(await chat(cairn, "Compare versions 1 and 2 of web/prod"))
    assert "1 added" in compare and "**c**" in compare
    failed = last_response(await chat(cairn, "Why did the last update of web/prod fail?"))
    assert "credentials" in failed.lower()
    who = last_response(await chat(cairn, "Who changed web/prod last?"))
    assert "admin" in who and "update 3" in who
    preview = last_response(await chat(cairn, "What is the difference between preview and up?"))
    assert "preview-vs-up" in preview and "olicy" not in preview
    rotate = last_response(await chat(cairn, "How do I rotate the secrets provider?"))
    assert "pulumi stack change-secrets-provider" in rotate
    unknown = last_response(await chat(cairn, "updates of prod"))
    assert "ambiguous" in unknown and "web/prod" in unknown and "api/prod" in unknown


async def test_a_three_turn_conversation_remembers_its_subject(cairn: Cairn) -> None:
    await cairn.new_user("vera", org_role=("admin", VIEWER))
    await cairn.new_user("mo", org_role=("admin", MEMBER))
    first = await chat(cairn, "Who are the members of my organization?")
    conversation = first["conversationId"]
    second = await chat(cairn, "Which of them are viewers?", conversationId=conversation)
    viewers = last_response(second)
    assert "vera" in viewers and "mo" not in viewers
    third = await chat(cairn, "And the admins?", conversationId=conversation)
    admins = last_response(third)
    assert "admin" in admins and "vera" not in admins
    assert third["conversationId"] == conversation
    assert len([m for m in third["messages"] if m["role"] == "user"]) == 3


async def test_stacks_a_member_cannot_read_are_never_mentioned(cairn: Cairn) -> None:
    await organization(cairn)
    eve = await cairn.new_user("eve", org_role=("admin", MEMBER))
    await cairn.json("PATCH", "/api/orgs/admin", 200, body={"setDefaultStackPermission": 0})
    await cairn.json(
        "PATCH", "/api/stacks/admin/web/dev/collaborators/eve", 204, body={"permission": 101}
    )

    listing = last_response(await chat(cairn, "List my stacks", token=eve))
    assert "web/dev" in listing and "web/prod" not in listing and "api/prod" not in listing
    hidden = last_response(await chat(cairn, "How many resources does web/prod have?", token=eve))
    assert "cannot find" in hidden and "4 resources" not in hidden
    everything = last_response(await chat(cairn, "How many resources do we have?", token=eve))
    assert "across 1 stack(s)" in everything
