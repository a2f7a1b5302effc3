"""The console's reading of an exported deployment (Pulumi's checkpoint JSON).

Pure functions over `{"version": 3, "deployment": {"resources": [...]}}`: resources with their
inputs, outputs, parent, provider and dependencies, grouped by type, secrets masked.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

SIG_KEY = "4dabf18193072939515e22adb298388d"
SECRET_SIG = "1b47061264138c4ac30d75fd1eb44270"
# An output value (`{sig, value, secret, dependencies}`) is secret when it says so.
OUTPUT_VALUE_SIG = "d0e6a833031e9bbcd3f4e8bde6ca49a4"
MASK = "[secret]"
STACK_TYPE = "pulumi:pulumi:Stack"


class DeploymentError(ValueError):
    """The exported text is not a deployment the console can read."""


def is_secret(value: Any) -> bool:
    """A secret as the engine writes it: the sig key naming a secret, or a secret output."""
    if not isinstance(value, dict) or SIG_KEY not in value:
        return False
    sig = value[SIG_KEY]
    return sig == SECRET_SIG or (sig == OUTPUT_VALUE_SIG and value.get("secret") is True)


def mask_secrets(value: Any) -> Any:
    """A copy of a property value with every secret, at any depth, replaced by the mask."""
    if is_secret(value):
        return MASK
    if isinstance(value, dict):
        return {key: mask_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [mask_secrets(item) for item in value]
    return value


def urn_name(urn: str) -> str:
    """The resource's name: what follows the last `::` of its URN."""
    return urn.rsplit("::", 1)[-1] if "::" in urn else urn


def provider_urn(reference: str) -> str:
    """A provider reference is `<urn>::<id>`; the URN part."""
    urn, separator, _ = reference.rpartition("::")
    return urn if separator and urn.startswith("urn:") else reference


def pretty(value: Any) -> str:
    """Masked JSON, indented, for display."""
    return orjson.dumps(mask_secrets(value), option=orjson.OPT_INDENT_2).decode()


def _strings(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


@dataclass(frozen=True)
class Resource:
    """One resource state; inputs and outputs already masked."""

    urn: str
    type: str
    id: str = ""
    is_custom: bool = False
    parent: str = ""
    provider: str = ""
    dependencies: tuple[str, ...] = ()
    inputs: Mapping[str, Any] = field(default_factory=dict)
    outputs: Mapping[str, Any] = field(default_factory=dict)
    is_protected: bool = False
    is_external: bool = False
    is_pending_deletion: bool = False

    @property
    def name(self) -> str:
        return urn_name(self.urn)

    @property
    def provider_urn(self) -> str:
        return provider_urn(self.provider) if self.provider else ""

    @property
    def search_text(self) -> str:
        """What the console's resource search matches: name, type and URN."""
        return f"{self.name} {self.type} {self.urn}".lower()


@dataclass(frozen=True)
class TypeGroup:
    type: str
    resources: tuple[Resource, ...]


@dataclass(frozen=True)
class Deployment:
    resources: tuple[Resource, ...] = ()

    def find(self, urn: str) -> Resource | None:
        return next((r for r in self.resources if r.urn == urn), None)

    def children(self, urn: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if r.parent == urn)

    def dependents(self, urn: str) -> tuple[Resource, ...]:
        return tuple(r for r in self.resources if urn in r.dependencies)

    @property
    def stack_outputs(self) -> Mapping[str, Any]:
        """The root stack resource's outputs (masked)."""
        for resource in self.resources:
            if resource.type == STACK_TYPE and not resource.parent:
                return resource.outputs
        return {}

    def groups(self, query: str = "") -> tuple[TypeGroup, ...]:
        """Resources matching `query` (case-insensitive), grouped by type, types sorted."""
        needle = query.strip().lower()
        by_type: dict[str, list[Resource]] = {}
        for resource in self.resources:
            if needle and needle not in resource.search_text:
                continue
            by_type.setdefault(resource.type, []).append(resource)
        return tuple(
            TypeGroup(type=name, resources=tuple(sorted(items, key=lambda r: r.name)))
            for name, items in sorted(by_type.items())
        )


def _resource(raw: Any) -> Resource | None:
    if not isinstance(raw, dict) or not isinstance(raw.get("urn"), str):
        return None
    urn: str = raw["urn"]
    resource_type = raw.get("type")
    return Resource(
        urn=urn,
        type=resource_type if isinstance(resource_type, str) else "",
        id=raw["id"] if isinstance(raw.get("id"), str) else "",
        is_custom=raw.get("custom") is True,
        parent=raw["parent"] if isinstance(raw.get("parent"), str) else "",
        provider=raw["provider"] if isinstance(raw.get("provider"), str) else "",
        dependencies=_strings(raw.get("dependencies")),
        inputs=mask_secrets(_object(raw.get("inputs"))),
        outputs=mask_secrets(_object(raw.get("outputs"))),
        is_protected=raw.get("protect") is True,
        is_external=raw.get("external") is True,
        is_pending_deletion=raw.get("delete") is True,
    )


def parse_deployment(text: bytes) -> Deployment:
    """Read an UntypedDeployment (`{version, deployment}`); empty text is an empty stack."""
    if not text.strip():
        return Deployment()
    try:
        document = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        raise DeploymentError(f"the deployment is not JSON: {error}") from None
    if not isinstance(document, dict):
        raise DeploymentError("the deployment is not a JSON object")
    body = document.get("deployment", document)
    if not isinstance(body, dict):
        raise DeploymentError("'deployment' is not a JSON object")
    raw_resources = body.get("resources")
    if raw_resources is None:
        raw_resources = []
    if not isinstance(raw_resources, list):
        raise DeploymentError("'deployment.resources' is not a list")
    resources = tuple(r for r in (_resource(raw) for raw in raw_resources) if r is not None)
    return Deployment(resources=resources)
