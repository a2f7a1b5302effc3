"""The copilot's use cases: one conversation turn, and the skills a question is routed to.

Every skill answers from data: the organization's members, stacks and updates read through
the other services with the asker's visibility, an update's engine events, the bundled notes,
or the program catalogue. A configured model may rephrase an answer, never invent its facts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from services.common.auth import Caller
from services.common.clock import Clock
from services.common.errors import Unauthenticated
from services.copilot import diagnosis, programs, retrieval
from services.copilot.chat_model import ChatModel
from services.copilot.domain import (
    ASSISTANT,
    PROGRAM,
    RESPONSE,
    STATUS,
    TRACE,
    USER,
    Answer,
    Asker,
    Context,
    DirectSkill,
    Message,
    check_organization,
    parse_context,
    trace_text,
    validate_query,
)
from services.copilot.peers import Peers, StackInfo
from services.copilot.store import ConversationStore

CLOUD_SKILL = "Pulumi Cloud"
DOCS_SKILL = "Pulumi Docs"
PROGRAM_SKILL = "Pulumi program generation"
HELP_SKILL = "Pulumi Copilot help"

_USERS = re.compile(r"\b(users?|members?|people|teammates|who\b.*\b(org|organi[sz]ation))", re.I)
_RESOURCES = re.compile(r"\b(how many resources|resource counts?|number of resources)\b", re.I)
_UPDATES = re.compile(
    r"\b(last|latest|recent|previous)\b(\s+\w+){0,3}\s+(updates?|deployments?|changes)\b"
    r"|\bupdate history\b|\bwhat changed\b",
    re.I,
)
_STACKS = re.compile(
    r"\b(list|show|which|what|how many)\b(\s+\w+){0,3}\s+stacks\b|\bstacks (in|of|for)\b", re.I
)
# About the update in the context (a general "why can't I …" goes to the concepts notes).
_ANALYSIS = re.compile(
    r"\b(analy[sz]e|this (update|deployment|run)|the update|fail(ed|ure|ing|s)?|went wrong"
    r"|what happened|resolve|summari[sz]e|errors?)\b",
    re.I,
)
_PROJECT = re.compile(r"\b(?:in|of|for)\s+(?:the\s+)?(?:project\s+)?['\"`]?([A-Za-z0-9_.-]+)", re.I)
RECENT_UPDATES = 5


class Copilot:
    """One turn of a conversation: check, route to a skill, phrase, persist."""

    def __init__(
        self,
        store: ConversationStore,
        skills: Skills,
        model: ChatModel,
        clock: Clock,
        url_prefixes: Sequence[str],
    ) -> None:
        self._store = store
        self._skills = skills
        self._model = model
        self._clock = clock
        self._url_prefixes = tuple(url_prefixes)

    async def chat(
        self,
        asker: Asker,
        query: str,
        url: str,
        conversation_id: str,
        console_url: str,
        caller: Caller,
        direct: DirectSkill | None = None,
    ) -> tuple[str, tuple[Message, ...]]:
        """The conversation's id and all of its messages after this turn."""
        if not asker.user_id:
            raise Unauthenticated("Unauthorized: No credentials provided or are invalid.")
        text = validate_query(direct.question if direct is not None and not query else query)
        check_organization(asker.organization, asker.visible_organizations)
        context = parse_context(url, (console_url, *self._url_prefixes))
        now = self._clock.now()
        if conversation_id:
            conversation = await self._store.get(conversation_id, asker.organization, asker.user_id)
        else:
            conversation = await self._store.create(asker.organization, asker.user_id, now)
        if direct is not None:
            answer = await self._skills.summarize_output(
                direct.output, is_preview=direct.is_preview
            )
        else:
            answer = await self._skills.answer(asker, text, context, caller)
        turn = [
            Message(USER, RESPONSE, text),
            Message(ASSISTANT, TRACE, trace_text(asker)),
            *await self._reply(text, answer),
        ]
        await self._store.append(conversation.id, turn, self._clock.now())
        return conversation.id, (*conversation.messages, *turn)

    async def _reply(self, question: str, answer: Answer) -> list[Message]:
        messages = [Message(ASSISTANT, STATUS, f"Executing {answer.skill} skill")]
        text = answer.text
        if answer.is_rephrasable:
            text = await self._model.phrase(question, facts_for_model(answer)) or answer.text
        messages.append(Message(ASSISTANT, RESPONSE, text))
        if answer.program is not None:
            messages.append(Message(ASSISTANT, PROGRAM, program=answer.program))
        return messages


