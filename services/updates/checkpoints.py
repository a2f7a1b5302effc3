"""Deployment texts: compression at rest, hashing, the empty deployment, and their checks.

Texts stay bytes as received; parsing happens only where a feature needs the structure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import orjson
import zstandard

from services.common import limits
from services.common.errors import InvalidArgument

# What a never-updated stack exports: decodable by every CLI (protocol §3.2.9).
EMPTY_DEPLOYMENT = (
    b'{"version":3,"deployment":{"manifest":{"time":"0001-01-01T00:00:00Z",'
    b'"magic":"","version":""}}}'
)
MIN_DEPLOYMENT_VERSION = limits.MIN_DEPLOYMENT_VERSION
MAX_DEPLOYMENT_VERSION = limits.MAX_DEPLOYMENT_VERSION
# zstd's default level: fast enough to run on every write.
COMPRESSION_LEVEL = 3


def compress(data: bytes) -> bytes:
    return zstandard.ZstdCompressor(level=COMPRESSION_LEVEL).compress(data)


def decompress(data: bytes) -> bytes:
    # Frames we write always carry their content size, so no size hint is needed.
    return zstandard.ZstdDecompressor().decompress(data)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def parse_json(data: bytes, what: str) -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise InvalidArgument(f"Bad Request: {what} is not valid JSON ({error.msg})") from None


def check_untyped_deployment(value: Any, what: str = "the deployment") -> Mapping[str, Any]:
    """Refuse what the CLI could not load back: version 1–4 and a deployment object."""
    if not isinstance(value, dict):
        raise InvalidArgument(f"Bad Request: {what} must be a JSON object")
    version = value.get("version")
    if not isinstance(version, int) or isinstance(version, bool):
        raise InvalidArgument(f"Bad Request: {what} needs an integer 'version'")
    if not MIN_DEPLOYMENT_VERSION <= version <= MAX_DEPLOYMENT_VERSION:
        raise InvalidArgument(
            f"Bad Request: deployment version {version} is not supported "
            f"(use {MIN_DEPLOYMENT_VERSION} to {MAX_DEPLOYMENT_VERSION})"
        )
    features = value.get("features")
    if features is not None and (
        not isinstance(features, list) or not all(isinstance(f, str) for f in features)
    ):
        raise InvalidArgument(f"Bad Request: 'features' of {what} must be a list of strings")
    deployment = value.get("deployment")
    if not isinstance(deployment, dict) or not deployment:
        raise InvalidArgument(f"Bad Request: {what} needs a non-empty 'deployment' object")
    check_deployment(deployment, what)
    return value


def check_deployment(deployment: Mapping[str, Any], what: str = "the deployment") -> None:
    manifest = deployment.get("manifest")
    if manifest is not None and not isinstance(manifest, dict):
        raise InvalidArgument(f"Bad Request: 'manifest' of {what} must be an object")
    resources = deployment.get("resources")
    if resources is None:
        return
    if not isinstance(resources, list):
        raise InvalidArgument(f"Bad Request: 'resources' of {what} must be a list")
    for position, resource in enumerate(resources):
        if (
            not isinstance(resource, dict)
            or not isinstance(resource.get("urn"), str)
            or not isinstance(resource.get("type"), str)
        ):
            raise InvalidArgument(
                f"Bad Request: resource {position} of {what} needs string 'urn' and 'type'"
            )


def resource_count(untyped: Mapping[str, Any]) -> int:
    deployment = untyped.get("deployment")
    if not isinstance(deployment, dict):
        return 0
    resources = deployment.get("resources")
    return len(resources) if isinstance(resources, list) else 0


def count_resources(text: bytes) -> int:
    """Resources in a stored deployment text (0 when it cannot be read)."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return 0
    return resource_count(value) if isinstance(value, dict) else 0


def service_provider_stack(untyped: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """The (owner, project, stack) a service secrets provider state names, if any."""
    deployment = untyped.get("deployment")
    if not isinstance(deployment, dict):
        return None
    provider = deployment.get("secrets_providers")
    if not isinstance(provider, dict) or provider.get("type") != "service":
        return None
    state = provider.get("state")
    if not isinstance(state, dict):
        return None
    parts = (state.get("owner"), state.get("project"), state.get("stack"))
    if not all(isinstance(part, str) and part for part in parts):
        return None
    return (str(parts[0]), str(parts[1]), str(parts[2]))


def retarget(text: bytes, stack_path: tuple[str, str, str]) -> bytes:
    """The deployment with a service secrets provider's state naming another stack path."""
    value = parse_json(text, "the deployment")
    deployment = value.get("deployment") if isinstance(value, dict) else None
    provider = deployment.get("secrets_providers") if isinstance(deployment, dict) else None
    if not isinstance(provider, dict) or provider.get("type") != "service":
        return text
    state = provider.get("state")
    if not isinstance(state, dict):
        return text
    owner, project, stack = stack_path
    state.update({"owner": owner, "project": project, "stack": stack})
    return orjson.dumps(value)
