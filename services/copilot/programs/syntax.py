"""Syntax checks: a real parser where the standard library has one, a tokenizer elsewhere."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from itertools import pairwise
from typing import Any

from services.copilot.programs.spec import (
    LANGUAGE_NAMES,
    GeneratedProgram,
)
from services.copilot.programs.tokens import (
    ends_cleanly,
    tokenize,
)


def _check_typescript(code: str) -> None:
    tokens = tokenize(code, "typescript")
    ends_cleanly(tokens)
    top = [token for token in tokens if token.depth == 0]
    starters = {"import", "export", "const", "let", "var", "function", "class"}
    for previous, current, following in zip([None, *top], top, [*top[1:], None], strict=False):
        if current.kind != "name" or current.text not in starters:
            continue
        is_separated = previous is None or previous.text in (";", "}", "export", "default")
        if not is_separated:
            raise ValueError(f"line {current.line}: missing ';' before {current.text!r}")
        if current.text in ("const", "let", "var") and (
            following is None or (following.kind != "name" and following.text not in ("{", "["))
        ):
            raise ValueError(f"line {current.line}: {current.text} needs a name")


def _go_package_name(path: str) -> str:
    """The name a Go import binds: the last path element that is not a major version."""
    elements = [e for e in path.split("/") if not re.fullmatch(r"v\d+", e)]
    return elements[-1].replace("-", "_")


def _check_go(code: str) -> None:
    tokens = tokenize(code, "go")
    if [t.text for t in tokens[:2]] != ["package", "main"]:
        raise ValueError("line 1: a Pulumi Go program must start with `package main`")
    imports: dict[str, int] = {}
    index = 2
    while index < len(tokens) and tokens[index].text == "import":
        index += 1
        is_block = index < len(tokens) and tokens[index].text == "("
        index += is_block
        while index < len(tokens) and tokens[index].text not in (")", "import", "func"):
            alias = None
            if tokens[index].kind == "name" or tokens[index].text in ("_", "."):
                alias = tokens[index].text
                index += 1
            if index >= len(tokens) or tokens[index].kind != "string":
                raise ValueError(f"line {tokens[index - 1].line}: malformed import")
            name = alias or _go_package_name(tokens[index].text.strip('"`'))
            if name not in ("_", "."):
                imports[name] = tokens[index].line
            index += 1
            if not is_block:
                break
        index += is_block
    rest = tokens[index:]
    texts = [t.text for t in rest]
    if not any(texts[i : i + 4] == ["func", "main", "(", ")"] for i in range(len(texts))):
        raise ValueError("a Pulumi Go program needs `func main()`")
    used = {
        current.text
        for current, following in pairwise(rest)
        if current.kind == "name" and following.text == "."
    }
    for name, line in imports.items():
        if name not in used:
            raise ValueError(f"line {line}: package {name} is imported but not used")
    ends_cleanly(tokens)


def _check_csharp(code: str) -> None:
    tokens = tokenize(code, "csharp")
    texts = [t.text for t in tokens]
    if not any(texts[i : i + 3] == ["using", "Pulumi", ";"] for i in range(len(texts))):
        raise ValueError("a Pulumi C# program needs `using Pulumi;`")
    runs = [
        i
        for i in range(len(texts))
        if texts[i : i + 3] == ["Deployment", ".", "RunAsync"]
        and texts[i + 3 : i + 4] in (["("], ["<"])
    ]
    if not runs:
        raise ValueError("a Pulumi C# program needs `Deployment.RunAsync(...)`")
    index = 0
    while index < len(tokens) and tokens[index].text == "using":
        end = next((i for i in range(index, len(tokens)) if tokens[i].text == ";"), None)
        if end is None or any(t.depth for t in tokens[index : end + 1]):
            raise ValueError(f"line {tokens[index].line}: malformed using directive")
        index = end + 1
    is_top_level = texts[runs[0] - 2 : runs[0]] == ["return", "await"]
    if is_top_level and tokens[runs[0]].depth == 0 and texts[-2:] != [")", ";"]:
        raise ValueError(f"line {tokens[-1].line}: `RunAsync(...)` must end with `);`")
    ends_cleanly(tokens)


def _yaml_roots(node: Any) -> Iterator[str]:
    """Names that ${...} interpolations in a Pulumi YAML document start from."""
    if isinstance(node, str):
        for match in re.finditer(r"(?<!\$)\$\{([^}]*)\}", node):
            root = re.match(r"[\w-]+", match.group(1))
            if root:
                yield root.group(0)
    elif isinstance(node, dict):
        for value in node.values():
            yield from _yaml_roots(value)
    elif isinstance(node, list):
        for value in node:
            yield from _yaml_roots(value)


def _check_yaml(code: str) -> None:
    # Imported here because only the syntax check needs PyYAML; rendering does not.
    import yaml

    try:
        document = yaml.safe_load(code)
    except yaml.YAMLError as error:
        raise ValueError(f"invalid YAML: {error}") from error
    if not isinstance(document, dict):
        raise ValueError("a Pulumi YAML program is a mapping")
    if not isinstance(document.get("name"), str) or not document["name"]:
        raise ValueError("a Pulumi YAML program needs a `name`")
    runtime = document.get("runtime")
    if runtime != "yaml" and not (isinstance(runtime, dict) and runtime.get("name") == "yaml"):
        raise ValueError("a Pulumi YAML program needs `runtime: yaml`")
    sections = {}
    for section in ("config", "variables", "resources", "outputs"):
        value = document.get(section, {})
        if not isinstance(value, dict):
            raise ValueError(f"`{section}` must be a mapping")
        sections[section] = value
    if not sections["resources"]:
        raise ValueError("a Pulumi YAML program needs at least one resource")
    for name, resource in sections["resources"].items():
        if not isinstance(resource, dict) or not isinstance(resource.get("type"), str):
            raise ValueError(f"resource {name!r} needs a `type`")
        if not re.fullmatch(r"[\w-]+:[\w/.-]*:\w+", resource["type"]):
            raise ValueError(f"resource {name!r} has a malformed type {resource['type']!r}")
        for key in ("properties", "options"):
            if not isinstance(resource.get(key, {}), dict):
                raise ValueError(f"resource {name!r}: `{key}` must be a mapping")
    known = {"pulumi"} | {
        str(key) for section in ("config", "variables", "resources") for key in sections[section]
    }
    for section in ("variables", "resources", "outputs"):
        for root in _yaml_roots(sections[section]):
            if root not in known:
                raise ValueError(f"`${{{root}}}` refers to nothing declared in the program")


def _check_python(code: str) -> None:
    try:
        tree = ast.parse(code, filename="__main__.py")
        # Compiling catches what the parser allows but Python rejects (a stray return).
        compile(tree, "__main__.py", "exec", dont_inherit=True)
    except SyntaxError as error:
        raise ValueError(f"line {error.lineno}: {error.msg}") from error


_CHECKS = {
    "typescript": _check_typescript,
    "python": _check_python,
    "go": _check_go,
    "csharp": _check_csharp,
    "yaml": _check_yaml,
}


def check_syntax(program: GeneratedProgram) -> None:
    """Raise ValueError when the program's code does not parse as its language."""
    check = _CHECKS.get(program.language)
    if check is None:
        raise ValueError(f"unsupported language {program.language!r}")
    try:
        check(program.code)
    except ValueError as error:
        raise ValueError(f"{LANGUAGE_NAMES[program.language]}: {error}") from error
