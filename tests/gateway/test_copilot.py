"""Copilot through the gateway: seed 004's requests, skills over live data, isolation."""

from __future__ import annotations

import ast
from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from services.common.config import Settings
from tests.gateway.cli import begin, create_stack, resource, stack_path, stack_resource
from tests.gateway.conftest import MEMBER, AiohttpClient, Cairn, running_cairn

CHAT = "/api/ai/chat/preview"
CONSOLE = "https://app.pulumi.com"
OUTPUT_ERROR = (
    "error: azure-native:network:VirtualNetwork resource 'vnet' has a problem: "
    "Calling [ToString] on an [Output<T>] is not supported.\n"
)


def ask(query: str, org: str = "admin", url: str = CONSOLE, **extra: Any) -> dict[str, Any]:
    return {
        "query": query,
        "state": {"client": {"cloudContext": {"orgId": org, "url": url}}},
        **extra,
    }


def kinds(reply: dict[str, Any]) -> list[tuple[str, str]]:
    return [(m["role"], m["kind"]) for m in reply["messages"]]


def last_response(reply: dict[str, Any]) -> str:
    text: str = [m for m in reply["messages"] if m["kind"] == "response"][-1]["content"]
    return text


async def failed_update(cairn: Cairn) -> str:
    """A real update, through the update lifecycle, that failed creating a network."""
    await create_stack(cairn, "project1", "dev")
    path = stack_path("admin", "project1", "dev")
    run = await begin(cairn, path)
    urn = "urn:pulumi:dev::project1::azure-native:network:VirtualNetwork::vnet"
    run.resources.append(stack_resource("project1", "dev", {}))
    await run.full_checkpoint({"type": "service", "state": {}})
    await run.send_events(
        [
            {"preludeEvent": {"config": {}}},
            {
                "resourcePreEvent": {
                    "metadata": {
                        "op": "create",
                        "urn": urn,
                        "type": "azure-native:network:VirtualNetwork",
                    }
                }
            },
            {
                "diagnosticEvent": {
                    "urn": urn,
                    "prefix": "error: ",
                    "message": OUTPUT_ERROR,
                    "color": "raw",
                    "severity": "error",
                }
            },
            {
                "resOpFailedEvent": {
                    "metadata": {
                        "op": "create",
                        "urn": urn,
                        "type": "azure-native:network:VirtualNetwork",
                    },
                    "status": 1,
                    "steps": 1,
                }
            },
            {
                "summaryEvent": {
                    "maybeCorrupt": False,
                    "durationSeconds": 3,
                    "resourceChanges": {"create": 1},
                    "PolicyPacks": {},
                    "result": "failed",
                }
            },
        ]
    )
    await run.complete("failed")
    return urn


async def test_seed_example_analysis_of_a_failed_update(cairn: Cairn) -> None:
    urn = await failed_update(cairn)
    query = "Analyze this update. If it failed, tell me how to resolve the issues."
    reply = await cairn.json(
        "POST", CHAT, body=ask(query, url=f"{CONSOLE}/admin/project1/dev/updates/1")
    )
    assert reply["conversationId"]
    assert kinds(reply) == [
        ("user", "response"),
        ("assistant", "trace"),
        ("assistant", "status"),
        ("assistant", "response"),
    ]
    assert reply["messages"][0]["content"] == query
    assert reply["messages"][1]["content"] == (
        "Conversation with user 'admin' in org 'admin' from api (rest-api-v2)"
    )
    assert reply["messages"][2]["content"] == "Executing Pulumi Cloud skill"
    answer = last_response(reply)
    assert urn in answer
    assert "Output" in answer and "apply" in answer.lower()

    # Continuing keeps the history and answers from the concepts notes.
    follow_up = await cairn.json(
        "POST",
        CHAT,
        body=ask(
            "Why can I not directly convert an Output<T> to a string?",
            url=f"{CONSOLE}/admin/project1/dev/updates/1",
            conversationId=reply["conversationId"],
        ),
    )
    assert follow_up["conversationId"] == reply["conversationId"]
    assert kinds(follow_up)[:4] == kinds(reply)
    assert len(follow_up["messages"]) == 8
    assert follow_up["messages"][6]["content"] == "Executing Pulumi Docs skill"
    assert "apply" in last_response(follow_up).lower()


async def test_cairns_own_console_url_is_accepted(cairn: Cairn) -> None:
    await failed_update(cairn)
    own = str(cairn.client.make_url("")).rstrip("/")
    reply = await cairn.json(
        "POST", CHAT, body=ask("What went wrong?", url=f"{own}/admin/project1/dev/updates/1")
    )
    assert "vnet" in last_response(reply)


async def test_seed_example_program_generation(cairn: Cairn) -> None:
    reply = await cairn.json("POST", CHAT, body=ask("Write code to create an S3 bucket"))
    program = [m for m in reply["messages"] if m["kind"] == "program"]
    assert len(program) == 1
    content = program[0]["content"]
    assert program[0]["role"] == "assistant"
    assert content["language"] == "typescript"
    assert "@pulumi/aws" in content["code"] and "s3" in content["code"]
    assert content["plan"]["instructions"] and content["programId"]
    python = await cairn.json("POST", CHAT, body=ask("Write a Python program for a GCS bucket"))
    code = next(m for m in python["messages"] if m["kind"] == "program")["content"]["code"]
    ast.parse(code)


