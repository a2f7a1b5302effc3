"""The structured description of a program that every renderer reads, and its rules."""

from __future__ import annotations

import json
import keyword
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TypeAlias

LANGUAGES = ("typescript", "python", "go", "csharp", "yaml")
CLOUDS = ("aws", "azure", "gcp")
RESOURCES = ("bucket", "vm", "network", "database", "container", "dns", "website")
# Kubernetes programs run against any cluster, so Kubernetes is a target beside the clouds.
KUBERNETES = "kubernetes"
KUBERNETES_RESOURCES = ("app", "namespace", "helm", "config")
# Every (resource, target) pair that has a program.
PROGRAMS = (
    *((resource, cloud) for cloud in CLOUDS for resource in RESOURCES),
    *((resource, KUBERNETES) for resource in KUBERNETES_RESOURCES),
)


@dataclass(frozen=True)
class ProgramRequest:
    """What the user asked for, as normalised keys from RESOURCES, CLOUDS and LANGUAGES."""

    resource: str
    cloud: str
    language: str
    # The Helm chart a Helm release installs; empty for the template's own chart.
    chart: str = ""


@dataclass(frozen=True)
class GeneratedProgram:
    """A complete program plus the steps to run it; the payload of a "program" message."""

    code: str
    instructions: str
    language: str
    program_id: str
    resource: str
    cloud: str

    @property
    def description(self) -> str:
        """What the program builds, for the sentence that introduces it."""
        what = RESOURCE_NAMES.get(self.resource, self.resource)
        return f"{what} on {CLOUD_NAMES.get(self.cloud, self.cloud)}"


RESOURCE_NAMES = {
    "bucket": "a storage bucket",
    "vm": "a virtual machine",
    "network": "a network with subnets",
    "database": "a managed database",
    "container": "a container service",
    "dns": "a DNS zone and record",
    "website": "a static website",
    "app": "an nginx Deployment and Service",
    "namespace": "a namespace",
    "helm": "a Helm release",
    "config": "a ConfigMap and a Secret in their own namespace",
}
CLOUD_NAMES = {"aws": "AWS", "azure": "Azure", "gcp": "Google Cloud", KUBERNETES: "Kubernetes"}


# ---------------------------------------------------------------------------------------
# The structured description every renderer reads.
#
# Property names are written the way the Pulumi schema spells them (camelCase); each
# renderer derives its own spelling (snake_case for Python, PascalCase for Go and C#).


@dataclass(frozen=True)
class Ref:
    """An output of an earlier resource or function call, reached by a property path."""

    target: str
    path: tuple[str | int, ...]


@dataclass(frozen=True)
class ConfigRef:
    """The value of a declared config key."""

    key: str


@dataclass(frozen=True)
class Interpolate:
    """A string assembled from literals and outputs."""

    parts: tuple[str | Ref | ConfigRef, ...]


@dataclass(frozen=True)
class StringAsset:
    """File content given inline."""

    text: str


@dataclass(frozen=True)
class Obj:
    """A typed nested input; Go and C# need the schema type name, the others do not."""

    type_name: str
    fields: Fields
    # Go appends "Type" when a nested type shares its name with a resource (SubnetType).
    go_type: str = ""
    # The provider module that defines the type when it is not the resource's own module,
    # such as meta/v1 for the ObjectMeta inside an apps/v1 Deployment.
    module: str = ""


@dataclass(frozen=True)
class Items:
    """A list input."""

    values: tuple[Value, ...]


@dataclass(frozen=True)
class StringMap:
    """A map of free-form string keys, such as tags."""

    entries: Fields


Value: TypeAlias = (
    str | int | float | bool | Ref | ConfigRef | Interpolate | StringAsset | Obj | Items
) | StringMap
Fields: TypeAlias = tuple[tuple[str, Value], ...]


@dataclass(frozen=True)
class Config:
    """A stack config value the program reads; secrets never get a default."""

    key: str
    secret: bool = False
    default: str | None = None
    example: str = ""
    purpose: str = ""


@dataclass(frozen=True)
class Resource:
    """One resource declaration."""

    var: str
    name: str
    token: str
    args: Fields
    depends_on: tuple[str, ...]
    note: str


@dataclass(frozen=True)
class Invoke:
    """One provider function call in its output form."""

    var: str
    token: str
    # Go names functions that read an existing resource "Lookup..." and others "Get...".
    go_function: str
    args: Fields
    note: str


