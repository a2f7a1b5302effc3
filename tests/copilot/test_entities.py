"""Resolving the names in a question against what the asker can see."""

from __future__ import annotations

import pytest

from services.copilot.entities import (
    LAST,
    PREVIOUS,
    Catalog,
    StackName,
    describe_problem,
    match_name,
    resolve,
    within,
)

CATALOG = Catalog(
    "acme",
    (
        StackName("acme", "web", "prod"),
        StackName("acme", "web", "staging"),
        StackName("acme", "web", "dev"),
        StackName("acme", "api", "prod"),
        StackName("acme", "payments-api", "dev"),
    ),
    ("alice", "Bob"),
)
# What a member who cannot read vault/prod sees: the same catalogue, without it.
HIDDEN = StackName("acme", "vault", "prod")


def names(question: str) -> list[str]:
    return [stack.name for stack in resolve(question, CATALOG).stacks]


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("What changed in the last update of web/prod?", ["web/prod"]),
        ("How many resources does acme/web/prod have?", ["web/prod"]),
        ("updates of stack staging", ["web/staging"]),
        ("and in staging?", ["web/staging"]),
        ("Latest updates of WEB/PROD", ["web/prod"]),
        ("latest updates of stack STAGING", ["web/staging"]),
        ("latest updates of stack stag", ["web/staging"]),
        ("compare web/prod and api/prod", ["web/prod", "api/prod"]),
        ("What is the difference between preview and up?", []),
    ],
)
def test_stacks_by_full_short_partial_and_differently_cased_names(
    question: str, expected: list[str]
) -> None:
    found = resolve(question, CATALOG)

    assert [s.name for s in found.stacks] == expected
    assert not found.problems


def test_a_name_in_several_projects_is_ambiguous_and_lists_them() -> None:
    found = resolve("updates of prod", CATALOG)

    assert found.stacks == ()
    [problem] = found.problems
    assert problem.is_ambiguous and set(problem.candidates) == {"web/prod", "api/prod"}
    assert "ambiguous" in describe_problem(problem, "acme")


def test_a_project_named_earlier_settles_an_ambiguous_stack() -> None:
    found = within(resolve("and prod?", CATALOG), "api", CATALOG)

    assert [s.name for s in found.stacks] == ["api/prod"] and not found.problems


def test_a_project_in_the_question_narrows_a_stack_name() -> None:
    assert names("stack dev of project web") == ["web/dev"]


def test_unknown_names_come_with_close_matches() -> None:
    [problem] = resolve("updates of stack prdo", CATALOG).problems
    assert not problem.is_ambiguous and "web/prod" in problem.candidates
    text = describe_problem(problem, "acme")
    assert "cannot find" in text and "`web/prod`" in text

    [project] = resolve("stacks of project wbe", CATALOG).problems
    assert project.kind == "project" and project.candidates == ("web",)


def test_stacks_the_asker_cannot_see_are_never_matched_or_suggested() -> None:
    found = resolve("updates of vault/prod", CATALOG)

    assert found.stacks == ()
    text = " ".join(describe_problem(p, "acme") for p in found.problems)
    assert HIDDEN.name not in " ".join(c for p in found.problems for c in p.candidates)
    assert "vault" not in text.replace("'vault/prod'", "")


def test_another_organizations_path_is_not_resolved() -> None:
    found = resolve("resources of other/web/prod", CATALOG)

    assert found.stacks == () and found.problems


def test_projects_partial_and_case_insensitive() -> None:
    assert resolve("stacks of project WEB", CATALOG).projects == ("web",)
    assert resolve("what stacks does the payments project have", CATALOG).projects == (
        "payments-api",
    )
    assert match_name("api", ["web", "api", "payments-api"]) == ["api"]
    assert match_name("pay", ["web", "payments-api"]) == ["payments-api"]


@pytest.mark.parametrize(
    ("question", "version", "versions"),
    [
        ("the last update of web/prod", LAST, ()),
        ("version 3 of web/prod", 3, ()),
        ("update #2", 2, ()),
        ("the previous update", PREVIOUS, ()),
        ("and the one before?", PREVIOUS, ()),
        ("compare versions 2 and 3", 0, (2, 3)),
        ("difference between version 1 and 3", 0, (1, 3)),
        ("who are the members", 0, ()),
    ],
)
def test_versions(question: str, version: int, versions: tuple[int, ...]) -> None:
    found = resolve(question, CATALOG)

    assert found.version == version and found.versions == versions


def test_logins_and_roles() -> None:
    found = resolve("what did ALICE and bob change", CATALOG)
    assert found.logins == ("alice", "Bob")
    assert resolve("which of them are viewers?", CATALOG).role == "viewer"
    assert resolve("who are the admins", CATALOG).role == "admin"
    assert resolve("list the stacks", CATALOG).role == ""


def test_the_word_after_stacks_in_names_a_project_known_or_not() -> None:
    unknown = resolve("stacks in vault", CATALOG)
    assert [(p.kind, p.name) for p in unknown.problems] == [("project", "vault")]
    assert HIDDEN.name not in describe_problem(unknown.problems[0], "acme")

    assert resolve("stacks in web", CATALOG).projects == ("web",)
    assert resolve("stacks in the payments-api project", CATALOG).projects == ("payments-api",)
    for question in ("stacks in acme", "stacks in my org", "stacks in all projects"):
        resolution = resolve(question, CATALOG)
        assert not resolution.projects and not resolution.problems, question
