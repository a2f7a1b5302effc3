"""Finding the organization's own names in a question: projects, stacks, versions, members.

Pure: the caller's visible data comes in as a `Catalog`, so a stack the caller cannot read
is never matched, suggested or mentioned. Names compare case-insensitively; a name that
matches nothing exactly may still match one name by prefix or substring (a partial name);
several candidates make it ambiguous and the answer lists them instead of guessing.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

_T = TypeVar("_T")
LAST = -1  # "the last update"
PREVIOUS = -2  # "the update before"
MAX_SUGGESTIONS = 5

_PATH = re.compile(r"(?<![\w:/.-])([A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+){1,2})(?![\w/-])")
_STACK_WORD = re.compile(r"\bstack\s+[`'\"]?([A-Za-z0-9_.-]+)", re.I)
_PROJECT_WORD = re.compile(r"\bproject\s+[`'\"]?([A-Za-z0-9_.-]+)", re.I)
_WORD_PROJECT = re.compile(r"\b([A-Za-z0-9_.-]+)\s+project\b", re.I)
# "stacks in vault": the word after "stacks in" names a project, known or not.
_STACKS_IN = re.compile(
    r"\bstacks\s+(?:in|of|for|under)\s+(?:the\s+)?(?:project\s+)?[`'\"]?([A-Za-z0-9_.-]+)", re.I
)
_WORD = re.compile(r"[A-Za-z0-9_.@-]+")
_VERSION_PAIR = re.compile(
    r"\b(?:versions?|updates?|v)\s*#?(\d+)\s*"
    r"(?:(?:and|to|vs\.?|versus|with|,)\s*(?:version\s*|v|#)?|(?:version\s*|v|#))(\d+)\b"
    r"|\bbetween\s+(?:version\s*|v|#)?(\d+)\s+and\s+(?:version\s*|v|#)?(\d+)\b",
    re.I,
)
_VERSION = re.compile(r"\b(?:version|update|deployment|v|run)\s*#?(\d+)\b|#(\d+)\b", re.I)
_LAST = re.compile(r"\b(last|latest|newest|most recent|current|previous|recent)\b", re.I)
_PREVIOUS_ONE = re.compile(r"\b(update|version|one) before\b|\bprevious (update|version)\b", re.I)
ROLE_WORDS = (
    (re.compile(r"\bviewers?\b", re.I), "viewer"),
    (re.compile(r"\badmins?\b|\badministrators?\b|\bowners?\b", re.I), "admin"),
    (re.compile(r"\bplain members?\b|\bmember role\b|\brole member\b", re.I), "member"),
)
# Words that look like names but are the question's own vocabulary.
_COMMON_TEXT = """
    a an the my our this that these those in of for on at to and or is are was were do does
    did what which who how why when where show list me stack stacks project projects update
    updates version versions resource resources member members user users org organization
    last latest about with it its has have change changes changed all every total organisation
    common use production
