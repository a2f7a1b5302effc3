"""Masking secret values and credentials out of text that leaves a process.

One rule, used on both sides of a deployment: the agent masks its job's output before it
sends it, and agent_pools masks every line again when it stores it (it derives the job's
secret values from the stored settings). The logging setup uses `mask_credentials` as its
last line of defence.

- Every secret value is replaced by `[secret]`, longest first, in one pass (a value that
  contains another is hidden whole, and a marker is never masked again).
- A value shorter than `MIN_SECRET_LENGTH` characters is not masked: hiding "1" or "ab"
  everywhere would make a log unreadable and, by where the markers fall, still tell the
  value. Such a value is no secret worth the name; the README says so.
- A multi-line value is also masked line by line (each line of it that is long enough),
  since deployment logs are stored line by line. Surrounding whitespace of a value and of
  its lines is ignored (a value read from a file often ends with a newline).
- A value that a program printed across consecutive lines (wrapped output) is masked on
  each of them: values are looked for in the lines joined without their breaks. Lines are
  masked in batches; `previous` carries the last line of the batch before, whose part was
  already sent and cannot be taken back (only the rest is masked then); agent_pools masks
  each stored batch on its own.
- Cairn access tokens (`pul-` and hex: user, organization, team, job and agent pool tokens)
  are masked whatever the job's settings say.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

MASK = "[secret]"
MIN_SECRET_LENGTH = 4

# Cairn's access and agent pool tokens are `pul-` and 40 hex digits; a shortened one (cut
# by a length limit) still counts from 8 digits on.
ACCESS_TOKEN = r"pul-[0-9a-fA-F]{8,}"
# Update lease tokens are 32 random bytes in URL-safe base64: a run of exactly 43 such
# characters holding both cases (a random one lacks a case with odds below 1e-9).
LEASE_TOKEN = (
    r"(?<![A-Za-z0-9_-])(?=[A-Za-z0-9_-]{0,42}[a-z])(?=[A-Za-z0-9_-]{0,42}[A-Z])"
    r"[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])"
)
_CREDENTIALS = re.compile(f"{ACCESS_TOKEN}|{LEASE_TOKEN}")
_ACCESS_TOKENS = re.compile(ACCESS_TOKEN)


def mask_credentials(text: str) -> str:
    """The text with anything shaped like a Cairn access, pool or lease token masked."""
    return _CREDENTIALS.sub(MASK, text)


def secret_pieces(values: Iterable[str]) -> tuple[str, ...]:
    """What to look for: each value and each of its lines, stripped, long enough, longest
    first."""
    pieces: set[str] = set()
    for value in values:
        for piece in (value, *value.splitlines()):
            stripped = piece.strip()
            if len(stripped) >= MIN_SECRET_LENGTH:
                pieces.add(stripped)
    return tuple(sorted(pieces, key=lambda piece: (-len(piece), piece)))


class SecretMask:
    """Masks a job's secret values and any Cairn access token in its log lines."""

    def __init__(self, values: Iterable[str]) -> None:
        self._pieces = secret_pieces(values)
        alternatives = [re.escape(piece) for piece in self._pieces]
        # Never matches when there is no value (a lookahead that cannot hold).
        self._values = re.compile("|".join(alternatives) or r"(?!)")
        self._pattern = re.compile("|".join([*alternatives, ACCESS_TOKEN]))

    def __repr__(self) -> str:
        return f"SecretMask({len(self._pieces)} values)"

    def text(self, text: str) -> str:
        """Free text (a finish message, an error) with every value masked."""
        return self._pattern.sub(MASK, text)

    def lines(self, lines: Sequence[str], previous: str = "") -> list[str]:
        """Log lines with every value masked, also where one runs on over consecutive
        lines; `previous` is the line sent just before these, if any."""
        # Values are matched on the lines joined without their breaks, so a wrapped value is
        # found; each line then shows a marker for its part of every match. Tokens are
        # matched line by line (hex digits starting the next line are not a token's).
        chain = [previous, *lines]
        joined = "".join(chain)
        spans = [match.span() for match in self._values.finditer(joined)]
        masked: list[str] = []
        begin = len(previous)
        current = 0
        for line in lines:
            end = begin + len(line)
            while current < len(spans) and spans[current][1] <= begin:
                current += 1
            parts: list[str] = []
            position = begin
            index = current
            while index < len(spans) and spans[index][0] < end:
                start, stop = max(spans[index][0], begin), min(spans[index][1], end)
                if stop > start:
                    parts += [_ACCESS_TOKENS.sub(MASK, joined[position:start]), MASK]
                    position = stop
                index += 1
            parts.append(_ACCESS_TOKENS.sub(MASK, joined[position:end]))
            masked.append("".join(parts))
            begin = end
        return masked


def mask_lines(values: Iterable[str], lines: Sequence[str]) -> list[str]:
    """`lines` with the given secret values and Cairn access tokens masked."""
    return SecretMask(values).lines(lines)
