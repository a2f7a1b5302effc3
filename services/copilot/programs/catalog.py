"""The program templates and provider spellings, read from the package's data files.

One template per (cloud, resource) in `templates/<cloud>-<resource>.yaml`; languages come
from the renderers. A value in a template is a YAML scalar or list, or a mapping tagged by
one `$` key:

- `{$ref: target.property[0].property}`: an output of an earlier step;
- `{$config: key}`: the value of a declared config key;
- `{$join: [part, ...]}`: a string assembled from literals, `$ref`s and `$config`s;
- `{$asset: text}`: file content given inline;
- `{$map: {key: value}}`: a map of free-form string keys, such as tags;
- `{$type: SchemaType, $go: GoType, $module: meta/v1, field: value, ...}`: a typed nested
  input (`$go` only when Go's type name differs, `$module` only when the type comes from
  another module than the resource's, as Kubernetes' ObjectMeta does).
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from dataclasses import fields
from importlib import resources
from typing import cast

import yaml

from services.copilot.programs.spec import (
    PROGRAMS,
    Config,
    ConfigRef,
    Fields,
    Interpolate,
    Invoke,
    Items,
    Obj,
    Provider,
    Ref,
    Resource,
    Spec,
    Step,
    StringAsset,
    StringMap,
    Value,
)

PACKAGE = "services.copilot.programs"
TEMPLATES = "templates"
_REF = re.compile(r"([^.\[\]]+)((?:\.[^.\[\]]+|\[\d+\])*)")
_REF_PART = re.compile(r"\.([^.\[\]]+)|\[(\d+)\]")


def template_names() -> list[str]:
    """File names of every template, one per (cloud, resource)."""
    return [f"{cloud}-{resource}.yaml" for resource, cloud in PROGRAMS]


def template_for(resource: str, cloud: str) -> Spec | None:
    """The program description for a resource on a cloud, or None when there is none."""
    if (resource, cloud) not in PROGRAMS:
        return None
    return _template(f"{cloud}-{resource}.yaml")


def provider_for(cloud: str) -> Provider:
    """How a cloud's provider package is spelled and set up."""
    return _providers()[cloud]


def csharp_module(module: str) -> str:
    """The C# namespace segment of a provider module."""
    return _csharp_modules()[module]


@functools.cache
def _template(name: str) -> Spec:
    text = resources.files(PACKAGE).joinpath(TEMPLATES, name).read_text(encoding="utf-8")
    return _spec(_mapping(yaml.safe_load(text), name))


@functools.cache
def _provider_file() -> Mapping[str, object]:
    text = resources.files(PACKAGE).joinpath("providers.yaml").read_text(encoding="utf-8")
    return _mapping(yaml.safe_load(text), "providers.yaml")


@functools.cache
def _providers() -> Mapping[str, Provider]:
    names = [field.name for field in fields(Provider) if field.name != "cloud"]
    found = {}
    for cloud, entry in _mapping(_provider_file()["providers"], "providers").items():
        spelled = _mapping(entry, cloud)
        found[cloud] = Provider(cloud, *(_text(spelled[name], name) for name in names))
    return found


@functools.cache
def _csharp_modules() -> Mapping[str, str]:
    modules = _mapping(_provider_file()["csharpModules"], "csharpModules")
    return {module: _text(name, module) for module, name in modules.items()}


def _spec(data: Mapping[str, object]) -> Spec:
    return Spec(
        resource=_text(data["resource"], "resource"),
        cloud=_text(data["cloud"], "cloud"),
        summary=_text(data["summary"], "summary"),
        configs=tuple(_config(_mapping(c, "config")) for c in _list(data.get("configs", []))),
        steps=tuple(_step(_mapping(s, "step")) for s in _list(data["steps"])),
        exports=_fields(_mapping(data["exports"], "exports")),
    )


def _config(data: Mapping[str, object]) -> Config:
    default = data.get("default")
    return Config(
        key=_text(data["key"], "key"),
        secret=bool(data.get("secret", False)),
        default=None if default is None else _text(default, "default"),
        example=_text(data.get("example", ""), "example"),
        purpose=_text(data.get("purpose", ""), "purpose"),
    )


def _step(data: Mapping[str, object]) -> Step:
    note = _text(data.get("note", ""), "note")
    args = _fields(_mapping(data.get("args", {}), "args"))
    if "invoke" in data:
        return Invoke(
            var=_text(data["invoke"], "invoke"),
            token=_text(data["function"], "function"),
            go_function=_text(data["goFunction"], "goFunction"),
            args=args,
            note=note,
        )
    return Resource(
        var=_text(data["resource"], "resource"),
        name=_text(data["name"], "name"),
        token=_text(data["type"], "type"),
        args=args,
        depends_on=tuple(_text(v, "dependsOn") for v in _list(data.get("dependsOn", []))),
        note=note,
    )


def _fields(data: Mapping[str, object]) -> Fields:
    return tuple((key, decode_value(value)) for key, value in data.items())


def decode_value(data: object) -> Value:
    """One template value, from its YAML form; ValueError when it is malformed."""
    if isinstance(data, str | int | float | bool):
        return data
    if isinstance(data, list):
        return Items(tuple(decode_value(item) for item in data))
    tagged = _mapping(data, "value")
    if "$type" in tagged:
        entries = {k: v for k, v in tagged.items() if not k.startswith("$")}
        go_type = _text(tagged.get("$go", ""), "$go")
        module = _text(tagged.get("$module", ""), "$module")
        return Obj(_text(tagged["$type"], "$type"), _fields(entries), go_type, module)
    if len(tagged) != 1:
        raise ValueError(f"a value mapping needs exactly one $ key, not {sorted(tagged)}")
    [(tag, inner)] = tagged.items()
    if tag == "$ref":
        return _ref(_text(inner, tag))
    if tag == "$config":
        return ConfigRef(_text(inner, tag))
    if tag == "$asset":
        return StringAsset(_text(inner, tag))
    if tag == "$map":
        return StringMap(_fields(_mapping(inner, tag)))
    if tag == "$join":
        parts = [decode_value(part) for part in _list(inner)]
        return Interpolate(tuple(_join_part(part) for part in parts))
    raise ValueError(f"unknown value tag {tag!r}")


def _join_part(value: Value) -> str | Ref | ConfigRef:
    if not isinstance(value, str | Ref | ConfigRef):
        raise ValueError(f"$join takes strings, $ref and $config, not {value!r}")
    return value


def _ref(text: str) -> Ref:
    match = _REF.fullmatch(text)
    if match is None:
        raise ValueError(f"bad $ref {text!r}")
    path: list[str | int] = []
    for name, index in _REF_PART.findall(match[2]):
        path.append(name or int(index))
    return Ref(match[1], tuple(path))


def _mapping(data: object, what: str) -> Mapping[str, object]:
    if not isinstance(data, dict) or not all(isinstance(key, str) for key in data):
        raise ValueError(f"{what} must be a mapping with string keys")
    return cast(Mapping[str, object], data)


def _list(data: object) -> list[object]:
    if not isinstance(data, list):
        raise ValueError(f"expected a list, not {data!r}")
    return cast(list[object], data)


def _text(data: object, what: str) -> str:
    if not isinstance(data, str):
        raise ValueError(f"{what} must be a string, not {data!r}")
    return data
