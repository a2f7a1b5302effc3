"""Python programs."""

from __future__ import annotations

from collections.abc import Sequence

from services.copilot.programs.catalog import provider_for
from services.copilot.programs.spec import (
    ConfigRef,
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
    snake_case,
)

_PY_UNIT = "    "


def _py_member(spec: Spec, token: str, *, function: bool = False) -> str:
    parts = parse_token(token)
    member = snake_case(parts.member) + "_output" if function else parts.member
    alias = provider_for(spec.cloud).alias
    module = ".".join(module_parts(parts.module))
    return f"{alias}.{module}.{member}" if alias else f"{module}.{member}"


def _py_quote(text: str) -> str:
    """Single quotes spare the backslashes when the text itself is full of double quotes."""
    if '"' in text and "'" not in text and "\\" not in text and text.isprintable():
        return f"'{text}'"
    return quoted(text)


def _py_path(path: Sequence[str | int]) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else f".{snake_case(p)}" for p in path)


def _py_ref(spec: Spec, ref: Ref) -> str:
    target = snake_case(ref.target)
    if is_invoke(spec, ref.target):
        return f"{target}.apply(lambda result: result{_py_path(ref.path)})"
    head = f"{target}{_py_path(ref.path[:1])}"
    if len(ref.path) == 1:
        return head
    return f"{head}.apply(lambda value: value{_py_path(ref.path[1:])})"


def _py_value(spec: Spec, value: Value, depth: int, lead: int = 0) -> str:
    if isinstance(value, bool):
        return repr(value)
    if isinstance(value, int | float):
        return number_literal(value)
    if isinstance(value, str):
        return _py_quote(value)
    if isinstance(value, ConfigRef):
        return snake_case(value.key)
    if isinstance(value, Ref):
        return _py_ref(spec, value)
    if isinstance(value, StringAsset):
        return f"pulumi.StringAsset({quoted(value.text)})"
    if isinstance(value, Interpolate):
        parts = [_py_value(spec, part, depth + 1) for part in value.parts]
        opener = "pulumi.Output.concat("
        return bracketed(opener, parts, ")", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead)
    if isinstance(value, Items):
        items = [_py_value(spec, v, depth + 1) for v in value.values]
        return bracketed("[", items, "]", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead)
    if isinstance(value, Obj):
        entries = [(snake_case(k), v) for k, v in value.fields]
    else:
        entries = list(value.entries)
    items = [f"{quoted(k)}: {_py_value(spec, v, depth + 1, len(k) + 4)}" for k, v in entries]
    return bracketed("{", items, "}", depth, unit=_PY_UNIT, inline=True, width=88, lead=lead)


def _py_call(target: str, callee: str, arguments: Sequence[str]) -> str:
    """An assignment from a call: one line for a single short argument, else one per line."""
    is_short = len(arguments) == 1 and len(f"{target} = {callee}({arguments[0]})") <= 88
    call = bracketed(f"{callee}(", arguments, ")", 0, unit=_PY_UNIT, inline=is_short, width=999)
    return f"{target} = {call}"


def render_python(spec: Spec) -> str:
    provider = provider_for(spec.cloud)
    lines = [f'"""{spec.summary}"""', "", "import pulumi"]
    if provider.alias:
        lines.append(f"import {provider.python_module} as {provider.alias}")
    else:
        lines.append(f"from {provider.python_module} import {', '.join(provider_modules(spec))}")
    lines.append("")
    if spec.configs:
        lines.append("config = pulumi.Config()")
        for config in spec.configs:
            name = snake_case(config.key)
            if config.secret:
                lines.append(f'{name} = config.require_secret("{config.key}")')
            elif config.default is None:
                lines.append(f'{name} = config.require("{config.key}")')
            else:
                lines.append(f'{name} = config.get("{config.key}") or {quoted(config.default)}')
        lines.append("")
    for step in spec.steps:
        if step.note:
            lines.append(f"# {step.note}")
        arguments = [
            f"{snake_case(k)}={_py_value(spec, v, 1, len(snake_case(k)) + 1)}" for k, v in step.args
        ]
        if isinstance(step, Invoke):
            callee = _py_member(spec, step.token, function=True)
            lines.append(_py_call(snake_case(step.var), callee, arguments))
        else:
            arguments.insert(0, quoted(step.name))
            if step.depends_on:
                needs = ", ".join(snake_case(var) for var in step.depends_on)
                arguments.append(f"opts=pulumi.ResourceOptions(depends_on=[{needs}])")
            callee = _py_member(spec, step.token)
            lines.append(_py_call(snake_case(step.var), callee, arguments))
        lines.append("")
    for name, value in spec.exports:
        arguments = [quoted(name), _py_value(spec, value, 1, len(name) + 4)]
        lines.append(
            bracketed("pulumi.export(", arguments, ")", 0, unit=_PY_UNIT, inline=True, width=88)
        )
    return "\n".join(lines) + "\n"