class Skills:
    """Routes a question to the skill that can answer it."""

    def __init__(self, peers: Peers) -> None:
        self._peers = peers

    async def answer(self, asker: Asker, query: str, context: Context, caller: Caller) -> Answer:
        request = programs.parse_request(query)
        if request is not None:
            return program_answer(request)
        if context.version and (_ANALYSIS.search(query) or len(query.split()) <= 4):
            return await self._analyse(asker, context, caller)
        if _USERS.search(query):
            return await self._members(asker)
        if _RESOURCES.search(query):
            return await self._resources(asker, _project(query, context), caller)
        if _UPDATES.search(query):
            return await self._recent_updates(asker, context, query, caller)
        if _STACKS.search(query):
            return await self._stacks(asker, _project(query, context), caller)
        concept = retrieval.answer_concept(query)
        if concept is not None:
            return Answer(DOCS_SKILL, concept)
        if context.stack:
            return await self._recent_updates(asker, context, query, caller)
        return Answer(HELP_SKILL, HELP_TEXT, is_rephrasable=False)

    async def summarize_output(self, output: str, *, is_preview: bool) -> Answer:
        """The SDK's direct skills: explain an update's or preview's text output."""
        events = [
            {"sequence": n, "diagnosticEvent": {"message": line, "severity": "error"}}
            for n, line in enumerate(output.splitlines())
            if "error" in line.lower()
        ]
        word = "preview" if is_preview else "update"
        if not events:
            return Answer(CLOUD_SKILL, f"The {word} output shows no errors.")
        # The account's first paragraph names a stack and version the output does not carry.
        sections = diagnosis.explain(diagnosis.diagnose(events), "", 0).split("\n\n")
        headline = f"The {word} output reports {len(events)} error line(s)."
        return Answer(CLOUD_SKILL, "\n\n".join([headline, *sections[1:]]))

    # -- organization questions ------------------------------------------------------------

    async def _members(self, asker: Asker) -> Answer:
        members = await self._peers.members(asker.organization, _caller(asker))
        lines = [
            f"- {m.login}"
            + (f" ({m.name})" if m.name and m.name != m.login else "")
            + f": {m.role}"
            for m in members
        ]
        count = len(members)
        text = (
            f"The organization '{asker.organization}' has {count} "
            f"member{'s' if count != 1 else ''}:\n" + "\n".join(lines)
        )
        return Answer(CLOUD_SKILL, text)

    async def _stacks(self, asker: Asker, project: str, caller: Caller) -> Answer:
        stacks = await self._peers.stacks(asker.organization, project, caller)
        where = f"project '{project}'" if project else f"organization '{asker.organization}'"
        if not stacks:
            return Answer(CLOUD_SKILL, f"There are no stacks in the {where} that you can see.")
        lines = [f"- {_describe_stack(stack)}" for stack in stacks]
        return Answer(CLOUD_SKILL, f"The {where} has {len(stacks)} stack(s):\n" + "\n".join(lines))

    async def _resources(self, asker: Asker, project: str, caller: Caller) -> Answer:
        stacks = await self._peers.stacks(asker.organization, project, caller)
        total = sum(stack.resource_count for stack in stacks)
        where = f"project '{project}'" if project else f"organization '{asker.organization}'"
        lines = [
            f"- {stack.name}: {stack.resource_count}"
            for stack in sorted(stacks, key=lambda s: -s.resource_count)
        ]
        return Answer(
            CLOUD_SKILL,
            f"The {where} manages {total} resource(s) across {len(stacks)} stack(s):\n"
            + "\n".join(lines),
        )

    async def _recent_updates(
        self, asker: Asker, context: Context, query: str, caller: Caller
    ) -> Answer:
        if context.stack and context.organization == asker.organization:
            stack = await self._peers.stack(
                context.organization, context.project, context.stack, caller
            )
            stacks = [stack] if stack is not None else []
        else:
            stacks = await self._peers.stacks(asker.organization, _project(query, context), caller)
        updated = sorted((s for s in stacks if s.version), key=lambda s: -s.last_update)[
            :RECENT_UPDATES
        ]
        if not updated:
            return Answer(CLOUD_SKILL, "None of the stacks you can see has been updated yet.")
        sections = []
        for stack in updated:
            history = await self._peers.updates(stack.id, RECENT_UPDATES, caller)
            rows = [
                f"  - version {u.version}: {u.kind}, {u.result}, {_when(u.start_time)}"
                + (f", changes {_changes(u.resource_changes)}" if u.resource_changes else "")
                + (f' — "{u.message}"' if u.message else "")
                for u in history
            ]
            sections.append(f"- {stack.name}:\n" + "\n".join(rows))
        return Answer(CLOUD_SKILL, "Most recent updates:\n" + "\n".join(sections))

    # -- update analysis -------------------------------------------------------------------

    async def _analyse(self, asker: Asker, context: Context, caller: Caller) -> Answer:
        name = f"{context.project}/{context.stack}"
        missing = Answer(
            CLOUD_SKILL,
            f"I cannot find update {context.version} of stack '{name}' in an organization "
            "you can see.",
        )
        if context.organization not in asker.visible_organizations:
            return missing
        stack = await self._peers.stack(
            context.organization, context.project, context.stack, caller
        )
        if stack is None:
            return missing
        update = await self._peers.update(stack.id, context.version, caller)
        if update is None:
            return missing
        events = await self._peers.events(stack.id, update.update_id, caller)
        found = diagnosis.diagnose(events)
        text = diagnosis.explain(found, name, context.version)
        if update.result == "failed" or found.failures or found.general_errors:
            return Answer(CLOUD_SKILL, text)
        changes = _changes(update.resource_changes) or "no resource changes"
        return Answer(
            CLOUD_SKILL,
            f"Update {context.version} of stack '{name}' ({update.kind}) {update.result}: "
            f"{changes}.\n\n{text}",
        )


