"""Concept answers: a bundled corpus of notes, a keyword layer and BM25 over the notes.

A note may carry a `match:` line, a regular expression for the questions it answers
outright (the wording a user is likely to use, such as "change-secrets-provider"); notes
whose pattern matches get a fixed bonus on top of their BM25 score, so the keyword layer
decides between close candidates and BM25 still ranks the rest. Answers cite their note.
"""

from __future__ import annotations

import functools
import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from importlib import resources

CORPUS_PACKAGE = "services.copilot"
CORPUS_DIRECTORY = "corpus"
# Below this BM25 score a hit is a coincidental overlap on common words, not an answer.
MIN_SCORE = 4.0
# "See also" skips notes far weaker than the best one; they only share a word or two.
SEE_ALSO_RATIO = 0.25
# How many other titles an answer points to.
SEE_ALSO_LIMIT = 2

_STOPWORD_TEXT = """
    a about after all also am an and any are as at be been before being but by can could
    did do does doing for from get got had has have how i if in into is it its just me my
    no not of on or our out should so than that the their them then there these they this
    those to too use using very was way we were what when where which while who why will
    with would you your
"""
STOPWORDS = frozenset(_STOPWORD_TEXT.split())
# Words an -ing/-ed rule would mangle into another word.
_UNSTEMMED = frozenset({"string", "thing", "bring", "spring", "during", "embed"})

_GENERIC_ARGUMENT = re.compile(r"(?<=\w)[<\[][\w\s,]{0,20}[>\]]")
# camelCase and PascalCase boundaries, so `dependsOn` meets "depends on" in prose.
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z]{2,})")
_WORD = re.compile(r"[a-z0-9]+")
_TITLE_LINE = re.compile(r"^#\s+(.+?)\s*$")
_TAGS_LINE = re.compile(r"^tags:\s*(.*?)\s*$", re.IGNORECASE)
_MATCH_LINE = re.compile(r"^match:\s*(.*?)\s*$", re.IGNORECASE)
# What a keyword-layer match adds to a note's BM25 score.
KEYWORD_BONUS = 4.0
# How many notes an "I don't know" answer points to.
NEAREST_LIMIT = 3
# Without a keyword-layer match, the best note must share at least this share of the
# question's terms: one rare word in common ("topping" and "top level") is not an answer.
MIN_COVERAGE = 0.5
# Where an "I don't know" points when no note shares a single word with the question.
STARTING_NOTES = ("copilot-capabilities", "stacks", "projects")
_FENCE = "```"


@dataclass(frozen=True)
class Note:
    """One concept note from the bundled corpus."""

    slug: str
    title: str
    text: str
    tags: tuple[str, ...]
    # The keyword layer's pattern (case-insensitive); empty for none.
    match: str = ""


@dataclass(frozen=True)
class Hit:
    """A note that matched a query, with its score and most relevant paragraph."""

    note: Note
    score: float
    snippet: str


def tokenize(text: str) -> list[str]:
    """Lowercased, stemmed search terms of `text`, without stopwords."""
    # Type arguments (`Output<T>`, `Output[str]`) name the wrapper, not a separate concept.
    text = _GENERIC_ARGUMENT.sub(" ", text)
    text = _CAMEL_BOUNDARY.sub(" ", text)
    tokens: list[str] = []
    for word in _WORD.findall(text.lower()):
        if len(word) < 2 or word in STOPWORDS:
            continue
        stem = _stem(word)
        if stem not in STOPWORDS:
            tokens.append(stem)
    return tokens