"""
_COMMON = frozenset(_COMMON_TEXT.split())


@dataclass(frozen=True)
class StackName:
    """A stack the caller can read, by its names."""

    organization: str
    project: str
    stack: str

    @property
    def name(self) -> str:
        return f"{self.project}/{self.stack}"


@dataclass(frozen=True)
class Catalog:
    """What the caller may see in the organization the question is asked in."""

    organization: str
    stacks: tuple[StackName, ...] = ()
    logins: tuple[str, ...] = ()

    @property
    def projects(self) -> tuple[str, ...]:
        return tuple(sorted({s.project for s in self.stacks}, key=str.lower))


@dataclass(frozen=True)
class Problem:
    """A name the question used that matched no visible name, or several."""

    kind: str  # "stack" | "project"
    name: str
    candidates: tuple[str, ...]
    is_ambiguous: bool


@dataclass(frozen=True)
class Resolution:
    """The visible names a question points at."""

    projects: tuple[str, ...] = ()
    stacks: tuple[StackName, ...] = ()
    version: int = 0  # 0 none, LAST, PREVIOUS, or a version number
    versions: tuple[int, ...] = ()  # two versions to compare
    logins: tuple[str, ...] = ()
    role: str = ""
    problems: tuple[Problem, ...] = field(default_factory=tuple)

    @property
    def stack(self) -> StackName | None:
        return self.stacks[0] if len(self.stacks) == 1 else None

    @property
    def project(self) -> str:
        if len(self.projects) == 1:
            return self.projects[0]
        return ""

    @property
    def names_anything(self) -> bool:
        return bool(self.projects or self.stacks or self.problems)


def resolve(question: str, catalog: Catalog) -> Resolution:
    """The projects, stacks, versions, logins and role a question names."""
    stacks: list[StackName] = []
    projects: list[str] = []
    problems: list[Problem] = []
    consumed: set[str] = set()

    for match in _PATH.finditer(question):
        text = match[1].strip(".")
        parts = text.split("/")
        project, stack = parts[-2], parts[-1]
        found = [
            s
            for s in catalog.stacks
            if s.project.lower() == project.lower() and s.stack.lower() == stack.lower()
        ]
        if len(parts) == 3 and parts[0].lower() != catalog.organization.lower():
            found = []
        consumed.update(p.lower() for p in parts)
        if found:
            _add(stacks, found[0])
        elif _is_path_like(project, stack, catalog):
            names = [s.name for s in catalog.stacks]
            problems.append(Problem("stack", text, suggest(f"{project}/{stack}", names), False))

    project_hints = (
        _hints(_PROJECT_WORD, question)
        + _hints(_WORD_PROJECT, question)
        + _hints(_STACKS_IN, question)
    )
    for hint in project_hints:
        lowered = hint.lower()
        if lowered in consumed or lowered in _COMMON or lowered == catalog.organization.lower():
            continue
        consumed.add(hint.lower())
        matched = match_name(hint, catalog.projects)
        if len(matched) == 1:
            _add(projects, matched[0])
        else:
            candidates = matched or suggest(hint, catalog.projects)
            problems.append(Problem("project", hint, tuple(candidates), bool(matched)))

    for hint in _hints(_STACK_WORD, question):
        if hint.lower() in consumed or hint.lower() in _COMMON:
            continue
        consumed.add(hint.lower())
        _stack_by_name(hint, catalog, projects, stacks, problems, strict=True)

    for word in _WORD.findall(question):
        lowered = word.strip(".").lower()
        if not lowered or lowered in consumed or lowered in _COMMON:
            continue
        if any(p.lower() == lowered for p in catalog.projects):
            consumed.add(lowered)
            _add(projects, next(p for p in catalog.projects if p.lower() == lowered))
        elif any(s.stack.lower() == lowered for s in catalog.stacks):
            consumed.add(lowered)
            _stack_by_name(lowered, catalog, projects, stacks, problems, strict=False)

    logins = _logins(question, catalog.logins)
    versions = _versions(question)
    return Resolution(
        projects=tuple(projects),
        stacks=tuple(stacks),
        version=0 if versions else _version(question),
        versions=versions,
        logins=logins,
        role=role_in(question),
        problems=tuple(problems),
    )


def within(resolution: Resolution, project: str, catalog: Catalog) -> Resolution:
    """Ambiguous stack names settled by a project known from earlier in the conversation."""
    if not project:
        return resolution
    stacks = list(resolution.stacks)
    problems = []
    for problem in resolution.problems:
        chosen = [
            s
            for s in catalog.stacks
            if s.name in problem.candidates and s.project.lower() == project.lower()
        ]
        if problem.kind == "stack" and problem.is_ambiguous and len(chosen) == 1:
            _add(stacks, chosen[0])
        else:
            problems.append(problem)
    return Resolution(
        projects=resolution.projects,
        stacks=tuple(stacks),
        version=resolution.version,
        versions=resolution.versions,
        logins=resolution.logins,
        role=resolution.role,
        problems=tuple(problems),
    )


def match_name(name: str, names: Iterable[str]) -> list[str]:
    """Names equal to `name` ignoring case; else those it is a prefix of; else a part of."""
    candidates = list(names)
    lowered = name.lower()
    for rule in (
        lambda n: n.lower() == lowered,
        lambda n: n.lower().startswith(lowered),
        lambda n: lowered in n.lower(),
    ):
        found = [n for n in candidates if rule(n)]
        if found:
            return found
    return []


def suggest(name: str, names: Sequence[str]) -> tuple[str, ...]:
    """Close spellings of `name` among the visible names."""
    by_lower = {n.lower(): n for n in names}
    close = difflib.get_close_matches(name.lower(), list(by_lower), n=MAX_SUGGESTIONS, cutoff=0.5)
    if not close:
        tail = name.lower().rsplit("/", 1)[-1]
        close = [n for n in by_lower if n.rsplit("/", 1)[-1] == tail][:MAX_SUGGESTIONS]
    return tuple(by_lower[n] for n in close)


def role_in(question: str) -> str:
    for pattern, role in ROLE_WORDS:
        if pattern.search(question):
            return role
    return ""


def describe_problem(problem: Problem, organization: str) -> str:
    """One sentence about a name the question used that the data does not settle."""
    if problem.is_ambiguous:
        listed = ", ".join(f"`{c}`" for c in problem.candidates)
        return f"The {problem.kind} name '{problem.name}' is ambiguous: it could be {listed}."
    text = (
        f"I cannot find a {problem.kind} named '{problem.name}' among those you can see "
        f"in organization '{organization}'."
    )
    if problem.candidates:
        text += " Close matches: " + ", ".join(f"`{c}`" for c in problem.candidates) + "."
    return text


def _stack_by_name(
    name: str,
    catalog: Catalog,
    projects: list[str],
    stacks: list[StackName],
    problems: list[Problem],
    *,
    strict: bool,
) -> None:
    pool = [s for s in catalog.stacks if not projects or s.project in projects]
    exact = [s for s in pool if s.stack.lower() == name.lower()]
    if not exact and strict:
        partial = match_name(name, [s.stack for s in pool])
        exact = [s for s in pool if s.stack in partial]
    if len(exact) == 1:
        _add(stacks, exact[0])
    elif exact:
        problems.append(Problem("stack", name, tuple(s.name for s in exact), True))
    elif strict:
        problems.append(
            Problem(
                "stack",
                name,
                suggest(name, [s.stack for s in pool] + [s.name for s in pool]),
                False,
            )
        )


def _hints(pattern: re.Pattern[str], question: str) -> list[str]:
    found = []
    for match in pattern.finditer(question):
        value = next((g for g in match.groups() if g), "").strip(".")
        if value and "/" not in value:
            found.append(value)
    return found


def _is_path_like(project: str, stack: str, catalog: Catalog) -> bool:
    """A slash between words is a stack name only when one side is a visible name."""
    known = {p.lower() for p in catalog.projects} | {s.stack.lower() for s in catalog.stacks}
    return project.lower() in known or stack.lower() in known


def _logins(question: str, logins: Sequence[str]) -> tuple[str, ...]:
    words = {w.lstrip("@").strip(".").lower() for w in _WORD.findall(question)}
    return tuple(login for login in logins if login.lower() in words)


def _version(question: str) -> int:
    if _PREVIOUS_ONE.search(question):
        return PREVIOUS
    match = _VERSION.search(question)
    if match:
        return int(match[1] or match[2])
    if _LAST.search(question):
        return LAST
    return 0


def _versions(question: str) -> tuple[int, ...]:
    match = _VERSION_PAIR.search(question)
    if match is None:
        return ()
    numbers = [int(g) for g in match.groups() if g]
    return (numbers[0], numbers[1])


def _add(items: list[_T], item: _T) -> None:
    if item not in items:
        items.append(item)
