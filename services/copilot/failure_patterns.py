"""Known causes of update failure, read from `failure_patterns.yaml`.

The catalogue is bundled package data and is read once, when the module is imported, so the
patterns are plain constants to the code that matches them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib import resources
from typing import cast

import yaml

CATALOGUE = "failure_patterns.yaml"


@dataclass(frozen=True)
class Pattern:
    """A known cause of failure: how to recognise it, what it means and how to fix it."""

    key: str
    title: str
    explanation: str
    remediation: tuple[str, ...]
    doc_hint: str
    signals: tuple[re.Pattern[str], ...] = field(default=(), repr=False)

    def key_line(self, text: str) -> str | None:
        """The first line of `text` that matches this pattern, or None."""
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        # Signals are tried in order so the most telling one picks the quoted line.
        for signal in self.signals:
            for line in lines:
                if signal.search(line):
                    return line
        return None


def load_patterns() -> tuple[tuple[Pattern, ...], Pattern]:
    """The known patterns in priority order, and the generic one used when none matches."""
    text = resources.files("services.copilot").joinpath(CATALOGUE).read_text(encoding="utf-8")
    data = _mapping(yaml.safe_load(text))
    known = data["patterns"]
    if not isinstance(known, list):
        raise ValueError(f"{CATALOGUE}: patterns must be a list")
    return tuple(_pattern(_mapping(entry)) for entry in known), _pattern(_mapping(data["generic"]))


def _pattern(data: Mapping[str, object]) -> Pattern:
    return Pattern(
        key=_text(data["key"]),
        title=_text(data["title"]),
        explanation=_text(data["explanation"]),
        remediation=_texts(data["remediation"]),
        doc_hint=_text(data["docHint"]),
        signals=tuple(re.compile(s, re.IGNORECASE) for s in _texts(data.get("signals", []))),
    )


def _mapping(data: object) -> Mapping[str, object]:
    if not isinstance(data, dict):
        raise ValueError(f"{CATALOGUE}: expected a mapping, not {data!r}")
    return cast(Mapping[str, object], data)


def _texts(data: object) -> tuple[str, ...]:
    if not isinstance(data, list):
        raise ValueError(f"{CATALOGUE}: expected a list, not {data!r}")
    return tuple(_text(item) for item in data)


def _text(data: object) -> str:
    if not isinstance(data, str):
        raise ValueError(f"{CATALOGUE}: expected a string, not {data!r}")
    return data


PATTERNS, GENERIC_PATTERN = load_patterns()
