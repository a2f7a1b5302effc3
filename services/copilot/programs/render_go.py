"""Go programs."""

from __future__ import annotations

from collections.abc import Sequence

from services.copilot.programs.catalog import provider_for
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
    module_parts,
    number_literal,
    parse_token,
    pascal_case,
    quoted,
    referenced_vars,
    type_modules,
)


def _go_struct(opener: str, entries: Sequence[tuple[str, str]], depth: int) -> str:
    """A composite literal laid out the way gofmt aligns runs of one-line entries."""
    if not entries:
        return opener + "}"
    inner = "\t" * (depth + 1)
    lines: list[str] = []
    run: list[tuple[str, str]] = []

    def flush() -> None:
        width = max((len(key) for key, _ in run), default=0)
        lines.extend(f"{inner}{key.ljust(width)} {text}," for key, text in run)
        run.clear()

    for key, text in entries:
        if "\n" in text:
            flush()
            lines.append(f"{inner}{key} {text},")
        else:
            run.append((key, text))
    flush()
    return opener + "\n" + "\n".join(lines) + "\n" + "\t" * depth + "}"


def _go_string(text: str) -> str:
    """A raw string literal when the text is full of double quotes, else an escaped one."""
    if '"' in text and "`" not in text and text.isprintable():
        return f"`{text}`"
    return quoted(text)


def _go_path(path: Sequence[str | int]) -> str:
    return "".join(
        f".Index(pulumi.Int({p}))" if isinstance(p, int) else f".{pascal_case(p)}()" for p in path
    )


def _go_ref(spec: Spec, ref: Ref) -> str:
    if is_invoke(spec, ref.target):
        return ref.target + _go_path(ref.path)
    first = ref.path[0]
    head = ".ID()" if first == "id" else f".{pascal_case(str(first))}"
    return ref.target + head + _go_path(ref.path[1:])


def _go_package(module: str) -> str:
    """The name a module is used under: its path, joined (apps/v1 is appsv1)."""
    return "".join(module_parts(module))


def _go_import(spec: Spec, module: str) -> str:
    """An import line's spec; versioned modules get the alias their name says (appsv1)."""
    parts = module_parts(module)
    path = quoted(provider_for(spec.cloud).go_path.format(module="/".join(parts)))
    return f"{_go_package(module)} {path}" if len(parts) > 1 else path


def _go_value(spec: Spec, value: Value, module: str, depth: int) -> str:
    configs = {c.key: c for c in spec.configs}
    if isinstance(value, bool):
        return f"pulumi.Bool({'true' if value else 'false'})"
    if isinstance(value, int):
        return f"pulumi.Int({value})"
    if isinstance(value, float):
        return f"pulumi.Float64({number_literal(value)})"
    if isinstance(value, str):
        return f"pulumi.String({_go_string(value)})"
    if isinstance(value, ConfigRef):
        # Secrets are already outputs; plain config values are Go strings.
        return value.key if configs[value.key].secret else f"pulumi.String({value.key})"
    if isinstance(value, Ref):
        return _go_ref(spec, value)
    if isinstance(value, StringAsset):
        return f"pulumi.NewStringAsset({quoted(value.text)})"
    if isinstance(value, Interpolate):
        template = ""
        arguments = []
        for part in value.parts:
            if isinstance(part, str):
                template += part.replace("%", "%%")
            else:
                template += "%v"
                arguments.append(part.key if isinstance(part, ConfigRef) else _go_ref(spec, part))
        return f"pulumi.Sprintf({', '.join([_go_string(template), *arguments])})"
    if isinstance(value, Obj):
        module = _go_package(value.module) if value.module else module
        entries = [
            (f"{pascal_case(k)}:", _go_value(spec, v, module, depth + 1)) for k, v in value.fields
        ]
        return _go_struct(f"&{module}.{value.go_type or value.type_name}Args{{", entries, depth)
    if isinstance(value, StringMap):
        entries = [
            (f"{quoted(k)}:", _go_value(spec, v, module, depth + 1)) for k, v in value.entries
        ]
        return _go_struct("pulumi.StringMap{", entries, depth)
    items = [_go_value(spec, v, module, depth + 1) for v in value.values]
    first = value.values[0]
    if isinstance(first, Obj):
        owner = _go_package(first.module) if first.module else module
        opener = f"{owner}.{first.go_type or first.type_name}Array{{"
        return bracketed(opener, items, "}", depth, unit="\t", inline=False)
    kind = "Int" if isinstance(first, int) and not isinstance(first, bool) else "String"
    return bracketed(f"pulumi.{kind}Array{{", items, "}", depth, unit="\t", inline=True, width=100)


def render_go(spec: Spec) -> str:
    imports = {_go_import(spec, module) for module in type_modules(spec)}
    imports.add(quoted("github.com/pulumi/pulumi/sdk/v3/go/pulumi"))
    if spec.configs:
        imports.add(quoted("github.com/pulumi/pulumi/sdk/v3/go/pulumi/config"))
    lines = [f"// {spec.summary}", "package main", "", "import ("]
    # gofmt orders an import block by path, whatever the aliases.
    lines.extend(f"\t{line}" for line in sorted(imports, key=lambda line: line.split(" ")[-1]))
    lines += [")", "", "func main() {", "\tpulumi.Run(func(ctx *pulumi.Context) error {"]
    body: list[str] = []
    if spec.configs:
        body.append('cfg := config.New(ctx, "")')
        for config in spec.configs:
            if config.secret:
                body.append(f'{config.key} := cfg.RequireSecret("{config.key}")')
            elif config.default is None:
                body.append(f'{config.key} := cfg.Require("{config.key}")')
            else:
                body += [
                    f'{config.key} := cfg.Get("{config.key}")',
                    f'if {config.key} == "" {{',
                    f"\t{config.key} = {quoted(config.default)}",
                    "}",
                ]
        body.append("")
    used = referenced_vars(spec)
    is_err_declared = False
    for step in spec.steps:
        module = _go_package(parse_token(step.token).module)
        if step.note:
            body.append(f"// {step.note}")
        entries = [(f"{pascal_case(k)}:", _go_value(spec, v, module, 1)) for k, v in step.args]
        if isinstance(step, Invoke):
            opener = f"{module}.{step.go_function}OutputArgs{{"
            call = f"{module}.{step.go_function}Output(ctx, {_go_struct(opener, entries, 0)})"
            body += [f"{step.var} := {call}", ""]
            continue
        member = parse_token(step.token).member
        args = _go_struct(f"&{module}.{member}Args{{", entries, 0) if step.args else "nil"
        call = f"{module}.New{member}(ctx, {quoted(step.name)}, {args}"
        if step.depends_on:
            call += f", pulumi.DependsOn([]pulumi.Resource{{{', '.join(step.depends_on)}}})"
        if step.var in used:
            assign = f"{step.var}, err :="
        else:
            # Go rejects unused variables, and := needs at least one new name on the left.
            assign = "_, err =" if is_err_declared else "_, err :="
        is_err_declared = True
        body += [f"{assign} {call})", "if err != nil {", "\treturn err", "}", ""]
    body.extend(
        f"ctx.Export({quoted(name)}, {_go_value(spec, value, '', 0)})"
        for name, value in spec.exports
    )
    body.append("return nil")
    lines.extend(("\t\t" + line.replace("\n", "\n\t\t")) if line else "" for line in body)
    lines += ["\t})", "}"]
    return "\n".join(lines) + "\n"