def program_answer(request: programs.ProgramRequest) -> Answer:
    program = programs.generate(request)
    programs.check_syntax(program)
    content = {
        "code": program.code,
        "plan": {"instructions": program.instructions},
        "language": program.language,
        "programId": program.program_id,
    }
    text = (
        f"Here is a {program.language} program that creates a {program.resource} on "
        f"{program.cloud.upper()}. {program.instructions.splitlines()[-1]}"
    )
    return Answer(PROGRAM_SKILL, text, program=content, is_rephrasable=False)


def _caller(asker: Asker) -> Caller:
    return Caller(user_id=asker.user_id, login=asker.login)


def _project(query: str, context: Context) -> str:
    if context.project:
        return context.project
    match = _PROJECT.search(query)
    if match and match[1].lower() not in ("my", "the", "this", "our", "org", "organization"):
        return match[1]
    return ""


def _describe_stack(stack: StackInfo) -> str:
    if not stack.version:
        return f"{stack.name}: never updated"
    return (
        f"{stack.name}: version {stack.version}, {stack.resource_count} resource(s), "
        f"last updated {_when(stack.last_update)}"
    )


def _when(seconds: int) -> str:
    if not seconds:
        return "at an unknown time"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _changes(changes: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(changes.items()) if count)


HELP_TEXT = (
    "I can answer from your organization's live data and from Pulumi concepts:\n"
    "- who the members of your organization are, which stacks a project has, recent updates "
    "and resource counts;\n"
    "- what went wrong in an update (ask with the update's console URL as context);\n"
    "- Pulumi concepts such as inputs and outputs, stacks, configuration and secrets, stack "
    "references, providers and components;\n"
    '- programs: for example "Write code to create an S3 bucket in Python".'
)


def facts_for_model(answer: Answer) -> Sequence[str]:
    """What a model may see to phrase an answer: the skill's own text, nothing else."""
    return (answer.text,)
