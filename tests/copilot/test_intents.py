"""Reading what a question asks for: its wording, misspelled or not."""

from __future__ import annotations

import pytest

from services.copilot import intents
from services.copilot.intents import classify, edit_distance, normalize
from services.copilot.retrieval import corpus_words

KNOWN = corpus_words() | {"web", "prod", "staging", "api", "acme", "bob"}


@pytest.mark.parametrize(
    ("question", "expected"),
    [
        ("how many resouces does web/prod have?", "how many resources does web/prod have?"),
        ("which stacks does the projct web have?", "which stacks does the project web have?"),
        ("show stakcs in web", "show stacks in web"),
        ("deploymnets of web/prod", "deployments of web/prod"),
        ("whats bob's role", "what's bob's role"),
        ("wat changed in api/prod", "what changed in api/prod"),
        # Real words, names and paths stay as typed.
        ("How do I protect a database?", "How do I protect a database?"),
        ("updates of web/prd", "updates of web/prd"),
        ("latest updates of staging", "latest updates of staging"),
        (
            "resources of type aws:s3/bucketV2:BucketV2",
            "resources of type aws:s3/bucketV2:BucketV2",
        ),
    ],
)
def test_normalize_corrects_only_misspelled_intent_words(question: str, expected: str) -> None:
    assert normalize(question, KNOWN) == expected


def test_an_organization_name_is_never_corrected() -> None:
    assert normalize("stacks of project stackz", frozenset({"stackz"})) == (
        "stacks of project stackz"
    )
    assert normalize("stacks of project stackz") == "stacks of project stacks"


@pytest.mark.parametrize(
    ("first", "second", "distance"),
    [
        ("stakcs", "stacks", 1),
        ("resouces", "resources", 1),
        ("protect", "project", 1),
        ("same", "same", 0),
        ("", "abc", 3),
    ],
)
def test_edit_distance_counts_a_swap_as_one_edit(first: str, second: str, distance: int) -> None:
    assert edit_distance(first, second) == distance


@pytest.mark.parametrize(
    ("question", "intent"),
    [
        ("which resources got deleted in the latest api/prod update", intents.WHAT_CHANGED),
        ("what has alice changed", intents.HISTORY),
        ("where do we have rds databases", intents.RESOURCE_TYPE),
        ("any sqs queues?", intents.RESOURCE_TYPE),
        ("why did the deploy of web/prod fail", intents.DEPLOYMENT_ANALYSIS),
        ("show me every stack in acme", intents.STACKS),
        ("what's bob's role", intents.MEMBERS),
        ("why?", intents.ANALYSE),
        ("what's in acme/api/prod", intents.RESOURCES),
        ("how many updates has web/prod had", intents.UPDATES),
        ("what changed in api/prod last time", intents.WHAT_CHANGED),
        # Still concepts.
        ("What is a stack?", intents.CONCEPT),
        ("How do I deploy to two regions from one program?", intents.CONCEPT),
    ],
)
def test_classify_reads_everyday_wording(question: str, intent: str) -> None:
    assert classify(question, names_data="/" in question) == intent


@pytest.mark.parametrize(
    ("question", "several"),
    [
        ("which stacks failed last time?", True),
        ("show failed updates", True),
        ("why did web/prod fail?", False),
        ("what failed recently?", False),
    ],
)
def test_several_failures_are_told_from_one(question: str, several: bool) -> None:
    assert intents.asks_for_several(question) is several


def test_a_pronoun_refers_back_to_the_previous_turn() -> None:
    assert intents.refers_back("how many resources do they have?")
    assert not intents.refers_back("how many resources does web/prod have?")
