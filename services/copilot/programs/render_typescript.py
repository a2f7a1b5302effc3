"""TypeScript programs."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence

from services.copilot.programs.catalog import provider_for
from services.copilot.programs.spec import (
    ConfigRef,
    Fields,
    Interpolate,
    Invoke,
    Items,
    Obj,
    Ref,
    Spec,
    StringAsset,
    Value,
    bracketed,
    is_invoke,
    module_parts,
    number_literal,
    parse_token,
    provider_modules,
    quoted,
)

_TS_UNIT = "    "
_TS_IDENTIFIER = re.compile(r"[A-Za-z_$][A-Za-z0-9_$]*")


def _ts_member(spec: Spec, token: str) -> str:
    """Expression naming a class or function of the provider SDK."""
    parts = parse_token(token)
    alias = provider_for(spec.cloud).alias
    module = ".".join(module_parts(parts.module))
    return f"{alias}.{module}.{parts.member}" if alias else f"{module}.{parts.member}"


def _ts_path(path: Sequence[str | int], *, optional: bool) -> str:
    """Property and index accessors; optional chaining after the first step is type-safe."""
    out = ""
    for index, step in enumerate(path):
        chain = "?." if optional and index else ("" if isinstance(step, int) else ".")
        out += f"{chain}[{step}]" if isinstance(step, int) else f"{chain}{step}"
    return out


def _ts_ref(spec: Spec, ref: Ref) -> str:
    if is_invoke(spec, ref.target):
        return f"{ref.target}.apply(result => result{_ts_path(ref.path, optional=True)})"
    head = f"{ref.target}.{ref.path[0]}"
    if len(ref.path) == 1:
        return head
    return f"{head}.apply(value => value{_ts_path(ref.path[1:], optional=True)})"


def _ts_value(spec: Spec, value: Value, depth: int, lead: int = 0) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_literal(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, ConfigRef):
        return value.key
    if isinstance(value, Ref):
        return _ts_ref(spec, value)
    if isinstance(value, StringAsset):
        return f"new pulumi.asset.StringAsset({quoted(value.text)})"
    if isinstance(value, Interpolate):
        pieces = []
        for part in value.parts:
            if isinstance(part, str):
                escaped = json.dumps(part)[1:-1].replace('\\"', '"')
                pieces.append(escaped.replace("`", "\\`").replace("${", "\\${"))
            else:
                pieces.append("${" + _ts_value(spec, part, depth) + "}")
        return "pulumi.interpolate`" + "".join(pieces) + "`"
    if isinstance(value, Items):
        items = [_ts_value(spec, v, depth + 1) for v in value.values]
        return bracketed("[", items, "]", depth, unit=_TS_UNIT, inline=True, lead=lead)
    fields = value.fields if isinstance(value, Obj) else value.entries
    return _ts_object(spec, fields, depth, inline=True, lead=lead)


def _ts_object(spec: Spec, fields: Fields, depth: int, *, inline: bool, lead: int = 0) -> str:
    items = []
    for key, value in fields:
        name = key if _TS_IDENTIFIER.fullmatch(key) else quoted(key)
        items.append(f"{name}: {_ts_value(spec, value, depth + 1, len(name) + 2)}")
    return bracketed("{", items, "}", depth, unit=_TS_UNIT, inline=inline, pad=" ", lead=lead)


def render_typescript(spec: Spec) -> str:
    provider = provider_for(spec.cloud)
    lines = [f"// {spec.summary}", 'import * as pulumi from "@pulumi/pulumi";']
    if provider.alias:
        lines.append(f'import * as {provider.alias} from "{provider.npm}";')
    else:
        lines.extend(
            f'import * as {module} from "{provider.npm}/{module}";'
            for module in provider_modules(spec)
        )
    lines.append("")
    if spec.configs:
        lines.append("const config = new pulumi.Config();")
        for config in spec.configs:
            if config.secret:
                lines.append(f'const {config.key} = config.requireSecret("{config.key}");')
            elif config.default is None:
                lines.append(f'const {config.key} = config.require("{config.key}");')
            else:
                lines.append(
                    f'const {config.key} = config.get("{config.key}") ?? {quoted(config.default)};'
                )
        lines.append("")
    for step in spec.steps:
        if step.note:
            lines.append(f"// {step.note}")
        if isinstance(step, Invoke):
            call = _ts_member(spec, step.token) + "Output"
            args = _ts_object(spec, step.args, 0, inline=False)
            lines.append(f"const {step.var} = {call}({args});")
        else:
            call = f"new {_ts_member(spec, step.token)}({quoted(step.name)}"
            if step.args:
                call += ", " + _ts_object(spec, step.args, 0, inline=False)
            if step.depends_on:
                call += ", { dependsOn: [" + ", ".join(step.depends_on) + "] }"
            lines.append(f"const {step.var} = {call});")
        lines.append("")
    lines.extend(
        f"export const {name} = {_ts_value(spec, value, 0, len(name) + 16)};"
        for name, value in spec.exports
    )
    return "\n".join(lines) + "\n"
