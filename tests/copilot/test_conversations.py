"""Follow-up questions: three-turn conversations carried by each answer's focus."""

from __future__ import annotations

from services.copilot.domain import Focus
from tests.copilot.eval.test_eval import answer_text, ask


async def converse(*questions: str, login: str = "bob") -> list[str]:
    focus: Focus | None = None
    texts = []
    for question in questions:
        answer = await ask(login, question, focus=focus)
        focus = answer.focus or focus
        texts.append(answer_text(answer))
    return texts


async def test_members_then_viewers_then_admins() -> None:
    first, second, third = await converse(
        "Who are the members of my organization?", "Which of them are viewers?", "And the admins?"
    )

    assert "5 members" in first
    assert "carol" in second and "dave" in second and "alice" not in second
    assert "alice" in third and "carol" not in third


async def test_updates_then_another_stack_then_a_third() -> None:
    first, second, third = await converse(
        "Latest updates of web/prod", "And in staging?", "And dev?"
    )

    assert "`web/prod`" in first and "version 3" in first
    assert "`web/staging`" in second and "`web/prod`" not in second
    # "dev" alone is ambiguous (web, api, payments-api); the conversation's project settles it.
    assert "`web/dev`" in third and "ambiguous" not in third


async def test_program_then_other_languages() -> None:
    first, second, third = await converse(
        "Write code to create an S3 bucket", "Show me the code in Go", "Now in Python"
    )

    assert "@pulumi/aws" in first
    assert "package main" in second and "s3" in second
    assert "import pulumi" in third and "pulumi_aws" in third


async def test_what_changed_then_the_update_before_then_another_stack() -> None:
    first, second, third = await converse(
        "What changed in the last update of web/prod?", "And the one before?", "And api/prod?"
    )

    assert "Update 3" in first and "orders" in first
    assert "Update 2" in second and "site-cdn" in second
    assert "api/prod" in third and "jobs" in third


async def test_a_new_subject_is_not_taken_for_a_follow_up() -> None:
    first, second, _ = await converse(
        "Who are the members of my organization?",
        "What is the difference between preview and up?",
        "Which of them are viewers?",
    )

    assert "5 members" in first
    assert "preview-vs-up" in second and "carol" not in second


async def test_a_named_helm_chart_follows_the_language_changes() -> None:
    first, second, third = await converse(
        "Helm release for redis in TypeScript", "now in Go", "and in Python"
    )

    assert "k8s.helm.v3.Release" in first and '"redis"' in first
    assert "helmv3.NewRelease(" in second and '"redis"' in second
    assert "k8s.helm.v3.Release(" in third and '"redis"' in third
    assert "nginx" not in first + second + third


async def test_updates_then_the_failed_one_then_why() -> None:
    first, second, third = await converse("latest updates of web/prod", "which one failed?", "why?")

    assert "version 3" in first
    assert "NoCredentialProviders" in second
    assert "NoCredentialProviders" in third and "I don't know" not in third


async def test_stacks_then_a_project_then_their_resources() -> None:
    first, second, third = await converse(
        "stacks", "and in project api?", "how many resources do they have?"
    )

    assert "7 stacks" in first
    assert "api/prod" in second and "web/prod" not in second
    assert "project 'api'" in third and "4 resource(s)" in third and "web/prod" not in third


async def test_which_stacks_failed_lists_each_failing_stack() -> None:
    (text,) = await converse("which stacks failed last time?")

    for name in ("web/prod", "web/staging", "api/dev"):
        assert f"- {name}:" in text
    assert "- api/prod:" not in text and "vault" not in text
    assert "NoCredentialProviders" in text


async def test_an_error_code_is_explained_from_the_diagnosis_table() -> None:
    (text,) = await converse("how do i fix BucketAlreadyExists?")

    assert "known error" in text and "pulumi import" in text


async def test_diff_with_two_short_versions_compares_them() -> None:
    (text,) = await converse("diff web/prod v1 v2")

    assert "version 1 → version 2" in text and "site-cdn" in text


async def test_a_stack_and_a_resource_type_without_a_verb() -> None:
    (text,) = await converse("lambda functions in web/prod?")

    assert "aws:lambda/function:Function" in text and "`render`" in text
    assert "api/prod" not in text


async def test_a_concept_word_with_a_stack_and_no_note_talks_about_the_stack() -> None:
    (text,) = await converse("whats the latest version of web/prod")

    assert "`web/prod`" in text and "version 3" in text and "I don't know" not in text


async def test_when_did_someone_last_deploy_lists_their_updates() -> None:
    (text,) = await converse("when did erin last deploy")

    assert "by erin" in text and "by bob" not in text and ": - " not in text
