"""Pulumi YAML programs."""

from __future__ import annotations

import re
from typing import TypeAlias

from services.copilot.programs.spec import (
    ConfigRef,
    Interpolate,
    Invoke,
    Items,
    Obj,
    Ref,
    Resource,
    Spec,
    StringAsset,
    Value,
    number_literal,
    quoted,
)

_YamlNode: TypeAlias = str | int | float | bool | list["_YamlNode"] | dict[str, "_YamlNode"]
_YAML_PLAIN = re.compile(r"[A-Za-z_/$][A-Za-z0-9_./${}\[\]:*@ -]*")
_YAML_KEYWORDS = frozenset(["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~"])


def _yaml_expression(spec: Spec, ref: Ref) -> str:
    step = next(s for s in spec.steps if s.var == ref.target)
    root = step.name if isinstance(step, Resource) else step.var
    path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in ref.path)
    return root + path


def _yaml_node(spec: Spec, value: Value) -> _YamlNode:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, ConfigRef):
        return "${" + value.key + "}"
    if isinstance(value, Ref):
        return "${" + _yaml_expression(spec, value) + "}"
    if isinstance(value, StringAsset):
        return {"fn::stringAsset": value.text}
    if isinstance(value, Interpolate):
        text = ""
        for part in value.parts:
            if isinstance(part, str):
                text += part.replace("$", "$$")
            elif isinstance(part, ConfigRef):
                text += "${" + part.key + "}"
            else:
                text += "${" + _yaml_expression(spec, part) + "}"
        return text
    if isinstance(value, Items):
        return [_yaml_node(spec, v) for v in value.values]
    fields = value.fields if isinstance(value, Obj) else value.entries
    return {k: _yaml_node(spec, v) for k, v in fields}


def _yaml_scalar(value: str | int | float | bool) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_literal(value)
    is_plain = (
        _YAML_PLAIN.fullmatch(value) is not None
        and value.lower() not in _YAML_KEYWORDS
        and ": " not in value
        and not value.endswith((":", " "))
    )
    if is_plain:
        return value
    if '"' in value and value.isprintable():
        # Single-quoted scalars escape nothing but the quote itself, so JSON stays legible.
        return "'" + value.replace("'", "''") + "'"
    return quoted(value)


def _yaml_lines(node: _YamlNode, indent: int) -> list[str]:
    """Block-style lines for a mapping or sequence."""
    pad = "  " * indent
    lines: list[str] = []
    if isinstance(node, dict):
        for key, child in node.items():
            if isinstance(child, dict | list) and child:
                lines.append(f"{pad}{_yaml_scalar(key)}:")
                lines.extend(_yaml_lines(child, indent + 1))
            else:
                lines.append(f"{pad}{_yaml_scalar(key)}: {_yaml_inline(child)}")
    elif isinstance(node, list):
        for child in node:
            if isinstance(child, dict | list) and child:
                nested = _yaml_lines(child, indent + 1)
                lines.append(f"{pad}- {nested[0].lstrip()}")
                lines.extend(nested[1:])
            else:
                lines.append(f"{pad}- {_yaml_inline(child)}")
    return lines


def _yaml_inline(node: _YamlNode) -> str:
    if isinstance(node, dict):
        return "{}"
    if isinstance(node, list):
        return "[]"
    return _yaml_scalar(node)


def render_yaml(spec: Spec) -> str:
    lines = [
        f"# {spec.summary}",
        f"name: {spec.cloud}-{spec.resource}",
        "runtime: yaml",
        f"description: {_yaml_scalar(spec.summary)}",
    ]
    if spec.configs:
        config: dict[str, _YamlNode] = {}
        for item in spec.configs:
            entry: dict[str, _YamlNode] = {"type": "string"}
            if item.secret:
                entry["secret"] = True
            if item.default is not None:
                entry["default"] = item.default
            config[item.key] = entry
        lines += ["config:", *_yaml_lines(config, 1)]
    calls = [step for step in spec.steps if isinstance(step, Invoke)]
    if calls:
        lines.append("variables:")
        for call in calls:
            if call.note:
                lines.append(f"  # {call.note}")
            invoke: dict[str, _YamlNode] = {
                "function": call.token,
                "arguments": {k: _yaml_node(spec, v) for k, v in call.args},
            }
            lines.extend(_yaml_lines({call.var: {"fn::invoke": invoke}}, 1))
    lines.append("resources:")
    for step in spec.steps:
        if not isinstance(step, Resource):
            continue
        if step.note:
            lines.append(f"  # {step.note}")
        declaration: dict[str, _YamlNode] = {"type": step.token}
        if step.args:
            declaration["properties"] = {k: _yaml_node(spec, v) for k, v in step.args}
        if step.depends_on:
            needs: list[_YamlNode] = [
                "${" + _yaml_expression(spec, Ref(var, ())) + "}" for var in step.depends_on
            ]
            declaration["options"] = {"dependsOn": needs}
        lines.extend(_yaml_lines({step.name: declaration}, 1))
    outputs = {name: _yaml_node(spec, value) for name, value in spec.exports}
    lines += ["outputs:", *_yaml_lines(outputs, 1)]
    return "\n".join(lines) + "\n"
