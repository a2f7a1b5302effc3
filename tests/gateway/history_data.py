"""A stack history made through the CLI emulation, shared by the history view tests.

Version 1 is a successful `up` (three creates, a warning), version 2 a failed `up` (an
update of `a` fails with an error diagnostic); a preview runs ahead of each, two ahead of
version 2.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tests.gateway.cli import Run, begin, create_stack, resource, stack_resource, stack_urn, summary
from tests.gateway.conftest import Cairn

ORG, PROJECT, STACK = "admin", "web", "dev"
S = f"/api/stacks/{ORG}/{PROJECT}/{STACK}"
CONSOLE = f"/api/console/stacks/{ORG}/{PROJECT}/{STACK}"
SECRETS = {"type": "passphrase", "state": {"salt": "v1:abc"}}
PROVIDER = (
    f"urn:pulumi:{STACK}::{PROJECT}::pulumi:providers:random::default_4_16_0"
    "::04da6b54-80e4-46f7-96ec-b56ff0331ba9"
)
PET = "random:index/randomPet:RandomPet"
ERROR_TEXT = "creating random pet: quota exceeded for pets in this region"
WARNING_TEXT = "pet names may be silly"


def urn_of(name: str, project: str = PROJECT, stack: str = STACK) -> str:
    return f"urn:pulumi:{stack}::{project}::{PET}::{name}"


def step(kind: str, op: str, state: dict[str, Any]) -> dict[str, Any]:
    """A resourcePreEvent or resOutputsEvent for one step, the way the engine describes it."""
    metadata = {
        "op": op,
        "urn": state["urn"],
        "type": state["type"],
        "old": None,
        "new": state,
        "provider": PROVIDER,
    }
    body: dict[str, Any] = {"metadata": metadata}
    if kind == "resourcePreEvent":
        body["planning"] = False
    return {kind: body}


def diagnostic(urn: str, severity: str, message: str) -> dict[str, Any]:
    return {
        "diagnosticEvent": {
            "urn": urn,
            "prefix": f"{severity}: ",
            "message": message + "\n",
            "color": "raw",
            "severity": severity,
        }
    }


@dataclass
class History:
    preview_1: str = ""
    update_1: str = ""
    previews_2: list[str] = field(default_factory=list)
    update_2: str = ""
    resources_1: list[dict[str, Any]] = field(default_factory=list)
    resources_2: list[dict[str, Any]] = field(default_factory=list)


# Where the CLI ran, as it records it: a commit, and a pull request of one repository.
FIRST_COMMIT = {"git.head": "1" * 40}
PULL_REQUEST = {
    "ci.pr.number": "7",
    "vcs.kind": "github.com",
    "vcs.owner": "acme",
    "vcs.repo": "web",
}
ELSEWHERE = {"git.head": "e" * 40}


async def preview(
    cairn: Cairn, events: list[dict[str, Any]], environment: dict[str, str] | None = None
) -> str:
    run = await begin(cairn, S, dry_run=True, message="preview", environment=environment)
    await run.send_events(events)
    await run.complete()
    return run.update_id


async def finish(run: Run, events: list[dict[str, Any]], status: str = "succeeded") -> str:
    await run.full_checkpoint(SECRETS)
    await run.send_events(events)
    await run.complete(status)
    return run.update_id


async def make_history(cairn: Cairn) -> History:
    history = History()
    await create_stack(cairn, PROJECT, STACK)
    root = stack_resource(PROJECT, STACK, {"petName": "a-id"})
    a = resource(PROJECT, STACK, "a", provider=PROVIDER)
    b = resource(
        PROJECT,
        STACK,
        "b",
        provider=PROVIDER,
        dependencies=[a["urn"]],
        propertyDependencies={"prefix": [a["urn"]]},
        inputs={"length": 3, "prefix": "a-id"},
    )
    planned = [step("resourcePreEvent", "create", state) for state in (root, a, b)]
    history.preview_1 = await preview(
        cairn,
        [{"preludeEvent": {"config": {}}}, *planned, summary({"create": 3}, preview=True)],
        FIRST_COMMIT,
    )

    run = await begin(cairn, S, message="first up", environment=FIRST_COMMIT)
    run.resources = [root, a, b]
    history.resources_1 = [dict(state) for state in run.resources]
    events: list[dict[str, Any]] = [{"preludeEvent": {"config": {}}}]
    for state in run.resources:
        events.append(step("resourcePreEvent", "create", state))
        if state is a:
            events.append(diagnostic(a["urn"], "warning", WARNING_TEXT))
        events.append(step("resOutputsEvent", "create", state))
    events.append(summary({"create": 3}))
    history.update_1 = await finish(run, events)

    changed = dict(a, inputs={"length": 4}, outputs={"id": "a-id", "length": 4})
    # One preview of the pull request the second update merges, one from elsewhere.
    for environment in (PULL_REQUEST, ELSEWHERE):
        history.previews_2.append(
            await preview(
                cairn,
                [
                    step("resourcePreEvent", "same", root),
                    step("resourcePreEvent", "update", changed),
                    step("resourcePreEvent", "same", b),
                    summary({"update": 1, "same": 2}, preview=True),
                ],
                environment,
            )
        )

    run = await begin(cairn, S, message="second up", environment=PULL_REQUEST)
    run.resources = [root, a, b]
    history.resources_2 = [dict(state) for state in run.resources]
    events = [
        step("resourcePreEvent", "same", root),
        step("resOutputsEvent", "same", root),
        step("resourcePreEvent", "update", changed),
        diagnostic(a["urn"], "error", ERROR_TEXT),
        {"resOpFailedEvent": {"metadata": step("x", "update", changed)["x"]["metadata"]}},
        step("resourcePreEvent", "same", b),
        step("resOutputsEvent", "same", b),
        summary({"same": 2}),
    ]
    history.update_2 = await finish(run, events, "failed")
    return history


def reference_state(project: str, stack: str, name: str) -> list[dict[str, Any]]:
    """A stack whose program reads another through a StackReference named `name`."""
    return [
        stack_resource(project, stack, {}),
        {
            "urn": f"urn:pulumi:{stack}::{project}::pulumi:pulumi:StackReference::{name}",
            "custom": True,
            "id": name,
            "type": "pulumi:pulumi:StackReference",
            "inputs": {"name": name},
            "outputs": {"name": name, "outputs": {"petName": "a-id"}, "secretOutputNames": []},
            "parent": stack_urn(project, stack),
        },
    ]