Step: TypeAlias = Resource | Invoke


@dataclass(frozen=True)
class Spec:
    """A whole program: config, ordered steps and stack outputs."""

    resource: str
    cloud: str
    summary: str
    configs: tuple[Config, ...]
    steps: tuple[Step, ...]
    exports: Fields


@dataclass(frozen=True)
class Token:
    """The parts of a Pulumi type token such as aws:s3/bucketV2:BucketV2."""

    package: str
    module: str
    member: str


@dataclass(frozen=True)
class Provider:
    """How one provider package is spelled in each language and set up on the CLI."""

    cloud: str
    display: str
    package: str
    npm: str
    python_module: str
    # Empty for azure-native, whose SDKs are imported one module at a time.
    alias: str
    go_path: str
    csharp_alias: str
    csharp_namespace: str
    # Where nested input types live: {alias} and {module} are filled in.
    csharp_inputs: str
    location_key: str
    location_example: str
    location_purpose: str
    login: str


LANGUAGE_NAMES = {
    "typescript": "TypeScript",
    "python": "Python",
    "go": "Go",
    "csharp": "C#",
    "yaml": "YAML",
}
PROGRAM_FILES = {
    "typescript": "index.ts",
    "python": "__main__.py",
    "go": "main.go",
    "csharp": "Program.cs",
    "yaml": "Pulumi.yaml",
}


# ---------------------------------------------------------------------------------------
# Shared helpers for the renderers.


_VERSION = re.compile(r"v\d+(?:(?:alpha|beta)\d+)?")


def parse_token(token: str) -> Token:
    """Split a type token into package, module and member.

    Most tokens repeat the member after the module (`s3/bucketV2`), which is dropped;
    versioned packages such as Kubernetes keep the whole module (`apps/v1`).
    """
    package, module, member = token.split(":")
    head, _, tail = module.partition("/")
    return Token(package, module if _VERSION.fullmatch(tail) else head, member)


def module_parts(module: str) -> tuple[str, ...]:
    """A module's path segments as the SDKs name them: `helm.sh/v3` is `helm`, `v3`."""
    return tuple(part.split(".")[0] for part in module.split("/"))


def snake_case(name: str) -> str:
    """Python spelling of a schema name, following Pulumi's rule for acronyms and digits."""
    out: list[str] = []
    for index, char in enumerate(name):
        if char.isupper():
            previous = name[index - 1] if index else ""
            following = name[index + 1] if index + 1 < len(name) else ""
            if previous and (
                previous.islower()
                or previous.isdigit()
                or (previous.isupper() and following.islower())
            ):
                out.append("_")
            out.append(char.lower())
        else:
            out.append(char)
    return "".join(out)


def pascal_case(name: str) -> str:
    """Go and C# spelling of a schema name."""
    return name[:1].upper() + name[1:]


def number_literal(value: int | float) -> str:
    """A numeric literal; whole floats drop the fraction, which every target accepts."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return repr(value)


def quoted(text: str) -> str:
    """A double-quoted literal that TypeScript, Python, Go, C# and YAML all read alike."""
    return json.dumps(text)


def walk(value: Value) -> Iterator[Value]:
    """The value and every value nested inside it."""
    yield value
    children: Sequence[Value] = ()
    if isinstance(value, Obj):
        children = [v for _, v in value.fields]
    elif isinstance(value, StringMap):
        children = [v for _, v in value.entries]
    elif isinstance(value, Items):
        children = value.values
    elif isinstance(value, Interpolate):
        children = value.parts
    for child in children:
        yield from walk(child)


def spec_values(spec: Spec) -> Iterator[Value]:
    """Every value in the program's arguments and outputs."""
    for step in spec.steps:
        for _, value in step.args:
            yield from walk(value)
    for _, value in spec.exports:
        yield from walk(value)


def referenced_vars(spec: Spec) -> frozenset[str]:
    """Variables some later code reads; Go must discard the others."""
    names = {v.target for v in spec_values(spec) if isinstance(v, Ref)}
    for step in spec.steps:
        if isinstance(step, Resource):
            names.update(step.depends_on)
    return frozenset(names)


def provider_modules(spec: Spec) -> list[str]:
    """Provider modules the program uses, sorted."""
    return sorted({parse_token(step.token).module for step in spec.steps})


def type_modules(spec: Spec) -> list[str]:
    """Modules of the resources and of nested types declared in another module, sorted."""
    found = set(provider_modules(spec))
    found.update(v.module for v in spec_values(spec) if isinstance(v, Obj) and v.module)
    return sorted(found)


