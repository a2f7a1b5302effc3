"""A small tokenizer shared by the syntax checks of the C-like languages."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from itertools import pairwise


@dataclass(frozen=True)
class Lexeme:
    """One token: identifier, number, string or punctuation, with its bracket depth."""

    kind: str
    text: str
    line: int
    depth: int


@dataclass(frozen=True)
class _Quoted:
    """How one kind of string literal ends, escapes and embeds expressions."""

    quote: str
    is_multiline: bool = False
    has_escapes: bool = True
    is_doubled: bool = False
    hole: str = ""


_OPERATORS = sorted(
    ["===", "!==", "...", "=>", "==", "!=", "<=", ">=", "&&", "||", "??", "?.", ":=", "<-",
     "++", "--", "+=", "-=", "*=", "/=", "::", "<<", ">>"],
    key=len,
    reverse=True,
)  # fmt: skip
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_BAD_PAIRS = frozenset(
    [
        (",", ","), ("(", ","), ("[", ","), ("{", ","), (",", ";"), (";", ","),
        ("=", ";"), ("=", ")"), ("=", "]"), ("=", "}"), ("=", ","),
        (":", ","), (":", ";"), (":", ")"), (".", "."), (".", ";"), (".", ","),
        ("=>", ";"), ("=>", ")"), ("=>", ","),
    ]
)  # fmt: skip


def _scan_quoted(code: str, index: int, line: int, kind: _Quoted) -> tuple[int, int, bool]:
    """Skip a string body; returns the next index, line and whether a hole was opened."""
    start_line = line
    while index < len(code):
        char = code[index]
        if kind.has_escapes and char == "\\":
            line += code[index + 1 : index + 2] == "\n"
            index += 2
            continue
        if code.startswith(kind.quote, index):
            if kind.is_doubled and code.startswith(kind.quote * 2, index):
                index += 2
                continue
            return index + len(kind.quote), line, False
        if kind.hole == "${" and code.startswith("${", index):
            return index + 2, line, True
        if kind.hole == "{" and char in "{}":
            if code.startswith(char * 2, index):
                index += 2
                continue
            if char == "{":
                return index + 1, line, True
        if char == "\n":
            if not kind.is_multiline:
                raise ValueError(f"line {start_line}: unterminated string")
            line += 1
        index += 1
    raise ValueError(f"line {start_line}: unterminated string")


def _string_kind(code: str, index: int, dialect: str) -> tuple[_Quoted, int] | None:
    """The string literal starting at index, and the length of its opening."""
    char = code[index]
    if dialect == "typescript":
        if char == "`":
            return _Quoted("`", is_multiline=True, hole="${"), 1
        if char in "\"'":
            return _Quoted(char), 1
    elif dialect == "go":
        if char == "`":
            return _Quoted("`", is_multiline=True, has_escapes=False), 1
        if char in "\"'":
            return _Quoted(char), 1
    else:
        for prefix in ('$@"', '@$"'):
            if code.startswith(prefix, index):
                verbatim = _Quoted('"', is_multiline=True, has_escapes=False, is_doubled=True)
                return replace(verbatim, hole="{"), 3
        if code.startswith('$"', index):
            return _Quoted('"', hole="{"), 2
        if code.startswith('@"', index):
            return _Quoted('"', is_multiline=True, has_escapes=False, is_doubled=True), 2
        if char in "\"'":
            return _Quoted(char), 1
    return None


def tokenize(code: str, dialect: str) -> list[Lexeme]:
    """Tokens of TypeScript, Go or C#; raises ValueError on unbalanced or unclosed code."""
    tokens: list[Lexeme] = []
    # Open brackets, and strings suspended while an embedded expression is read.
    stack: list[tuple[str, int, _Quoted | None]] = []
    index, line = 0, 1
    identifier = re.compile(r"[A-Za-z_$][\w$]*" if dialect == "typescript" else r"@?[A-Za-z_]\w*")
    number = re.compile(r"\d[\w]*(?:\.\d[\w]*)?")

    def resume(kind: _Quoted, at: int, at_line: int) -> tuple[int, int]:
        end, end_line, is_hole = _scan_quoted(code, at, at_line, kind)
        if is_hole:
            stack.append(("hole", end_line, kind))
        return end, end_line

    while index < len(code):
        char = code[index]
        if char == "\n":
            line += 1
            index += 1
            continue
        if char.isspace():
            index += 1
            continue
        if code.startswith("//", index):
            newline = code.find("\n", index)
            index = len(code) if newline < 0 else newline
            continue
        if code.startswith("/*", index):
            end = code.find("*/", index + 2)
            if end < 0:
                raise ValueError(f"line {line}: unterminated comment")
            line += code.count("\n", index, end)
            index = end + 2
            continue
        string = _string_kind(code, index, dialect)
        if string is not None:
            kind, opening = string
            tokens.append(Lexeme("string", code[index : index + opening], line, len(stack)))
            start = index
            index, line = resume(kind, index + opening, line)
            tokens[-1] = Lexeme("string", code[start:index], tokens[-1].line, tokens[-1].depth)
            continue
        match = identifier.match(code, index) or number.match(code, index)
        if match:
            kind_name = "number" if char.isdigit() else "name"
            tokens.append(Lexeme(kind_name, match.group(0), line, len(stack)))
            index = match.end()
            continue
        if char in "([{":
            tokens.append(Lexeme("punct", char, line, len(stack)))
            stack.append((char, line, None))
            index += 1
            continue
        if char in ")]}":
            if not stack:
                raise ValueError(f"line {line}: unexpected {char!r}")
            opener, opened_at, suspended = stack.pop()
            if suspended is not None and char == "}":
                index, line = resume(suspended, index + 1, line)
                continue
            if opener != _CLOSERS[char]:
                raise ValueError(f"line {line}: {char!r} closes {opener!r} from line {opened_at}")
            tokens.append(Lexeme("punct", char, line, len(stack)))
            index += 1
            continue
        operator = next((op for op in _OPERATORS if code.startswith(op, index)), char)
        tokens.append(Lexeme("punct", operator, line, len(stack)))
        index += len(operator)
    if stack:
        opener, opened_at, _ = stack[-1]
        what = "string interpolation" if opener == "hole" else repr(opener)
        raise ValueError(f"line {opened_at}: {what} is never closed")
    for previous, current in pairwise(tokens):
        pair = (previous.text, current.text)
        if previous.kind == current.kind == "punct" and pair in _BAD_PAIRS:
            raise ValueError(f"line {current.line}: {current.text!r} after {previous.text!r}")
    return tokens


def ends_cleanly(tokens: Sequence[Lexeme]) -> None:
    if not tokens or tokens[-1].text not in (";", "}"):
        line = tokens[-1].line if tokens else 1
        raise ValueError(f"line {line}: the file ends in the middle of a statement")