async def test_organization_questions_answer_from_live_data(cairn: Cairn) -> None:
    await cairn.new_user("bob", org_role=("admin", MEMBER))
    users = await cairn.json("POST", CHAT, body=ask("Who are the users in my org?"))
    text = last_response(users)
    assert "admin" in text and "bob" in text and "2 members" in text

    await create_stack(cairn, "web", "dev")
    await create_stack(cairn, "web", "prod")
    await create_stack(cairn, "api", "dev")
    run = await begin(cairn, stack_path("admin", "web", "prod"))
    run.resources = [stack_resource("web", "prod", {}), resource("web", "prod", "pet")]
    await run.full_checkpoint({"type": "service", "state": {}})
    await run.send_events([{"summaryEvent": {"resourceChanges": {"create": 2}}}])
    await run.complete()
    stacks = await cairn.json("POST", CHAT, body=ask("Which stacks are in project web?"))
    listed = last_response(stacks)
    assert "web/dev" in listed and "web/prod" in listed and "api/dev" not in listed
    counts = await cairn.json("POST", CHAT, body=ask("How many resources do we have?"))
    assert "2 resource(s) across 3 stack(s)" in last_response(counts)
    updates = await cairn.json("POST", CHAT, body=ask("Show me the latest updates"))
    assert "web/prod" in last_response(updates) and "version 1" in last_response(updates)


async def test_another_organizations_data_stays_hidden(cairn: Cairn) -> None:
    await failed_update(cairn)
    token = await cairn.new_user("mallory")
    # Mallory's own organization is "mallory"; "admin" is not hers.
    outside = await cairn.call("POST", CHAT, token=token, body=ask("Who are the users?"))
    assert outside.status == 404
    sneaky = await cairn.json(
        "POST",
        CHAT,
        token=token,
        body=ask(
            "Analyze this update", org="mallory", url=f"{CONSOLE}/admin/project1/dev/updates/1"
        ),
    )
    text = last_response(sneaky)
    assert "cannot find" in text and "vnet" not in text
    listing = await cairn.json(
        "POST", CHAT, token=token, body=ask("list the stacks", org="mallory")
    )
    assert "project1" not in last_response(listing)
    # Nor can anyone continue someone else's conversation.
    mine = await cairn.json("POST", CHAT, body=ask("Who are the users in my org?"))
    stolen = await cairn.call(
        "POST",
        CHAT,
        token=token,
        body=ask("and now?", org="mallory", conversationId=mine["conversationId"]),
    )
    assert stolen.status == 404


async def test_bad_input_is_4xx(cairn: Cairn) -> None:
    assert (await cairn.call("POST", CHAT, token=None, body=ask("hi"))).status == 401
    for body, status in [
        (ask(""), 400),
        ({"state": {"client": {"cloudContext": {"orgId": "admin"}}}}, 400),
        (ask("hi", url="https://evil.example/admin"), 400),
        (ask("hi", url="https://app.pulumi.com.evil.example/x"), 400),
        (ask("hi", org=""), 400),
        (ask("hi", conversationId="00000000-0000-0000-0000-000000000000"), 404),
        ({"query": "hi", "state": "nope"}, 400),
    ]:
        response = await cairn.call("POST", CHAT, body=body)
        payload = await response.json()
        assert response.status == status, (body, payload)
        assert payload["code"] == status


async def test_sdk_shaped_requests_get_only_kinds_the_sdk_knows(cairn: Cairn) -> None:
    body = ask("Write code to create an S3 bucket")
    body["directSkillCall"] = None
    reply = await cairn.json("POST", CHAT, body=body)
    assert {m["kind"] for m in reply["messages"]} <= {"response", "program"}
    direct = await cairn.json(
        "POST",
        CHAT,
        body={
            "state": {"client": {"cloudContext": {"orgId": "admin"}}},
            "directSkillCall": {"skill": "summarizeUpdate", "pulumiUpdateOutput": OUTPUT_ERROR},
        },
    )
    assert "Output" in last_response(direct)


@pytest.fixture
async def fake_model() -> AsyncIterator[tuple[str, list[Any]]]:
    """An OpenAI-compatible chat endpoint on loopback that records what it was sent."""
    received: list[Any] = []

    async def completions(request: web.Request) -> web.Response:
        received.append(await request.json())
        answer = {"choices": [{"message": {"role": "assistant", "content": "MODEL: phrased"}}]}
        return web.json_response(answer)

    app = web.Application()
    app.router.add_post("/v1/chat/completions", completions)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/v1")), received
    finally:
        await server.close()


async def test_a_configured_model_phrases_grounded_answers(
    settings: Settings, aiohttp_client: AiohttpClient, fake_model: tuple[str, list[Any]]
) -> None:
    url, received = fake_model
    configured = settings.model_copy(
        update={"copilot_model_url": url, "copilot_model_name": "tiny"}
    )
    async for cairn in running_cairn(configured, aiohttp_client):
        await cairn.new_user("bob", org_role=("admin", MEMBER))
        reply = await cairn.json("POST", CHAT, body=ask("Who are the users in my org?"))
        assert last_response(reply) == "MODEL: phrased"
        (sent,) = received
        assert sent["model"] == "tiny"
        facts = sent["messages"][-1]["content"]
        assert "bob" in facts and "Who are the users" in facts
        # Generated code is never handed to the model.
        program = await cairn.json("POST", CHAT, body=ask("Write code to create an S3 bucket"))
        assert len(received) == 1
        assert any(m["kind"] == "program" for m in program["messages"])
    assert orjson.dumps(received)
