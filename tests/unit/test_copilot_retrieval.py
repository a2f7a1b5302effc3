"""The copilot's concept corpus, tokenizer and BM25 retriever."""

from __future__ import annotations

import pytest

from services.copilot.retrieval import (
    Bm25Index,
    Note,
    answer_concept,
    corpus_words,
    dont_know,
    load_corpus,
    paragraphs,
    parse_note,
    tokenize,
)

# -- tokenizer -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Output<T>", ["output"]),
        ("output<t>", ["output"]),
        ("Output[str] and Input<string>", ["output", "input"]),
        ("The stack and the project", ["stack", "project"]),
        ("stacks outputs policies aliases", ["stack", "output", "policy", "alias"]),
        ("sharing shared shares share", ["shar", "shar", "shar", "shar"]),
        ("running stopped installed", ["run", "stop", "install"]),
        ("string strings", ["string", "string"]),
        ("dependsOn ignoreChanges", ["depend", "ignor", "chang"]),
        ("ComponentResource registerOutputs", ["component", "resourc", "register", "output"]),
        ("URNs IDs", ["urn", "ids"]),
        ("HTTP 409 conflict", ["http", "409", "conflict"]),
        ("pulumi config set --secret", ["pulumi", "config", "set", "secret"]),
        ("", []),
        ("a an the of to", []),
    ],
)
def test_tokenize(text: str, expected: list[str]) -> None:
    assert tokenize(text) == expected


def test_word_forms_meet() -> None:
    assert tokenize("encrypted") == tokenize("encrypt") == tokenize("encrypting")
    assert tokenize("references") == tokenize("reference") == tokenize("referenced")


# -- notes and corpus ----------------------------------------------------------------------


def test_parse_note_reads_title_tags_and_body() -> None:
    note = parse_note("demo", "# Demo title\ntags: one, two words ,\n\nFirst.\n\nSecond.\n")

    assert note == Note(
        slug="demo", title="Demo title", text="First.\n\nSecond.", tags=("one", "two words")
    )


def test_parse_note_without_tags() -> None:
    assert parse_note("demo", "# Demo\nBody").tags == ()


def test_parse_note_needs_a_title() -> None:
    with pytest.raises(ValueError, match="Title"):
        parse_note("demo", "no heading here")


def test_paragraphs_keep_code_blocks_and_introductions_whole() -> None:
    text = "Intro.\n\nSteps:\n\n- one\n- two\n\n```python\na = 1\n\nb = 2\n```\n\nEnd."

    assert paragraphs(text) == [
        "Intro.",
        "Steps:\n\n- one\n- two",
        "```python\na = 1\n\nb = 2\n```",
        "End.",
    ]


def test_corpus_loads() -> None:
    notes = load_corpus()

    assert len(notes) >= 60
    assert len({note.slug for note in notes}) == len(notes)
    for note in notes:
        assert note.title.strip()
        assert note.text.strip()
        # Short notes: a few paragraphs each.
        assert 50 <= len(note.text.split()) <= 400, note.slug


def test_corpus_is_cached() -> None:
    assert load_corpus() is load_corpus()


# -- search --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def index() -> Bm25Index:
    return Bm25Index(load_corpus())


@pytest.mark.parametrize(
    ("query", "slug"),
    [
        ("Why can I not directly convert an Output<T> to a string?", "inputs-outputs"),
        ("how do I use apply", "apply-and-all"),
        ("how do I share outputs between stacks", "stack-references"),
        ("encrypt a config value", "config-secrets"),
        ("secrets provider passphrase kms", "passphrase-secrets"),
        ("what is a component resource", "components"),
        ("what does registerOutputs do", "component-outputs"),
        ("recover from pending operations", "pending-operations-note"),
        ("pulumi cancel another update in progress", "update-locks"),
        ("protect a database from being deleted", "protect-option"),
        ("rename a resource without replacing it", "aliases"),
        ("adopt an existing cloud resource that was created by hand", "importing-resources"),
        ("run updates on self-hosted runners in my private network", "deployments-agent-pools"),
        ("where is my state stored, self-managed or service backend", "state-backends"),
        ("move state between backends export import", "state-backends"),
        ("default provider versus explicit provider for another region", "explicit-providers"),
        ("no valid credential sources", "providers"),
        ("enforce compliance rules before resources are deployed", "policy-packs"),
        ("drive pulumi programmatically from my own code", "automation-api"),
        ("why does my bucket name have a random suffix", "naming-transformations"),
        ("what goes in Pulumi.yaml", "project-file"),
        ("what is a stack, dev and prod environments", "stacks"),
        ("What is the difference between preview and up?", "preview-vs-up"),
        ("How do I rotate the secrets provider?", "rotate-secrets-provider"),
        ("Kubernetes nginx deployment", "kubernetes-provider"),
        ("how do webhook signatures work", "webhooks-note"),
        ("log in to Cairn with OIDC from GitHub Actions", "oidc-login"),
    ],
)
def test_search_ranks_the_right_note_first(index: Bm25Index, query: str, slug: str) -> None:
    hits = index.search(query)

    assert hits
    assert hits[0].note.slug == slug
    assert [hit.score for hit in hits] == sorted((hit.score for hit in hits), reverse=True)