def _stem(word: str) -> str:
    """Strip plural, -ing and -ed endings and a final e, so word forms meet."""
    if word.isdigit():
        return word
    if word.endswith("ies") and len(word) > 4:
        word = word[:-3] + "y"
    elif word.endswith("s") and not word.endswith(("ss", "us", "is", "as")) and len(word) > 3:
        word = word[:-1]
    if word in _UNSTEMMED:
        return word
    for suffix in ("ing", "ed"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            word = word[: -len(suffix)]
            # "running" -> "runn" -> "run", but keep "install" and "access".
            if len(word) > 3 and word[-1] == word[-2] and word[-1] not in "lsz":
                word = word[:-1]
            break
    if word.endswith("e") and len(word) > 3:
        word = word[:-1]
    return word


def parse_note(slug: str, markdown: str) -> Note:
    """Read a note: `# Title` on the first line, an optional `tags:` line, then the body."""
    lines = markdown.strip().splitlines()
    title_match = _TITLE_LINE.match(lines[0]) if lines else None
    if title_match is None:
        raise ValueError(f"note {slug!r} must start with a '# Title' line")
    body = lines[1:]
    tags: tuple[str, ...] = ()
    if body and (tags_match := _TAGS_LINE.match(body[0])):
        tags = tuple(tag.strip() for tag in tags_match[1].split(",") if tag.strip())
        body = body[1:]
    match = ""
    if body and (match_line := _MATCH_LINE.match(body[0])):
        match = match_line[1]
        re.compile(match)
        body = body[1:]
    return Note(
        slug=slug, title=title_match[1], text="\n".join(body).strip(), tags=tags, match=match
    )


@functools.lru_cache(maxsize=1)
def load_corpus() -> tuple[Note, ...]:
    """The notes bundled in the package, ordered by slug."""
    directory = resources.files(CORPUS_PACKAGE).joinpath(CORPUS_DIRECTORY)
    entries = sorted(
        (entry for entry in directory.iterdir() if entry.name.endswith(".md")),
        key=lambda entry: entry.name,
    )
    return tuple(
        parse_note(entry.name.removesuffix(".md"), entry.read_text(encoding="utf-8"))
        for entry in entries
    )


def paragraphs(text: str) -> list[str]:
    """Blank-line separated blocks of `text`, keeping fenced code blocks whole."""
    blocks: list[str] = []
    current: list[str] = []
    is_in_fence = False
    for line in text.splitlines():
        if line.strip().startswith(_FENCE):
            is_in_fence = not is_in_fence
        # A block ending in a colon introduces the next one (a list or code), so keep them together.
        is_introduction = bool(current) and current[-1].rstrip().endswith(":")
        if not line.strip() and not is_in_fence and not is_introduction:
            if current:
                blocks.append("\n".join(current))
                current = []
            continue
        current.append(line)
    if current:
        blocks.append("\n".join(current))
    return blocks


def best_paragraph(text: str, query_terms: frozenset[str]) -> str:
    """The paragraph sharing the most distinct terms with the query (earliest on ties)."""
    blocks = paragraphs(text)
    if not blocks:
        return ""
    overlaps = [len(query_terms.intersection(tokenize(block))) for block in blocks]
    return blocks[overlaps.index(max(overlaps))]


class Bm25Index:
    """Okapi BM25 over notes; titles count twice and tags once on top of the body."""

    def __init__(self, notes: Sequence[Note], k1: float = 1.5, b: float = 0.75) -> None:
        self._notes = tuple(notes)
        self._k1 = k1
        self._b = b
        self._term_counts = [Counter(_document_terms(note)) for note in self._notes]
        self._lengths = [sum(counts.values()) for counts in self._term_counts]
        self._average_length = sum(self._lengths) / len(self._lengths) if self._lengths else 0.0
        document_frequency: Counter[str] = Counter()
        for counts in self._term_counts:
            document_frequency.update(counts.keys())
        total = len(self._notes)
        self._idf = {
            term: math.log(1.0 + (total - frequency + 0.5) / (frequency + 0.5))
            for term, frequency in document_frequency.items()
        }

    def search(self, query: str, limit: int = 3) -> list[Hit]:
        """The best `limit` notes for `query`, highest score first; notes scoring 0 are left out."""
        terms = frozenset(tokenize(query))
        scored = [
            (self._score(index, terms) + self._keyword_bonus(note, query), note)
            for index, note in enumerate(self._notes)
        ]
        ranked = sorted(
            ((score, note) for score, note in scored if score > 0.0),
            key=lambda pair: (-pair[0], pair[1].slug),
        )
        return [
            Hit(note=note, score=score, snippet=best_paragraph(note.text, terms))
            for score, note in ranked[: max(limit, 0)]
        ]

    def coverage(self, note: Note, query: str) -> float:
        """The share of the query's distinct terms that occur in the note."""
        terms = set(tokenize(query))
        if not terms:
            return 0.0
        index = self._notes.index(note)
        return len([t for t in terms if t in self._term_counts[index]]) / len(terms)

    def is_keyword_match(self, note: Note, query: str) -> bool:
        return self._keyword_bonus(note, query) > 0.0

    def _keyword_bonus(self, note: Note, query: str) -> float:
        if note.match and re.search(note.match, query, re.IGNORECASE):
            return KEYWORD_BONUS
        return 0.0

    def _score(self, index: int, terms: frozenset[str]) -> float:
        counts = self._term_counts[index]
        length_ratio = self._lengths[index] / self._average_length if self._average_length else 0.0
        score = 0.0
        for term in terms:
            frequency = counts.get(term, 0)
            if not frequency:
                continue
            saturation = frequency + self._k1 * (1.0 - self._b + self._b * length_ratio)
            score += self._idf[term] * frequency * (self._k1 + 1.0) / saturation
        return score


def _document_terms(note: Note) -> list[str]:
    title = tokenize(note.title)
    return title + title + tokenize(" ".join(note.tags)) + tokenize(note.text)


@functools.lru_cache(maxsize=1)
def default_index() -> Bm25Index:
    """The index over the bundled corpus, built on first use."""
    return Bm25Index(load_corpus())


def answer_concept(query: str) -> str | None:
    """A short answer drawn from the best matching note, or None when no note fits."""
    index = default_index()
    hits = index.search(query, limit=1 + SEE_ALSO_LIMIT)
    relevant = [hit for hit in hits if hit.score >= MIN_SCORE]
    if not relevant:
        return None
    best = relevant[0]
    if not index.is_keyword_match(best.note, query) and (
        index.coverage(best.note, query) < MIN_COVERAGE
    ):
        return None
    lead = paragraphs(best.note.text)[0]
    parts = [f"**{best.note.title}**", lead]
    if best.snippet and best.snippet != lead:
        parts.append(best.snippet)
    others = [hit.note.title for hit in relevant[1:] if hit.score >= SEE_ALSO_RATIO * best.score]
    if others:
        parts.append("See also: " + ", ".join(others) + ".")
    parts.append(f"Source: note `{best.note.slug}` ({best.note.title}).")
    return "\n\n".join(parts)


@functools.lru_cache(maxsize=1)
def corpus_words() -> frozenset[str]:
    """Every word the notes use, lowercased: real words, never misspellings to correct."""
    words: set[str] = set()
    for note in load_corpus():
        text = " ".join((note.title, " ".join(note.tags), note.text)).lower()
        words.update(re.findall(r"[a-z]+", text))
    return frozenset(words)


def dont_know(query: str) -> str:
    """The answer when no note fits: say so, and name the nearest notes."""
    found = [hit.note for hit in default_index().search(query, limit=NEAREST_LIMIT)]
    text = "I don't know: none of my notes answers that question."
    if found:
        nearest = ", ".join(f"{note.title} (`{note.slug}`)" for note in found)
        text += f" The nearest notes are: {nearest}."
    else:
        by_slug = {note.slug: note for note in load_corpus()}
        starting = [by_slug[slug] for slug in STARTING_NOTES if slug in by_slug]
        listed = ", ".join(f"{note.title} (`{note.slug}`)" for note in starting)
        text += f" No note shares a word with it; the nearest notes to start from are: {listed}."
    return text + " Try naming a Pulumi concept, a stack as `project/stack`, or ask for a program."
