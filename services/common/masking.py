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
- A value that a program printed across two consecutive lines (wrapped output) is masked
  on both lines: the end of the first line and the start of the second. Lines are masked
  in batches; `previous` carries the last line of the batch before, whose part was already
  sent and cannot be taken back (only the rest is masked then).
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
        self._pattern = re.compile("|".join([*alternatives, ACCESS_TOKEN]))

    def __repr__(self) -> str:
        return f"SecretMask({len(self._pieces)} values)"

    def text(self, text: str) -> str:
        """Free text (a finish message, an error) with every value masked."""
        return self._pattern.sub(MASK, text)

    def lines(self, lines: Sequence[str], previous: str = "") -> list[str]:
        """Log lines with every value masked, also where one spans two consecutive lines;
        `previous` is the line sent just before these, if any."""
        heads = [0] * len(lines)  # characters at a line's start that end a value
        tails = [len(line) for line in lines]  # where a value starting at a line's end begins
        chain = [previous, *lines]
        for index in range(1, len(chain)):
            first, second = chain[index - 1], chain[index]
            for start_in_first, end_in_second in self._spanning(first, second):
                heads[index - 1] = max(heads[index - 1], end_in_second)
                if index >= 2:
                    tails[index - 2] = min(tails[index - 2], start_in_first)
        masked: list[str] = []
        for line, head, tail in zip(lines, heads, tails, strict=True):
            if head >= tail:
                masked.append(MASK if line else line)
                continue
            middle = self.text(line[head:tail])
            masked.append((MASK if head else "") + middle + (MASK if tail < len(line) else ""))
        return masked

    def _spanning(self, first: str, second: str) -> list[tuple[int, int]]:
        """(start in `first`, end in `second`) of each value running from one into the
        other."""
        if not first or not second:
            return []
        found: list[tuple[int, int]] = []
        for piece in self._pieces:
            reach = len(piece) - 1
            tail, head = first[-reach:], second[:reach]
            window = tail + head
            boundary = len(tail)
            position = window.find(piece, max(0, boundary - reach))
            while 0 <= position < boundary:
                end = position + len(piece)
                if end > boundary:
                    found.append((len(first) - boundary + position, end - boundary))
                position = window.find(piece, position + 1)
        return found


def mask_lines(values: Iterable[str], lines: Sequence[str]) -> list[str]:
    """`lines` with the given secret values and Cairn access tokens masked."""
    return SecretMask(values).lines(lines)