def test_search_respects_the_limit(index: Bm25Index) -> None:
    assert len(index.search("resource stack provider", limit=2)) == 2
    assert index.search("resource stack provider", limit=0) == []


def test_search_without_known_terms_finds_nothing(index: Bm25Index) -> None:
    assert index.search("") == []
    assert index.search("xyzzy plugh") == []


def test_snippet_is_the_most_relevant_paragraph(index: Bm25Index) -> None:
    hit = index.search("how do I clear pending operations with refresh")[0]

    assert hit.note.slug == "pending-operations-note"
    assert hit.snippet in paragraphs(hit.note.text)
    assert hit.snippet.startswith("Run `pulumi refresh` and accept clearing")


def test_title_words_weigh_more_than_body_words() -> None:
    filler = "lorem ipsum dolor sit amet"
    in_title = Note("a", "Widget", filler, ())
    in_body = Note("b", "Lorem", "widget ipsum dolor sit amet", ())

    hits = Bm25Index([in_body, in_title]).search("widget")

    assert [hit.note.slug for hit in hits] == ["a", "b"]


def test_empty_index_finds_nothing() -> None:
    assert Bm25Index([]).search("anything") == []


# -- answers -------------------------------------------------------------------------------


def test_answer_is_grounded_in_the_best_note() -> None:
    answer = answer_concept("Why can I not directly convert an Output<T> to a string?")

    assert answer is not None
    assert answer.startswith("**Inputs and outputs**")
    assert "cannot convert an output to a string directly" in answer
    assert "apply" in answer


def test_answer_points_to_related_notes() -> None:
    answer = answer_concept("how do I share outputs between stacks")

    assert answer is not None
    assert answer.startswith("**Stack references**")
    assert "See also: " in answer


def test_answer_cites_its_note() -> None:
    answer = answer_concept("How do I rotate the secrets provider?")

    assert answer is not None
    assert "pulumi stack change-secrets-provider" in answer
    assert answer.endswith(
        "Source: note `rotate-secrets-provider` (Rotating or changing the secrets provider)."
    )


def test_dont_know_names_the_nearest_notes() -> None:
    assert answer_concept("What is the meaning of life?") is None
    text = dont_know("how do I configure drift alerts in my pager")

    assert text.startswith("I don't know")
    assert "`drift-detection`" in text


def test_every_keyword_pattern_compiles_and_is_case_insensitive() -> None:
    notes = [note for note in load_corpus() if note.match]

    assert len(notes) >= 60
    assert Bm25Index(notes).search("HOW DO I ROTATE THE SECRETS PROVIDER")[0].note.slug == (
        "rotate-secrets-provider"
    )


@pytest.mark.parametrize(
    "query", ["xyzzy plugh frobnicate", "qwerty asdf", "the and of", "", "banana smoothie"]
)
def test_no_answer_for_gibberish(query: str) -> None:
    assert answer_concept(query) is None


@pytest.mark.parametrize(
    "query", ["what's the best pizza topping?", "top ten holiday destinations for families"]
)
def test_one_rare_word_in_common_is_not_an_answer(query: str) -> None:
    assert answer_concept(query) is None


def test_dont_know_names_notes_to_start_from_when_no_note_shares_a_word() -> None:
    text = dont_know("what is the capital of france?")

    assert text.startswith("I don't know")
    assert "nearest notes" in text
    assert "`copilot-capabilities`" in text


def test_corpus_words_are_the_notes_words() -> None:
    words = corpus_words()

    assert {"protect", "stack", "secrets"} <= words
    assert "resouces" not in words
