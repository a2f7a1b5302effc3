"""The copilot's use cases: one conversation turn, and the skills a question is routed to.

Every skill answers from data: the organization's members, stacks, updates, resources,
deployments and audit log read through the other services with the asker's visibility, an
update's engine events, the bundled notes, or the program catalogue. Names in the question
are resolved against what the asker can see (`entities`), the wording picks a skill
(`intents`), and the conversation's focus carries names and the last skill to follow-ups.
A configured model may rephrase an answer, never invent its facts.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from services.common.auth import Caller
from services.common.clock import Clock
from services.common.errors import Unauthenticated
from services.copilot import diagnosis, entities, intents, programs, retrieval
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
    Focus,
    Message,
    check_organization,
    parse_context,
    trace_text,
    validate_query,
)
from services.copilot.entities import LAST, PREVIOUS, Catalog, Resolution, StackName
from services.copilot.failure_patterns import GENERIC_PATTERN
from services.copilot.peers import (
    AuditEntry,
    DeploymentInfo,
    MemberInfo,
    ResourceInfo,
    StackInfo,
    UpdateSummary,
)
from services.copilot.store import ConversationStore

CLOUD_SKILL = "Pulumi Cloud"
DOCS_SKILL = "Pulumi Docs"
PROGRAM_SKILL = "Pulumi program generation"
HELP_SKILL = "Pulumi Copilot help"

RECENT_UPDATES = 5
HISTORY_ROWS = 10
MAX_TYPE_STACKS = 100
MAX_LISTED_RESOURCES = 20
AUDIT_ENTRIES = 200
AUDIT_ROWS = 10
_HANDLED = frozenset(
    {
        intents.COMPARE,
        intents.ANALYSE,
        intents.DEPLOYMENT_ANALYSIS,
        intents.WHAT_CHANGED,
        intents.HISTORY,
        intents.DEPLOYMENTS,
        intents.RESOURCE_TYPE,
        intents.RESOURCES,
        intents.UPDATES,
        intents.STACKS,
        intents.MEMBERS,
    }
)
_VERSION_SUFFIX = re.compile(r"v\d+$")
# An error code as providers spell them (NoCredentialProviders, AccessDenied) or a quoted
# error line: what makes a question about that error rather than about a concept.
_ERROR_CODE = re.compile(r"\b[A-Z][a-z]+(?:[A-Z][a-z]+)+\b|\berror:\s")
# Engine steps that leave a resource as it was.
_UNCHANGED_OPS = frozenset({"same", "read", "refresh"})


class Reader(Protocol):
    """What the skills read from the other services (peers.Peers over gRPC)."""

    async def members(self, organization: str, caller: Caller) -> list[MemberInfo]: ...

    async def stacks(
        self, organization: str, project: str, caller: Caller, token: str = ""
    ) -> list[StackInfo]: ...

    async def updates(self, stack_id: str, limit: int, caller: Caller) -> list[UpdateSummary]: ...

    async def update(self, stack_id: str, version: int, caller: Caller) -> UpdateSummary | None: ...

    async def events(self, stack_id: str, update_id: str, caller: Caller) -> list[Any]: ...

    async def resources(
        self, stack_id: str, version: int, caller: Caller
    ) -> tuple[int, list[ResourceInfo]]: ...

    async def deployments(
        self, organization: str, stack_id: str, limit: int, caller: Caller
    ) -> list[DeploymentInfo]: ...

    async def deployment_logs(
        self, stack_id: str, deployment_id: str, caller: Caller
    ) -> list[str]: ...

    async def audit(self, organization: str, limit: int, caller: Caller) -> list[AuditEntry]: ...


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
            answer = await self._skills.answer(asker, text, context, caller, conversation.focus)
        turn = [
            Message(USER, RESPONSE, text),
            Message(ASSISTANT, TRACE, trace_text(asker)),
            *await self._reply(text, answer),
        ]
        await self._store.append(conversation.id, turn, self._clock.now(), answer.focus)
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


@dataclass(frozen=True)
class _Turn:
    """One question with everything resolved about it."""

    asker: Asker
    caller: Caller
    query: str
    context: Context
    catalog: Catalog
    stacks: Mapping[str, StackInfo]  # by project/stack
    resolution: Resolution
    focus: Focus
    # The question names a stack itself (not only through the console page it was asked on).
    names_stack: bool = False

    def info(self, name: StackName) -> StackInfo:
        return self.stacks[name.name]


class Skills:
    """Routes a question to the skill that can answer it."""

    def __init__(self, peers: Reader) -> None:
        self._peers = peers

    async def answer(
        self,
        asker: Asker,
        query: str,
        context: Context,
        caller: Caller,
        focus: Focus | None = None,
    ) -> Answer:
        focus = focus or Focus()
        request = programs.parse_request(query)
        if request is not None:
            return program_answer(request)
        if focus.program is not None and len(focus.program) >= 3:
            resource, cloud, language, *rest = focus.program
            changed = programs.follow_up_request(
                query, resource, cloud, language, rest[0] if rest else ""
            )
            if changed is not None:
                return program_answer(changed)
        if context.version and (
            len(query.split()) <= 4 or intents.classify(query, names_data=True) == intents.ANALYSE
        ):
            return await self._analyse_context(asker, context, caller)
        turn = await self._turn(asker, query, context, caller, focus)
        query = turn.query
        names_data = turn.resolution.names_anything or bool(context.stack)
        intent = intents.classify(query, names_data=names_data)
        if intent in (intents.CONCEPT, "") and not turn.resolution.names_anything:
            known = known_error(query)
            if known is not None:
                return known
        if intent == intents.CONCEPT:
            about = _without_names(query, turn.resolution)
            concept = _concept(about)
            if concept is not None:
                return concept
            if turn.resolution.problems:
                return _problems(turn)
            if turn.resolution.stack is None or not turn.names_stack:
                return _unknown_concept(about)
            # "What's the state of web/prod?": no note, but a stack to talk about.
            return await self._stack_overview(turn)
        if (
            not intent
            and focus.intent in _HANDLED
            and intents.is_follow_up(query, names_data=names_data or bool(turn.resolution.role))
        ):
            intent = focus.intent
            turn = _inherit(turn, focus)
        elif intent in intents.STACK_INTENTS and not turn.resolution.names_anything:
            # "How many resources do they have?" keeps the project of the previous turn too.
            turn = _inherit(turn, focus, stack_only=not intents.refers_back(query))
        if intent:
            return await self._dispatch(intent, turn)
        if turn.names_stack and turn.resolution.stack is not None and not turn.resolution.problems:
            # "lambda functions in web/prod?": a resource type the named stack has.
            typed = await self._resource_type(turn, only_matches=True)
            if typed is not None:
                return typed
        concept = _concept(_without_names(query, turn.resolution))
        if concept is not None:
            return concept
        if turn.resolution.problems:
            return _problems(turn)
        if turn.resolution.stack is not None:
            return await self._updates(turn)
        if _looks_like_question(query):
            return _unknown_concept(query)
        return Answer(HELP_SKILL, HELP_TEXT, is_rephrasable=False)

    async def _turn(
        self, asker: Asker, query: str, context: Context, caller: Caller, focus: Focus
    ) -> _Turn:
        visible = await self._peers.stacks(asker.organization, "", caller, asker.token)
        by_name = {stack.name: stack for stack in visible}
        members: list[MemberInfo] = []
        catalog = Catalog(
            asker.organization,
            tuple(StackName(s.organization, s.project, s.stack) for s in visible),
            tuple(m.login for m in members),
        )
        query = intents.normalize(query, _known_words(catalog))
        resolution = entities.resolve(query, catalog)
        names_stack = bool(resolution.stacks)
        if not resolution.stacks and context.stack and context.organization == asker.organization:
            name = f"{context.project}/{context.stack}"
            if name in by_name and not resolution.projects:
                found = next(s for s in catalog.stacks if s.name == name)
                resolution = replace(resolution, stacks=(found,))
        project = focus.project or context.project
        resolution = entities.within(resolution, project, catalog)
        return _Turn(
            asker, caller, query, context, catalog, by_name, resolution, focus, names_stack
        )

    async def _dispatch(self, intent: str, turn: _Turn) -> Answer:
        if turn.resolution.problems and intent != intents.MEMBERS:
            return _problems(turn)
        handlers: dict[str, Callable[[_Turn], Awaitable[Answer | None]]] = {
            intents.COMPARE: self._compare,
            intents.ANALYSE: self._analyse,
            intents.DEPLOYMENT_ANALYSIS: self._deployment_analysis,
            intents.WHAT_CHANGED: self._what_changed,
            intents.HISTORY: self._history,
            intents.DEPLOYMENTS: self._deployments,
            intents.RESOURCE_TYPE: self._resource_type,
            intents.RESOURCES: self._resources,
            intents.UPDATES: self._updates,
            intents.STACKS: self._stacks,
            intents.MEMBERS: self._members,
        }
        answer = await handlers[intent](turn)
        if answer is None:
            raise AssertionError(f"the {intent} skill gave no answer")
        return answer

    async def summarize_output(self, output: str, *, is_preview: bool) -> Answer:
        """The SDK's direct skills: explain an update's or preview's text output."""
        events = log_events(output.splitlines())
        word = "preview" if is_preview else "update"
        if not events:
            return Answer(CLOUD_SKILL, f"The {word} output shows no errors.")
        # The account's first paragraph names a stack and version the output does not carry.
        sections = diagnosis.explain(diagnosis.diagnose(events), "", 0).split("\n\n")
        headline = f"The {word} output reports {len(events)} error line(s)."
        return Answer(CLOUD_SKILL, "\n\n".join([headline, *sections[1:]]))

    # -- organization questions ------------------------------------------------------------

    async def _members(self, turn: _Turn) -> Answer:
        members = await self._peers.members(turn.asker.organization, _caller(turn.asker))
        role = turn.resolution.role
        org = turn.asker.organization
        focus = Focus(intent=intents.MEMBERS, role=role)
        named = [m for m in members if m.login.lower() in _words(turn.query)]
        if named:
            lines = [_member_line(m) for m in named]
            return Answer(CLOUD_SKILL, "\n".join(lines), focus=focus)
        chosen = [m for m in members if not role or m.role == role]
        if role and not chosen:
            return Answer(
                CLOUD_SKILL,
                f"No member of organization '{org}' has the {role} role "
                f"(it has {len(members)} member{'s' if len(members) != 1 else ''}).",
                focus=focus,
            )
        lines = [_member_line(m) for m in chosen]
        count = len(chosen)
        if role:
            verb = "have" if count != 1 else "has"
            head = f"{count} member{_s(count)} of '{org}' {verb} the {role} role:"
        else:
            head = f"The organization '{org}' has {count} member{'s' if count != 1 else ''}:"
        return Answer(CLOUD_SKILL, head + "\n" + "\n".join(lines), focus=focus)

    async def _stacks(self, turn: _Turn) -> Answer:
        projects = turn.resolution.projects
        stacks = [
            turn.stacks[s.name]
            for s in turn.catalog.stacks
            if not projects or s.project in projects
        ]
        where = (
            f"project '{projects[0]}'"
            if len(projects) == 1
            else f"projects {', '.join(projects)}"
            if projects
            else f"organization '{turn.asker.organization}'"
        )
        focus = Focus(intent=intents.STACKS, project=projects[0] if len(projects) == 1 else "")
        if not stacks:
            return Answer(
                CLOUD_SKILL, f"There are no stacks in the {where} that you can see.", focus=focus
            )
        lines = [f"- {_describe_stack(stack)}" for stack in stacks]
        return Answer(
            CLOUD_SKILL,
            f"The {where} has {len(stacks)} stack{_s(len(stacks))}:\n" + "\n".join(lines),
            focus=focus,
        )

    async def _resources(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        if stack is not None:
            info = turn.info(stack)
            version, found = await self._peers.resources(info.id, 0, turn.caller)
            focus = _stack_focus(intents.RESOURCES, stack)
            if not version:
                return Answer(
                    CLOUD_SKILL,
                    f"Stack `{stack.name}` has never been updated, so it manages no resources.",
                    focus=focus,
                )
            named: dict[str, list[str]] = {}
            for resource in found:
                if resource.type != diagnosis.STACK_RESOURCE_TYPE:
                    named.setdefault(resource.type, []).append(resource.name)
            lines = [
                f"- `{kind}`: {len(listed)} ("
                + ", ".join(f"`{n}`" for n in listed[:MAX_LISTED_RESOURCES])
                + ")"
                for kind, listed in sorted(named.items(), key=lambda item: -len(item[1]))
            ]
            text = (
                f"Stack `{stack.name}` manages {info.resource_count} resource"
                f"{_s(info.resource_count)} (version {version})"
            )
            return Answer(
                CLOUD_SKILL,
                text + (":\n" + "\n".join(lines) if lines else "."),
                focus=focus,
            )
        stacks = _in_scope(turn)
        total = sum(s.resource_count for s in stacks)
        projects = turn.resolution.projects
        where = (
            f"project '{projects[0]}'"
            if len(projects) == 1
            else f"organization '{turn.asker.organization}'"
        )
        lines = [
            f"- {s.name}: {s.resource_count}"
            for s in sorted(stacks, key=lambda s: (-s.resource_count, s.name))
        ]
        return Answer(
            CLOUD_SKILL,
            f"The {where} manages {total} resource(s) across {len(stacks)} stack(s):\n"
            + "\n".join(lines),
            focus=Focus(intent=intents.RESOURCES, project=projects[0] if projects else ""),
        )

    async def _stack_overview(self, turn: _Turn) -> Answer:
        """A question naming one stack and no skill: the resources of a type it names
        ("lambda functions in web/prod?"), else the stack's recent updates."""
        typed = await self._resource_type(turn, only_matches=True)
        return typed if typed is not None else await self._updates(turn)

    async def _resource_type(self, turn: _Turn, *, only_matches: bool = False) -> Answer | None:
        named = turn.resolution.stack
        scope = [turn.info(named)] if named is not None else _in_scope(turn)
        stacks = [s for s in scope if s.version][:MAX_TYPE_STACKS]
        found: dict[str, list[ResourceInfo]] = {}
        for stack in stacks:
            _, resources = await self._peers.resources(stack.id, 0, turn.caller)
            found[stack.name] = [r for r in resources if r.type != diagnosis.STACK_RESOURCE_TYPE]
        types = sorted({r.type for listed in found.values() for r in listed})
        wanted = match_types(_without_names(turn.query, turn.resolution), types)
        focus = Focus(intent=intents.RESOURCE_TYPE)
        if not wanted and only_matches:
            return None
        if not wanted:
            listed = ", ".join(f"`{t}`" for t in types[:MAX_LISTED_RESOURCES]) or "none"
            return Answer(
                CLOUD_SKILL,
                "I cannot tell which resource type you mean: no type in the stacks you can see "
                f"matches the question. Types present: {listed}.",
                focus=focus,
            )
        sections = []
        for name, resources in found.items():
            hits = [r for r in resources if r.type in wanted]
            if hits:
                names = ", ".join(f"`{r.name}`" for r in hits[:MAX_LISTED_RESOURCES])
                sections.append(f"- {name}: {len(hits)} ({names})")
        kinds = ", ".join(f"`{t}`" for t in sorted(wanted))
        total = sum(1 for rs in found.values() for r in rs if r.type in wanted)
        return Answer(
            CLOUD_SKILL,
            f"{total} resource{_s(total)} of type {kinds} in {len(sections)} stack"
            f"{_s(len(sections))}:\n" + "\n".join(sections),
            focus=focus,
        )

    # -- one stack's updates ---------------------------------------------------------------

    async def _updates(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        if stack is not None:
            info = turn.info(stack)
            focus = _stack_focus(intents.UPDATES, stack)
            if not info.version:
                return Answer(
                    CLOUD_SKILL, f"Stack `{stack.name}` has not been updated yet.", focus=focus
                )
            history = await self._peers.updates(info.id, RECENT_UPDATES, turn.caller)
            rows = [_update_row(u) for u in history]
            return Answer(
                CLOUD_SKILL,
                f"Most recent updates of stack `{stack.name}` (current version {info.version}):\n"
                + "\n".join(rows),
                focus=focus,
            )
        stacks = _in_scope(turn)
        updated = sorted((s for s in stacks if s.version), key=lambda s: -s.last_update)[
            :RECENT_UPDATES
        ]
        project = turn.resolution.project
        focus = Focus(intent=intents.UPDATES, project=project)
        if not updated:
            where = f"project '{project}'" if project else "the stacks you can see"
            return Answer(CLOUD_SKILL, f"No stack in {where} has been updated yet.", focus=focus)
        sections = []
        for info in updated:
            history = await self._peers.updates(info.id, RECENT_UPDATES, turn.caller)
            rows = ["  " + _update_row(u) for u in history]
            sections.append(f"- {info.name}:\n" + "\n".join(rows))
        return Answer(CLOUD_SKILL, "Most recent updates:\n" + "\n".join(sections), focus=focus)

    async def _one_update(
        self, turn: _Turn, intent: str, *, failed_first: bool = False
    ) -> tuple[StackName, StackInfo, UpdateSummary] | Answer:
        """The update a question points at, or the answer saying why there is none."""
        stack = turn.resolution.stack
        if stack is None:
            return _which_stack(turn, intent)
        info = turn.info(stack)
        focus = _stack_focus(intent, stack)
        if not info.version:
            return Answer(
                CLOUD_SKILL, f"Stack `{stack.name}` has not been updated yet.", focus=focus
            )
        version = turn.resolution.version
        if version > 0:
            update = await self._peers.update(info.id, version, turn.caller)
            if update is None:
                return Answer(
                    CLOUD_SKILL,
                    f"Stack `{stack.name}` has no update {version}; its versions run from 1 to "
                    f"{info.version}.",
                    focus=focus,
                )
            return stack, info, update
        history = await self._peers.updates(info.id, HISTORY_ROWS, turn.caller)
        if not history:
            return Answer(
                CLOUD_SKILL, f"Stack `{stack.name}` has not been updated yet.", focus=focus
            )
        if version == PREVIOUS and len(history) > 1:
            return stack, info, history[1]
        if failed_first and version != LAST:
            failed = [u for u in history if u.result == "failed"]
            if failed:
                return stack, info, failed[0]
        return stack, info, history[0]

    async def _what_changed(self, turn: _Turn) -> Answer:
        found = await self._one_update(turn, intents.WHAT_CHANGED)
        if isinstance(found, Answer):
            return found
        stack, info, update = found
        events = await self._peers.events(info.id, update.update_id, turn.caller)
        steps = resource_steps(events)
        head = (
            f"Update {update.version} of stack `{stack.name}` ({update.kind}, {update.result}"
            f"{', by ' + update.requested_by if update.requested_by else ''}, "
            f"{_when(update.start_time)})"
        )
        changes = _changes(update.resource_changes)
        lines = [f"- {op} `{kind}` **{name}**" for op, kind, name in steps]
        if not lines and update.version > 1:
            lines = await self._state_diff(info, update.version - 1, update.version, turn.caller)
        text = head + (f": {changes}." if changes else ": no resource changes recorded.")
        if lines:
            text += "\n\nResources changed:\n" + "\n".join(lines)
        focus = _stack_focus(intents.WHAT_CHANGED, stack, update.version)
        return Answer(CLOUD_SKILL, text, focus=focus)

    async def _state_diff(
        self, info: StackInfo, before: int, after: int, caller: Caller
    ) -> list[str]:
        _, old = await self._peers.resources(info.id, before, caller)
        _, new = await self._peers.resources(info.id, after, caller)
        old_by_urn = {r.urn: r for r in old}
        new_by_urn = {r.urn: r for r in new}
        lines = [
            f"- create `{r.type}` **{r.name}**"
            for urn, r in sorted(new_by_urn.items())
            if urn not in old_by_urn
        ]
        lines += [
            f"- delete `{r.type}` **{r.name}**"
            for urn, r in sorted(old_by_urn.items())
            if urn not in new_by_urn
        ]
        return lines

    async def _compare(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        if stack is None:
            return _which_stack(turn, intents.COMPARE)
        info = turn.info(stack)
        versions = turn.resolution.versions
        if len(versions) != 2:
            if info.version < 2:
                return Answer(
                    CLOUD_SKILL,
                    f"Stack `{stack.name}` has {info.version} version{_s(info.version)}; "
                    "comparing needs two.",
                    focus=_stack_focus(intents.COMPARE, stack),
                )
            versions = (info.version - 1, info.version)
        first, second = sorted(versions)
        if second > info.version or first < 1:
            return Answer(
                CLOUD_SKILL,
                f"Stack `{stack.name}` has versions 1 to {info.version}; it has no version "
                f"{second if second > info.version else first}.",
                focus=_stack_focus(intents.COMPARE, stack),
            )
        _, old = await self._peers.resources(info.id, first, turn.caller)
        _, new = await self._peers.resources(info.id, second, turn.caller)
        old_urns = {r.urn: r for r in old if r.type != diagnosis.STACK_RESOURCE_TYPE}
        new_urns = {r.urn: r for r in new if r.type != diagnosis.STACK_RESOURCE_TYPE}
        added = [new_urns[u] for u in sorted(new_urns) if u not in old_urns]
        removed = [old_urns[u] for u in sorted(old_urns) if u not in new_urns]
        kept = len(set(old_urns) & set(new_urns))
        lines = [
            f"Stack `{stack.name}`, version {first} → version {second}: {len(old_urns)} → "
            f"{len(new_urns)} resources; {len(added)} added, {len(removed)} removed, "
            f"{kept} in both."
        ]
        if added:
            lines.append("Added:\n" + "\n".join(f"- `{r.type}` **{r.name}**" for r in added))
        if removed:
            lines.append("Removed:\n" + "\n".join(f"- `{r.type}` **{r.name}**" for r in removed))
        history = await self._peers.updates(info.id, HISTORY_ROWS, turn.caller)
        between = [u for u in history if first < u.version <= second]
        if between:
            lines.append(
                "Updates in between:\n"
                + "\n".join(_update_row(u) for u in sorted(between, key=lambda u: u.version))
            )
        return Answer(
            CLOUD_SKILL, "\n\n".join(lines), focus=_stack_focus(intents.COMPARE, stack, second)
        )

    async def _history(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        members = await self._peers.members(turn.asker.organization, _caller(turn.asker))
        is_admin = any(m.login == turn.asker.login and m.role == "admin" for m in members)
        logins = [m.login for m in members if m.login.lower() in _words(turn.query)]
        if stack is None:
            stacks = [s for s in _in_scope(turn) if s.version]
            rows: list[tuple[int, str]] = []
            for info in stacks:
                for u in await self._peers.updates(info.id, HISTORY_ROWS, turn.caller):
                    if not logins or u.requested_by in logins:
                        row = _update_row(u).removeprefix("- ")
                        rows.append((u.start_time, f"- {info.name}: {row}"))
            rows.sort(key=lambda row: -row[0])
            who = f" by {', '.join(logins)}" if logins else ""
            if not rows:
                return Answer(
                    CLOUD_SKILL,
                    f"No update{who} in the stacks you can see.",
                    focus=Focus(intent=intents.HISTORY),
                )
            return Answer(
                CLOUD_SKILL,
                f"Latest changes{who}:\n" + "\n".join(r for _, r in rows[:HISTORY_ROWS]),
                focus=Focus(intent=intents.HISTORY),
            )
        info = turn.info(stack)
        focus = _stack_focus(intents.HISTORY, stack)
        history = await self._peers.updates(info.id, HISTORY_ROWS, turn.caller)
        if not history:
            text = f"Stack `{stack.name}` has not been updated yet."
        else:
            last = history[0]
            who = last.requested_by or "an unknown user"
            text = (
                f"Stack `{stack.name}` was last changed by {who} "
                f"on {_when(last.start_time)} (update {last.version}, {last.kind}, "
                f"{last.result}).\n\nHistory:\n" + "\n".join(_update_row(u) for u in history)
            )
        if is_admin:
            entries = await self._peers.audit(turn.asker.organization, AUDIT_ENTRIES, turn.caller)
            path = f"{stack.project}/{stack.stack}"
            mine = [e for e in entries if path in e.target][:AUDIT_ROWS]
            if mine:
                text += "\n\nAudit log (admins only):\n" + "\n".join(
                    f"- {_when(e.time)}: {e.login or 'system'} {e.event}"
                    + (f" ({e.description})" if e.description else "")
                    for e in mine
                )
        return Answer(CLOUD_SKILL, text, focus=focus)

    # -- failures --------------------------------------------------------------------------

    async def _analyse(self, turn: _Turn) -> Answer:
        failing: list[str] = []
        if turn.resolution.stack is None and intents.asks_for_several(turn.query):
            failing = await self._failing_stacks(turn)
        if turn.resolution.stack is None and not turn.resolution.projects:
            failed = await self._latest_failed(turn)
            if failed is None:
                return _which_stack(turn, intents.ANALYSE)
            turn = replace(turn, resolution=replace(turn.resolution, stacks=(failed,)))
        found = await self._one_update(turn, intents.ANALYSE, failed_first=True)
        if isinstance(found, Answer):
            return found
        stack, info, update = found
        text = await self._explain_update(info, update, turn.caller)
        if failing:
            text = (
                f"{len(failing)} stack{_s(len(failing))} you can see "
                f"{'has its' if len(failing) == 1 else 'have their'} latest update failed:\n"
                + "\n".join(failing)
                + f"\n\nThe most recent failure, in `{stack.name}`:\n\n"
                + text
            )
        return Answer(CLOUD_SKILL, text, focus=_stack_focus(intents.ANALYSE, stack, update.version))

    async def _failing_stacks(self, turn: _Turn) -> list[str]:
        """One line per stack in scope whose latest update failed, newest first."""
        stacks = sorted((s for s in _in_scope(turn) if s.version), key=lambda s: -s.last_update)
        lines = []
        for info in stacks:
            history = await self._peers.updates(info.id, 1, turn.caller)
            if history and history[0].result == "failed":
                lines.append(f"- {info.name}: " + _update_row(history[0]).removeprefix("- "))
        return lines

    async def _latest_failed(self, turn: _Turn) -> StackName | None:
        stacks = sorted((s for s in _in_scope(turn) if s.version), key=lambda s: -s.last_update)
        for info in stacks[:RECENT_UPDATES]:
            history = await self._peers.updates(info.id, 1, turn.caller)
            if history and history[0].result == "failed":
                return next(s for s in turn.catalog.stacks if s.name == info.name)
        return None

    async def _explain_update(self, info: StackInfo, update: UpdateSummary, caller: Caller) -> str:
        events = await self._peers.events(info.id, update.update_id, caller)
        found = diagnosis.diagnose(events)
        text = diagnosis.explain(found, info.name, update.version)
        if update.result == "failed" or found.failures or found.general_errors:
            return text
        changes = _changes(update.resource_changes) or "no resource changes"
        return (
            f"Update {update.version} of stack '{info.name}' ({update.kind}) {update.result}: "
            f"{changes}.\n\n{text}"
        )

    async def _analyse_context(self, asker: Asker, context: Context, caller: Caller) -> Answer:
        missing = _missing_update(context)
        if context.organization not in asker.visible_organizations:
            return missing
        visible = await self._peers.stacks(
            context.organization, context.project, caller, asker.token
        )
        info = next((s for s in visible if s.stack == context.stack), None)
        if info is None:
            return missing
        update = await self._peers.update(info.id, context.version, caller)
        if update is None:
            return missing
        text = await self._explain_update(info, update, caller)
        focus = Focus(
            intent=intents.ANALYSE,
            project=info.project,
            stack=info.name,
            version=context.version,
        )
        return Answer(CLOUD_SKILL, text, focus=focus)

    async def _deployments(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        scope = [turn.info(stack)] if stack is not None else _in_scope(turn)
        focus = (
            _stack_focus(intents.DEPLOYMENTS, stack)
            if stack is not None
            else Focus(intent=intents.DEPLOYMENTS, project=turn.resolution.project)
        )
        sections = []
        for info in scope:
            found = await self._peers.deployments(
                turn.asker.organization, info.id, RECENT_UPDATES, turn.caller
            )
            if found:
                rows = [f"  - {_deployment_row(d)}" for d in found]
                sections.append(f"- {info.name}:\n" + "\n".join(rows))
        if not sections:
            where = f"stack `{stack.name}`" if stack is not None else "the stacks you can see"
            return Answer(CLOUD_SKILL, f"There are no deployments of {where}.", focus=focus)
        return Answer(CLOUD_SKILL, "Recent deployments:\n" + "\n".join(sections), focus=focus)

    async def _deployment_analysis(self, turn: _Turn) -> Answer:
        stack = turn.resolution.stack
        scope = [turn.info(stack)] if stack is not None else _in_scope(turn)
        chosen: tuple[StackInfo, DeploymentInfo] | None = None
        version = turn.resolution.version
        for info in scope:
            for deployment in await self._peers.deployments(
                turn.asker.organization, info.id, HISTORY_ROWS, turn.caller
            ):
                is_wanted = (
                    deployment.version == version if version > 0 else deployment.status == "failed"
                )
                if is_wanted and (chosen is None or deployment.created > chosen[1].created):
                    chosen = (info, deployment)
        if chosen is None:
            where = f"stack `{stack.name}`" if stack is not None else "the stacks you can see"
            what = f"deployment {version}" if version > 0 else "failed deployment"
            return Answer(
                CLOUD_SKILL,
                f"There is no {what} of {where}.",
                focus=Focus(intent=intents.DEPLOYMENT_ANALYSIS),
            )
        info, deployment = chosen
        lines = await self._peers.deployment_logs(info.id, deployment.id, turn.caller)
        found = diagnosis.diagnose(log_events(lines))
        head = (
            f"Deployment {deployment.version} of stack `{info.name}` ({deployment.operation}) "
            f"{deployment.status}"
            + (f", requested by {deployment.requested_by}" if deployment.requested_by else "")
            + f", {_when(deployment.created)}."
        )
        if deployment.status != "failed" and not (found.failures or found.general_errors):
            body = "Its log reports no errors."
        else:
            sections = diagnosis.explain(found, info.name, deployment.version).split("\n\n")
            body = "\n\n".join(sections[1:]) or (
                "Its log carries no error lines; " + (deployment.message or "no message.")
            )
        focus = Focus(
            intent=intents.DEPLOYMENT_ANALYSIS,
            project=info.project,
            stack=info.name,
            version=deployment.version,
        )
        return Answer(CLOUD_SKILL, head + "\n\n" + body, focus=focus)


# -- pure helpers ------------------------------------------------------------------------------


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
        f"Here is a {programs.LANGUAGE_NAMES[program.language]} program that creates "
        f"{program.description}. {program.instructions.splitlines()[-1]}"
    )
    focus = Focus(
        intent=intents.PROGRAM,
        program=(request.resource, request.cloud, request.language, request.chart),
    )
    return Answer(PROGRAM_SKILL, text, program=content, is_rephrasable=False, focus=focus)


def log_events(lines: Sequence[str]) -> list[dict[str, Any]]:
    """Error lines of a text log as diagnostic events, for the diagnosis table."""
    return [
        {"sequence": n, "diagnosticEvent": {"message": line, "severity": "error"}}
        for n, line in enumerate(lines)
        if "error" in line.lower()
    ]


def resource_steps(events: Sequence[Mapping[str, Any]]) -> list[tuple[str, str, str]]:
    """(op, type, name) of every resource step that changed something, in order."""
    steps: dict[str, tuple[str, str, str]] = {}
    for event in diagnosis.ordered_events(events):
        pre = event.get("resourcePreEvent")
        if not isinstance(pre, Mapping):
            continue
        metadata = pre.get("metadata")
        if not isinstance(metadata, Mapping):
            continue
        urn, op = str(metadata.get("urn", "")), str(metadata.get("op", ""))
        kind = str(metadata.get("type", "")) or diagnosis.urn_type(urn)
        if not urn or op in _UNCHANGED_OPS or kind == diagnosis.STACK_RESOURCE_TYPE:
            continue
        steps[urn] = (op, kind, diagnosis.urn_name(urn))
    return list(steps.values())


def match_types(query: str, types: Sequence[str]) -> set[str]:
    """The resource types a question names: a full token, or a type's last word."""
    lowered = query.lower()
    exact = {t for t in types if t.lower() in lowered}
    if exact:
        return exact
    words = {w.rstrip("s") for w in _words(query) if len(w) > 2}
    words -= {"resource", "stack", "type", "acros", "which", "where", "have", "use", "all"}
    found = set()
    for kind in types:
        parts = kind.lower().split(":")
        names = {_VERSION_SUFFIX.sub("", parts[-1])}
        if len(parts) >= 3:
            names.update(_VERSION_SUFFIX.sub("", p) for p in parts[1].split("/"))
        if {name.rstrip("s") for name in names} & words:
            found.add(kind)
    return found


def _in_scope(turn: _Turn) -> list[StackInfo]:
    projects = turn.resolution.projects
    return [
        turn.stacks[s.name] for s in turn.catalog.stacks if not projects or s.project in projects
    ]


def _inherit(turn: _Turn, focus: Focus, *, stack_only: bool = False) -> _Turn:
    """Names from the conversation's focus where the question gives none of its own."""
    resolution = turn.resolution
    if not resolution.stacks and not resolution.projects and focus.stack in turn.stacks:
        found = next(s for s in turn.catalog.stacks if s.name == focus.stack)
        resolution = replace(resolution, stacks=(found,))
    elif not resolution.projects and not resolution.stacks and focus.project and not stack_only:
        resolution = replace(resolution, projects=(focus.project,))
    if not stack_only and not resolution.role and focus.role:
        resolution = replace(resolution, role=focus.role)
    return replace(turn, resolution=resolution)


def _stack_focus(intent: str, stack: StackName, version: int = 0) -> Focus:
    return Focus(intent=intent, project=stack.project, stack=stack.name, version=version)


def _which_stack(turn: _Turn, intent: str) -> Answer:
    names = ", ".join(f"`{s.name}`" for s in turn.catalog.stacks[:10]) or "none"
    return Answer(
        CLOUD_SKILL,
        "Which stack do you mean? Name it as `project/stack`. Stacks you can see: " + names + ".",
        focus=Focus(intent=intent, project=turn.resolution.project),
    )


def _problems(turn: _Turn) -> Answer:
    text = "\n".join(
        f"- {entities.describe_problem(p, turn.asker.organization)}"
        for p in turn.resolution.problems
    )
    return Answer(CLOUD_SKILL, text, focus=turn.focus)


def _missing_update(context: Context) -> Answer:
    name = f"{context.project}/{context.stack}"
    return Answer(
        CLOUD_SKILL,
        f"I cannot find update {context.version} of stack '{name}' in an organization you can see.",
    )


def _concept(query: str) -> Answer | None:
    found = retrieval.answer_concept(query)
    if found is None:
        return None
    return Answer(DOCS_SKILL, found, focus=Focus(intent=intents.CONCEPT))


def _unknown_concept(query: str) -> Answer:
    return Answer(DOCS_SKILL, retrieval.dont_know(query), focus=Focus(intent=intents.CONCEPT))


def _looks_like_question(query: str) -> bool:
    return query.rstrip().endswith("?") or len(query.split()) > 3


def _caller(asker: Asker) -> Caller:
    return Caller(user_id=asker.user_id, login=asker.login)


def _words(text: str) -> set[str]:
    words = {w.strip(".,;:!?'\"`()").lstrip("@").lower() for w in text.split()}
    # "bob's role" names bob.
    return words | {w.removesuffix("'s").removesuffix("\u2019s") for w in words}


def known_error(query: str) -> Answer | None:
    """A question quoting an error code the diagnosis table knows ("how do I fix
    NoCredentialProviders?"), explained from that table; None for any other question."""
    if not _ERROR_CODE.search(query):
        return None
    pattern = diagnosis.match_pattern(query)
    if pattern is None or pattern is GENERIC_PATTERN:
        return None
    parts = [
        f"That is a known error: **{pattern.title}**.",
        f"**Why:** {pattern.explanation}",
        "**How to resolve the issue:**\n" + "\n".join(f"- {step}" for step in pattern.remediation),
    ]
    if pattern.doc_hint:
        parts.append(f"For background, see the **{pattern.doc_hint}** concept.")
    parts.append("Name the stack (`project/stack`) to see where it happened.")
    return Answer(CLOUD_SKILL, "\n\n".join(parts), focus=Focus(intent=intents.ANALYSE))


def _without_names(query: str, resolution: Resolution) -> str:
    """The question without the stack names it resolved: they are data, not concept words."""
    for stack in resolution.stacks:
        for name in (f"{stack.organization}/{stack.name}", stack.name):
            query = re.sub(re.escape(name), " ", query, flags=re.IGNORECASE)
    return query


def _known_words(catalog: Catalog) -> frozenset[str]:
    """Words never corrected as misspellings: the notes' words and the organization's names."""
    names = {catalog.organization, *catalog.logins}
    for stack in catalog.stacks:
        names.update((stack.project, stack.stack))
    return retrieval.corpus_words() | {n.lower() for n in names}


def _member_line(member: MemberInfo) -> str:
    name = f" ({member.name})" if member.name and member.name != member.login else ""
    return f"- {member.login}{name}: {member.role}"


def _describe_stack(stack: StackInfo) -> str:
    if not stack.version:
        return f"{stack.name}: never updated"
    return (
        f"{stack.name}: version {stack.version}, {stack.resource_count} resource(s), "
        f"last updated {_when(stack.last_update)}"
    )


def _update_row(update: UpdateSummary) -> str:
    return (
        f"- version {update.version}: {update.kind}, {update.result}, {_when(update.start_time)}"
        + (f", by {update.requested_by}" if update.requested_by else "")
        + (f", changes {_changes(update.resource_changes)}" if update.resource_changes else "")
        + (f' — "{update.message}"' if update.message else "")
    )


def _deployment_row(deployment: DeploymentInfo) -> str:
    return (
        f"deployment {deployment.version}: {deployment.operation}, {deployment.status}, "
        f"{_when(deployment.created)}"
        + (f", by {deployment.requested_by}" if deployment.requested_by else "")
    )


def _when(seconds: int) -> str:
    if not seconds:
        return "at an unknown time"
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%d %H:%M UTC")


def _changes(changes: Mapping[str, int]) -> str:
    return ", ".join(f"{kind} {count}" for kind, count in sorted(changes.items()) if count)


def _s(count: int) -> str:
    return "" if count == 1 else "s"


HELP_TEXT = (
    "I can answer from your organization's live data and from Pulumi concepts:\n"
    "- who the members of your organization are, which stacks a project has, recent updates, "
    "resource counts and resources of a type across stacks;\n"
    "- what changed in an update, the difference between two versions of a stack, and who "
    "changed a stack and when;\n"
    "- what went wrong in an update or a deployment (name the stack, e.g. `web/prod`);\n"
    "- Pulumi concepts such as inputs and outputs, stacks, configuration and secrets, stack "
    "references, providers and components;\n"
    '- programs: for example "Write code to create an S3 bucket in Python" or '
    '"a static website with a CDN on AWS in Go".'
)


def facts_for_model(answer: Answer) -> Sequence[str]:
    """What a model may see to phrase an answer: the skill's own text, nothing else."""
    return (answer.text,)