RESERVED = frozenset(
    [
        *keyword.kwlist,
        # Names the renderers declare themselves, provider aliases and lambda parameters.
        "aws", "azure", "gcp", "k8s", "pulumi", "config", "cfg", "ctx", "err", "value", "result",
        # Keywords and predeclared names of the other target languages.
        "base", "case", "chan", "class", "const", "default", "defer", "delete", "event",
        "export", "fallthrough", "func", "function", "go", "goto", "interface", "let", "map",
        "new", "object", "package", "range", "select", "string", "switch", "this", "type",
        "var", "void",
    ]
)  # fmt: skip


def validate(spec: Spec) -> None:
    """Raise ValueError when a description could render to code that does not compile."""
    modules = set(provider_modules(spec))
    # Go imports a versioned module under one name (appsv1): no variable may take it.
    modules.update("".join(module_parts(module)) for module in type_modules(spec))
    configs = {c.key: c for c in spec.configs}
    seen: dict[str, Step] = {}
    yaml_names: set[str] = set(configs)
    problems: list[str] = []
    for step in spec.steps:
        names = {step.var, snake_case(step.var)}
        if names & (RESERVED | modules) or step.var in seen:
            problems.append(f"bad or duplicate variable {step.var!r}")
        yaml_name = step.name if isinstance(step, Resource) else step.var
        if yaml_name in yaml_names:
            problems.append(f"duplicate name {yaml_name!r}")
        yaml_names.add(yaml_name)
        for _, value in step.args:
            for item in walk(value):
                if isinstance(item, Ref) and item.target not in seen:
                    problems.append(f"{step.var} reads {item.target} before it exists")
        if isinstance(step, Resource):
            problems.extend(
                f"{step.var} depends on unknown {target}"
                for target in step.depends_on
                if not isinstance(seen.get(target), Resource)
            )
        seen[step.var] = step
    used_configs = set()
    for item in spec_values(spec):
        if isinstance(item, Ref) and item.target not in seen:
            problems.append(f"unknown reference {item.target}")
        elif isinstance(item, Ref) and (not item.path or not isinstance(item.path[0], str)):
            problems.append(f"reference to {item.target} needs a property name first")
        elif isinstance(item, ConfigRef):
            used_configs.add(item.key)
        elif isinstance(item, Items) and not item.values:
            problems.append("empty lists have no element type")
    for config in spec.configs:
        if config.key not in used_configs:
            problems.append(f"config {config.key} is never used")
        if config.secret and config.default is not None:
            problems.append(f"secret {config.key} must not have a default")
        if {config.key, snake_case(config.key)} & RESERVED or config.key in seen:
            problems.append(f"bad config key {config.key!r}")
    problems.extend(f"unknown config {key}" for key in used_configs - set(configs))
    # TypeScript exports are module-level constants beside the variables.
    taken = RESERVED | modules | set(seen) | set(configs)
    problems.extend(f"export {name} clashes" for name, _ in spec.exports if name in taken)
    unused_calls = [
        step.var
        for step in spec.steps
        if isinstance(step, Invoke) and step.var not in referenced_vars(spec)
    ]
    problems.extend(f"function result {var} is never used" for var in unused_calls)
    if problems:
        raise ValueError(f"{spec.cloud} {spec.resource}: " + "; ".join(problems))


def bracketed(
    opener: str,
    items: Sequence[str],
    closer: str,
    depth: int,
    *,
    unit: str,
    inline: bool,
    pad: str = "",
    trailing: str = ",",
    width: int = 80,
    lead: int = 0,
) -> str:
    """Items on one line when they fit, otherwise one per line with a trailing separator.

    lead counts what precedes the opener on its line (a key, an assignment), and one more
    column is kept for the separator that follows the closer.
    """
    if not items:
        return opener + closer
    if inline:
        flat = f"{opener}{pad}{', '.join(items)}{pad}{closer}"
        if "\n" not in flat and len(unit) * depth + lead + len(flat) < width:
            return flat
    inner = unit * (depth + 1)
    body = "".join(f"{inner}{item}{trailing}\n" for item in items)
    return f"{opener}\n{body}{unit * depth}{closer}"


def is_invoke(spec: Spec, var: str) -> bool:
    """Whether a variable holds a function result rather than a resource."""
    return any(isinstance(s, Invoke) and s.var == var for s in spec.steps)
