"""The copilot's evaluation: pass rate per category over the fixture organization.

Every question goes through the service layer (`Skills.answer`) with the fixture's reader;
follow-ups carry each answer's focus into the next question, as the conversation store
does. A question passes when its answer contains every `must` fact and no `must_not` fact.

Two sets are scored separately: `questions.yaml`, the development set, and `heldout.yaml`,
questions phrased the way people type them (typos, shorthand, three-turn conversations),
written from the fixture's data and not used to tune the matching.
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from services.common.auth import Caller
from services.copilot.domain import Answer, Asker, Focus, parse_context
from services.copilot.service import Skills
from tests.copilot.eval.fixture import MEMBERS, ORG, FixtureReader

CONSOLE = "https://app.pulumi.com"


@dataclass(frozen=True)
class QuestionSet:
    """One evaluation file and its bar: the whole set, and each category on its own."""

    name: str
    path: Path
    min_questions: int
    min_categories: int
    overall_bar: float
    category_bar: float


HERE = Path(__file__).parent
DEVELOPMENT = QuestionSet("development", HERE / "questions.yaml", 120, 10, 0.95, 0.85)
HELDOUT = QuestionSet("held-out", HERE / "heldout.yaml", 40, 10, 0.95, 0.75)
SETS = (DEVELOPMENT, HELDOUT)
# The questions the copilot once answered wrongly (the issue that asked for this evaluation);
# each must stay in the development set, which holds the facts its answer must contain.
REPORTED = (
    "What changed in the last update of web/prod?",
    "Latest updates of stack web/prod",
    "How many resources does web/prod have?",
    "Which stacks does project web have?",
    "What is the difference between preview and up?",
    "How do I rotate the secrets provider?",
    "Kubernetes nginx deployment",
)


@dataclass(frozen=True)
class Outcome:
    category: str
    question: str
    missing: tuple[str, ...]
    unwanted: tuple[str, ...]

    @property
    def passed(self) -> bool:
        return not (self.missing or self.unwanted)


def load_questions(question_set: QuestionSet = DEVELOPMENT) -> list[dict[str, Any]]:
    loaded = yaml.safe_load(question_set.path.read_text(encoding="utf-8"))
    assert isinstance(loaded, list)
    return loaded


def answer_text(answer: Answer) -> str:
    code = str(answer.program.get("code", "")) if answer.program else ""
    return f"{answer.text}\n{code}"


async def ask(login: str, question: str, url: str = "", focus: Focus | None = None) -> Answer:
    member = next(m for m in MEMBERS if m.login == login)
    asker = Asker(
        user_id=f"id-{member.login}",
        login=member.login,
        organization=ORG,
        visible_organizations=frozenset({ORG}),
        client="eval",
    )
    skills = Skills(FixtureReader(login))
    caller = Caller(user_id=asker.user_id, login=asker.login)
    return await skills.answer(asker, question, parse_context(url, (CONSOLE,)), caller, focus)


async def run(item: dict[str, Any]) -> Outcome:
    login = str(item.get("as", "bob"))
    focus: Focus | None = None
    for earlier in item.get("before", []):
        previous = await ask(login, str(earlier), focus=focus)
        focus = previous.focus or focus
    answer = await ask(login, str(item["ask"]), str(item.get("url", "")), focus)
    text = answer_text(answer).lower()
    return Outcome(
        category=str(item["category"]),
        question=str(item["ask"]),
        missing=tuple(str(f) for f in item.get("must", []) if str(f).lower() not in text),
        unwanted=tuple(str(f) for f in item.get("must_not", []) if str(f).lower() in text),
    )


async def evaluate(question_set: QuestionSet = DEVELOPMENT) -> list[Outcome]:
    return [await run(item) for item in load_questions(question_set)]


def rates(outcomes: list[Outcome]) -> dict[str, tuple[int, int]]:
    by_category: dict[str, list[bool]] = defaultdict(list)
    for outcome in outcomes:
        by_category[outcome.category].append(outcome.passed)
    return {name: (sum(found), len(found)) for name, found in sorted(by_category.items())}


@pytest.fixture(scope="module")
def evaluated() -> dict[str, list[Outcome]]:
    # Built once per module; nothing here is bound to an event loop of the tests.
    return {question_set.name: asyncio.run(evaluate(question_set)) for question_set in SETS}


@pytest.mark.parametrize("question_set", SETS, ids=lambda s: s.name)
def test_the_set_is_large_and_well_formed(question_set: QuestionSet) -> None:
    questions = load_questions(question_set)

    assert len(questions) >= question_set.min_questions
    for item in questions:
        assert item["category"] and item["ask"] and item.get("must"), item
    assert len({item["category"] for item in questions}) >= question_set.min_categories


def test_the_reported_questions_are_evaluated() -> None:
    questions = load_questions(DEVELOPMENT)
    asked = {str(item["ask"]) for item in questions}

    assert set(REPORTED) <= asked
    rotate = next(i for i in questions if i["ask"] == "How do I rotate the secrets provider?")
    assert "pulumi stack change-secrets-provider" in rotate["must"]
    assert any(
        item["ask"] == "Which of them are viewers?"
        and "Who are the members of my organization?" in item.get("before", [])
        for item in questions
    )


def test_the_held_out_questions_are_not_in_the_development_set() -> None:
    development = {str(item["ask"]).lower() for item in load_questions(DEVELOPMENT)}

    assert not [i["ask"] for i in load_questions(HELDOUT) if str(i["ask"]).lower() in development]


@pytest.mark.parametrize("question_set", SETS, ids=lambda s: s.name)
def test_pass_rate_meets_the_bar(
    question_set: QuestionSet, evaluated: dict[str, list[Outcome]]
) -> None:
    outcomes = evaluated[question_set.name]
    failures = [o for o in outcomes if not o.passed]
    report = "\n".join(
        f"[{o.category}] {o.question!r}: missing {list(o.missing)}, unwanted {list(o.unwanted)}"
        for o in failures
    )
    passed = len(outcomes) - len(failures)

    assert passed / len(outcomes) >= question_set.overall_bar, report
    for category, (good, total) in rates(outcomes).items():
        assert good / total >= question_set.category_bar, f"{category}: {good}/{total}\n{report}"


def test_a_failing_answer_is_counted_as_failing() -> None:
    outcome = Outcome("members", "q", missing=("alice",), unwanted=())

    assert not outcome.passed
    assert rates([outcome, Outcome("members", "q", (), ())]) == {"members": (1, 2)}


def report(question_set: QuestionSet) -> None:
    found = asyncio.run(evaluate(question_set))
    print(f"== {question_set.name} ({question_set.path.name})")
    for name, (good, total) in rates(found).items():
        print(f"{name:15} {good:3}/{total:<3} {100 * good / total:5.1f}%")
    overall = sum(o.passed for o in found)
    print(f"{'overall':15} {overall:3}/{len(found):<3} {100 * overall / len(found):5.1f}%")
    for o in found:
        if not o.passed:
            print(f"FAIL [{o.category}] {o.question!r}: missing {o.missing} unwanted {o.unwanted}")


if __name__ == "__main__":
    for chosen in SETS:
        report(chosen)
