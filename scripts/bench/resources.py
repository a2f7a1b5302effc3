"""The resources of a benchmark stack: their URNs and states as the CLI writes them."""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from typing import Any, Final

import orjson

from scripts.bench.client import CLI_VERSION, ORG

ENGINE_PARALLELISM: Final = 16  # steps in flight at once (journal mode interleaving)

_ADJECTIVES: Final = (
    "witty", "brave", "calm", "eager", "fancy", "gentle", "happy", "jolly", "kind", "lively",
    "merry", "nice", "proud", "quick", "silly", "tidy", "vast", "wise", "young", "zany",
)  # fmt: skip
_ANIMALS: Final = (
    "lemur", "otter", "panda", "koala", "llama", "moose", "sloth", "tapir", "zebra", "bison",
    "camel", "dingo", "egret", "finch", "gecko", "heron", "ibex", "jackal", "kiwi", "lynx",
)  # fmt: skip


@dataclass(frozen=True)
class Names:
    """The URNs of one stack's resources."""

    project: str
    stack: str

    @property
    def path(self) -> str:
        return f"/api/stacks/{ORG}/{self.project}/{self.stack}"

    def urn(self, qualified_type: str, name: str) -> str:
        return f"urn:pulumi:{self.stack}::{self.project}::{qualified_type}::{name}"

    @property
    def stack_urn(self) -> str:
        return self.urn("pulumi:pulumi:Stack", f"{self.project}-{self.stack}")

    @property
    def provider_urn(self) -> str:
        return self.urn("pulumi:providers:random", "default_4_16_0")

    @property
    def provider_id(self) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, self.provider_urn))

    def pet_urn(self, n: int) -> str:
        return self.urn("random:index/randomPet:RandomPet", f"pet-{n}")


def _timestamp(n: int) -> str:
    return f"2026-08-21T10:{(n // 60) % 60:02d}:{n % 60:02d}.{(n * 7919) % 10**9:09d}Z"


def stack_state(names: Names, outputs: dict[str, Any] | None = None) -> dict[str, Any]:
    state: dict[str, Any] = {
        "urn": names.stack_urn,
        "custom": False,
        "type": "pulumi:pulumi:Stack",
        "created": _timestamp(0),
        "modified": _timestamp(0),
    }
    if outputs:
        state["outputs"] = outputs
    return state


def provider_state(names: Names) -> dict[str, Any]:
    return {
        "urn": names.provider_urn,
        "custom": True,
        "id": names.provider_id,
        "type": "pulumi:providers:random",
        "inputs": {"__internal": {"pluginDownloadURL": ""}, "version": "4.16.0"},
        "outputs": {"version": "4.16.0"},
        "created": _timestamp(1),
        "modified": _timestamp(1),
    }


def pet_inputs(n: int) -> dict[str, Any]:
    return {
        "length": 2,
        "prefix": f"pet{n}",
        "separator": "-",
    }


def pet_state(names: Names, n: int, *, finished: bool = True) -> dict[str, Any]:
    """A RandomPet after create (finished) or as the engine registers it (begin of create)."""
    inputs = pet_inputs(n)
    pet_id = f"pet{n}-{_ADJECTIVES[n % 20]}-{_ANIMALS[(n // 20) % 20]}"
    state: dict[str, Any] = {
        "urn": names.pet_urn(n),
        "custom": True,
        "type": "random:index/randomPet:RandomPet",
        "inputs": inputs,
        "parent": names.stack_urn,
        "provider": f"{names.provider_urn}::{names.provider_id}",
    }
    if finished:
        state["id"] = pet_id
        state["outputs"] = {**inputs, "id": pet_id}
        state["created"] = _timestamp(n + 2)
        state["modified"] = _timestamp(n + 2)
    if n >= ENGINE_PARALLELISM:
        state["dependencies"] = [names.pet_urn(n - ENGINE_PARALLELISM)]
    return state


def render(value: Any) -> bytes:
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def manifest(seed: str) -> dict[str, Any]:
    # Go field order: time, magic, version (plugins omitted when empty).
    return {
        "time": "2026-08-21T10:00:00." + hashlib.sha256(seed.encode()).hexdigest()[:9] + "Z",
        "magic": hashlib.sha256(CLI_VERSION.encode()).hexdigest(),
        "version": CLI_VERSION,
    }


def secrets_provider(base_url: str, names: Names) -> dict[str, Any]:
    return {
        "type": "service",
        "state": {"url": base_url, "owner": ORG, "project": names.project, "stack": names.stack},
    }
