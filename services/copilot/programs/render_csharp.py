"""C# programs."""

from __future__ import annotations

import json
from collections.abc import Sequence

from services.copilot.programs.catalog import csharp_module, provider_for
from services.copilot.programs.spec import (
    ConfigRef,
    Interpolate,
    Invoke,
    Obj,
    Ref,
    Spec,
    StringAsset,
    StringMap,
    Value,
    bracketed,
    is_invoke,
    number_literal,
    parse_token,
    pascal_case,
    quoted,
)

_CS_UNIT = "    "


def _cs_namespace(spec: Spec, token: str) -> str:
    provider = provider_for(spec.cloud)
    return f"{provider.csharp_alias}.{csharp_module(parse_token(token).module)}"


def _cs_inputs(spec: Spec, module: str) -> str:
    """The namespace of a module's nested input types."""
    provider = provider_for(spec.cloud)
    return provider.csharp_inputs.format(alias=provider.csharp_alias, module=csharp_module(module))


def _cs_path(path: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{pascal_case(p)}" for p in path)


def _cs_ref(spec: Spec, ref: Ref) -> str:
    if is_invoke(spec, ref.target):
        return f"{ref.target}.Apply(result => result{_cs_path(ref.path)})"
    head = f"{ref.target}{_cs_path(ref.path[:1])}"
    if len(ref.path) == 1:
        return head
    return f"{head}.Apply(value => value{_cs_path(ref.path[1:])})"


def _cs_value(spec: Spec, value: Value, module: str, depth: int, *, in_call: bool) -> str:
    """A C# expression; module is the one nested types belong to unless they name theirs."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return number_literal(value)
    if isinstance(value, str):
        return quoted(value)
    if isinstance(value, ConfigRef):
        return value.key
    if isinstance(value, Ref):
        return _cs_ref(spec, value)
    if isinstance(value, StringAsset):
        return f"new StringAsset({quoted(value.text)})"
    if isinstance(value, Interpolate):
        text = ""
        for part in value.parts:
            if isinstance(part, str):
                text += json.dumps(part)[1:-1].replace("{", "{{").replace("}", "}}")
            else:
                text += "{" + _cs_value(spec, part, module, depth, in_call=in_call) + "}"
        return f'Output.Format($"{text}")'
    if isinstance(value, Obj):
        # Output-form function arguments take the "InputArgs" flavour of nested types.
        suffix = "InputArgs" if in_call else "Args"
        module = value.module or module
        type_name = f"{_cs_inputs(spec, module)}.{value.type_name}{suffix}"
        if not value.fields:
            return f"new {type_name}()"
        items = [
            f"{pascal_case(k)} = {_cs_value(spec, v, module, depth + 1, in_call=in_call)}"
            for k, v in value.fields
        ]
        return _cs_initializer(f"new {type_name}", items, depth)
    if isinstance(value, StringMap):
        items = [
            f"{{ {quoted(k)}, {_cs_value(spec, v, module, depth + 1, in_call=in_call)} }}"
            for k, v in value.entries
        ]
        return _cs_initializer("new InputMap<string>", items, depth)
    items = [_cs_value(spec, v, module, depth + 1, in_call=in_call) for v in value.values]
    literal = [isinstance(v, str | int | float) for v in value.values]
    # new[] needs one element type; mixing literals and outputs needs an explicit list.
    opener = "new[]" if all(literal) or not any(literal) else "new InputList<string>"
    if any(isinstance(v, Obj) for v in value.values):
        return _cs_initializer(opener, items, depth)
    return bracketed(f"{opener} {{", items, "}", depth, unit=_CS_UNIT, inline=True, pad=" ")


def _cs_initializer(opener: str, items: Sequence[str], depth: int) -> str:
    """An object or collection initializer with braces on their own lines."""
    return bracketed(
        f"{opener}\n{_CS_UNIT * depth}{{", items, "}", depth, unit=_CS_UNIT, inline=False
    )


def render_csharp(spec: Spec) -> str:
    provider = provider_for(spec.cloud)
    lines = [
        f"// {spec.summary}",
        "using System.Collections.Generic;",
        "using Pulumi;",
        f"using {provider.csharp_alias} = {provider.csharp_namespace};",
        "",
        "return await Deployment.RunAsync(() =>",
        "{",
    ]
    body: list[str] = []
    if spec.configs:
        body.append("var config = new Config();")
        for config in spec.configs:
            if config.secret:
                body.append(f'var {config.key} = config.RequireSecret("{config.key}");')
            elif config.default is None:
                body.append(f'var {config.key} = config.Require("{config.key}");')
            else:
                body.append(
                    f'var {config.key} = config.Get("{config.key}") ?? {quoted(config.default)};'
                )
        body.append("")
    for step in spec.steps:
        namespace = _cs_namespace(spec, step.token)
        module = parse_token(step.token).module
        member = pascal_case(parse_token(step.token).member)
        if step.note:
            body.append(f"// {step.note}")
        in_call = isinstance(step, Invoke)
        items = [
            f"{pascal_case(k)} = {_cs_value(spec, v, module, 1, in_call=in_call)}"
            for k, v in step.args
        ]
        if isinstance(step, Invoke):
            args = _cs_initializer("new()", items, 0)
            body += [f"var {step.var} = {namespace}.{member}.Invoke({args});", ""]
            continue
        call = f"var {step.var} = new {namespace}.{member}({quoted(step.name)}"
        if step.args:
            call += ", " + _cs_initializer("new()", items, 0)
        if step.depends_on:
            opener = f"DependsOn =\n{_CS_UNIT}{{"
            needs = bracketed(opener, step.depends_on, "}", 1, unit=_CS_UNIT, inline=False)
            call += ", " + _cs_initializer("new CustomResourceOptions", [needs], 0)
        body += [f"{call});", ""]
    outputs = [
        f"[{quoted(name)}] = {_cs_value(spec, value, '', 1, in_call=False)}"
        for name, value in spec.exports
    ]
    body.append("return " + _cs_initializer("new Dictionary<string, object?>", outputs, 0) + ";")
    lines.extend((_CS_UNIT + line.replace("\n", "\n" + _CS_UNIT)) if line else "" for line in body)
    lines.append("});")
    return "\n".join(lines) + "\n"
