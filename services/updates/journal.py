"""Rebuilds a stack's deployment from the journal entries a journaling CLI uploads (protocol §4.4).

A CLI that negotiated journalVersion 1 never uploads a checkpoint: it uploads journal entries and
the server replays them over the deployment the update started from. This module is that replay,
modelled on upstream `JournalReplayer` (pulumi/pulumi `pkg/backend/journal.go`), as pure
functions over parsed JSON. Unlike upstream it never fails: a finished update must always be
finalised, so anything it cannot apply is skipped and reported in `ReplayResult.warnings`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeGuard

from services.common.errors import InvalidArgument

KIND_BEGIN: Final = 0
KIND_SUCCESS: Final = 1
KIND_FAILURE: Final = 2
KIND_REFRESH_SUCCESS: Final = 3
KIND_OUTPUTS: Final = 4
KIND_WRITE: Final = 5
KIND_SECRETS_MANAGER: Final = 6
KIND_REBUILT_BASE_STATE: Final = 7
KIND_EXTENSION_PARAMETERIZE: Final = 8
KIND_SNIPPETS: Final = 9
# State-migration entries (version 2) need journal version 2; we negotiate 1: refused.
KIND_STATE_MIGRATION: Final = 10
LAST_SUPPORTED_KIND: Final = KIND_SNIPPETS

SCHEMA_VERSION_CURRENT: Final = 3
SCHEMA_VERSION_LATEST: Final = 4

ROOT_STACK_TYPE: Final = "pulumi:pulumi:Stack"
URN_PREFIX: Final = "urn:pulumi:"

# Keys holding a base-deployment index or an operation id (int or null).
_REFERENCE_KEYS: Final = (
    "removeOld",
    "removeNew",
    "pendingReplacementOld",
    "pendingReplacementNew",
    "deleteOld",
    "deleteNew",
)
# Enough to diagnose a bad journal without letting a pathological one bloat the result.
_MAX_WARNINGS: Final = 100


@dataclass(frozen=True)
class ReplayResult:
    """The rebuilt UntypedDeployment plus what the replay had to skip."""

    deployment: dict[str, Any]
    resource_count: int
    warnings: tuple[str, ...]


# -- validation --------------------------------------------------------------------------------


def _bad(message: str) -> InvalidArgument:
    return InvalidArgument(f"Bad Request: {message}")


def _is_int(value: object) -> TypeGuard[int]:
    # JSON booleans parse to bool, which Python counts as int.
    return isinstance(value, int) and not isinstance(value, bool)


def _check_resource(value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise _bad(f"{where} must be an object")
    if not isinstance(value.get("urn"), str):
        raise _bad(f"{where}.urn must be a string")


def _check_deployment(value: object, where: str) -> None:
    if not isinstance(value, Mapping):
        raise _bad(f"{where} must be an object")
    resources = value.get("resources")
    if resources is not None:
        if not isinstance(resources, list):
            raise _bad(f"{where}.resources must be an array")
        for position, resource in enumerate(resources):
            _check_resource(resource, f"{where}.resources[{position}]")
    for key in ("pending_operations", "pendingOperations"):
        operations = value.get(key)
        if operations is not None and not isinstance(operations, list):
            raise _bad(f"{where}.{key} must be an array")


def validate_entry(entry: object) -> int:
    """Checks one uploaded entry's shape; returns its sequenceID or raises InvalidArgument."""
    if not isinstance(entry, Mapping):
        raise _bad("journal entry must be an object")
    sequence_id = entry.get("sequenceID")
    if not _is_int(sequence_id) or sequence_id < 1:
        raise _bad("journal entry sequenceID must be a positive integer")
    where = f"journal entry {sequence_id}"

    kind = entry.get("kind")
    if not _is_int(kind):
        raise _bad(f"{where}: kind must be an integer")
    if kind == KIND_STATE_MIGRATION:
        raise _bad(
            f"{where}: kind 10 (state-migration) needs journal version 2, "
            "which this server does not offer"
        )
    if not 0 <= kind <= LAST_SUPPORTED_KIND:
        raise _bad(f"{where}: unknown kind {kind}")

    # Go always writes `version`; CLIs before per-entry versions wrote 0.
    version = entry.get("version")
    if version is not None and (not _is_int(version) or version not in (0, 1)):
        raise _bad(f"{where}: unsupported journal entry version {version!r}")
    operation_id = entry.get("operationID")
    if operation_id is not None and not _is_int(operation_id):
        raise _bad(f"{where}: operationID must be an integer")
    for key in _REFERENCE_KEYS:
        value = entry.get(key)
        if value is not None and not _is_int(value):
            raise _bad(f"{where}: {key} must be an integer or null")
    for key in ("isRefresh", "requiresByteString"):
        value = entry.get(key)
        if value is not None and not isinstance(value, bool):
            raise _bad(f"{where}: {key} must be a boolean")

    state = entry.get("state")
    if state is not None:
        _check_resource(state, f"{where}: state")
    operation = entry.get("operation")
    if operation is not None:
        if not isinstance(operation, Mapping):
            raise _bad(f"{where}: operation must be an object")
        _check_resource(operation.get("resource"), f"{where}: operation.resource")
        if not isinstance(operation.get("type"), str):
            raise _bad(f"{where}: operation.type must be a string")
    secrets_provider = entry.get("secretsProvider")
    if secrets_provider is not None and (
        not isinstance(secrets_provider, Mapping)
        or not isinstance(secrets_provider.get("type"), str)
    ):
        raise _bad(f"{where}: secretsProvider must be an object with a string type")
    snippets = entry.get("snippets")
    if snippets is not None and not isinstance(snippets, list):
        raise _bad(f"{where}: snippets must be an array")
    new_snapshot = entry.get("newSnapshot")
    if new_snapshot is not None:
        _check_deployment(new_snapshot, f"{where}: newSnapshot")
    elif kind == KIND_WRITE:
        raise _bad(f"{where}: a write entry needs newSnapshot")
    extension_ref = entry.get("extensionRef")
    if extension_ref is not None and not isinstance(extension_ref, str):
        raise _bad(f"{where}: extensionRef must be a string")
    extension = entry.get("extension")
    if extension is not None and not isinstance(extension, Mapping):
        raise _bad(f"{where}: extension must be an object")
    if kind == KIND_EXTENSION_PARAMETERIZE and (extension_ref is None or extension is None):
        raise _bad(f"{where}: an extension-parameterize entry needs extensionRef and extension")
    return sequence_id


# -- replay ------------------------------------------------------------------------------------


class _Warnings:
    """Collects replay warnings, keeping the first few and counting the rest."""

    def __init__(self) -> None:
        self.messages: list[str] = []
        self.dropped = 0

    def add(self, message: str) -> None:
        if len(self.messages) < _MAX_WARNINGS:
            self.messages.append(message)
        else:
            self.dropped += 1

    def result(self) -> tuple[str, ...]:
        if self.dropped:
            return (*self.messages, f"... and {self.dropped} more warnings")
        return tuple(self.messages)


def _resources_of(value: object, where: str, warnings: _Warnings) -> list[Mapping[str, Any]]:
    if value is None:
        return []
    if not isinstance(value, list):
        warnings.add(f"{where} is not an array; treated as empty")
        return []
    kept = [item for item in value if isinstance(item, Mapping)]
    if len(kept) != len(value):
        warnings.add(f"{where}: {len(value) - len(kept)} non-object items dropped")
    return kept


def _as_deployment(value: object, where: str, warnings: _Warnings) -> dict[str, Any]:
    """Our own shallow, normalised copy of a DeploymentV3 (camel-case pending ops accepted)."""
    if not isinstance(value, Mapping):
        if value is not None:
            warnings.add(f"{where} is not an object; treated as empty")
        value = {}
    operations = value.get("pending_operations")
    if operations is None:
        # Verbatim checkpoints spell it this way.
        operations = value.get("pendingOperations")
    extensions = value.get("extensions")
    metadata = value.get("metadata")
    return {
        "secrets_providers": value.get("secrets_providers"),
        "resources": _resources_of(value.get("resources"), f"{where}.resources", warnings),
        "pending_operations": _resources_of(operations, f"{where}.pending_operations", warnings),
        "metadata": dict(metadata) if isinstance(metadata, Mapping) else {},
        "snippets": value.get("snippets"),
        "extensions": dict(extensions) if isinstance(extensions, Mapping) else {},
    }


def _rfc3339(now: datetime) -> str:
    """Formats like Go's time.RFC3339Nano, which is how the CLI writes manifest times."""
    if now.tzinfo is None:
        now = now.replace(tzinfo=UTC)
    text = now.strftime("%Y-%m-%dT%H:%M:%S")
    if now.microsecond:
        text += f".{now.microsecond:06d}".rstrip("0")
    offset = now.utcoffset() or timedelta(0)
    if offset == timedelta(0):
        return text + "Z"
    sign = "-" if offset < timedelta(0) else "+"
    minutes = abs(int(offset.total_seconds())) // 60
    return f"{text}{sign}{minutes // 60:02d}:{minutes % 60:02d}"


def _manifest(now: datetime, cli_version: str) -> dict[str, Any]:
    # Upstream deploy.Manifest.NewMagic: hex SHA-256 of the version, "" for an empty version.
    magic = hashlib.sha256(cli_version.encode()).hexdigest() if cli_version else ""
    return {"time": _rfc3339(now), "magic": magic, "version": cli_version}


def _apply_features(resource: Mapping[str, Any], features: set[str]) -> None:
    """Feature flags a resource needs, as upstream stack.ApplyFeatures records them."""
    if resource.get("refreshBeforeUpdate"):
        features.add("refreshBeforeUpdate")
    if resource.get("viewOf"):
        features.add("views")
    if resource.get("resourceHooks"):
        features.add("hooks")
    if resource.get("taint"):
        features.add("taint")
    if resource.get("replaceWith"):
        features.add("replaceWith")
    if resource.get("extensionRef"):
        features.add("extensionParameterization")


def _split_urn(urn: str) -> tuple[str, str, str, str] | None:
    if not urn.startswith(URN_PREFIX):
        return None
    parts = urn[len(URN_PREFIX) :].split("::", 3)
    if len(parts) != 4:
        return None
    return parts[0], parts[1], parts[2], parts[3]


def _qualified_type(urn: str) -> str | None:
    parts = _split_urn(urn)
    return parts[2] if parts else None


def _reparented_urn(urn: str, parent: str) -> str | None:
    """The URN `urn` gets when its parent's URN becomes `parent` (upstream resource.NewURN)."""
    parts = _split_urn(urn)
    parent_type = _qualified_type(parent)
    if parts is None or parent_type is None:
        return None
    stack, project, qualified, name = parts
    base_type = qualified.rsplit("$", 1)[-1]
    return f"{URN_PREFIX}{stack}::{project}::{parent_type}${base_type}::{name}"


def _rebuild_dependencies(resources: list[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Drops references to resources a refresh removed (upstream rebuildDependencies)."""
    # Like upstream, a reference only counts if its target comes earlier in the list.
    earlier: set[str] = set()
    rebuilt: list[Mapping[str, Any]] = []
    for resource in resources:
        changes: dict[str, Any] = {}
        dependencies = resource.get("dependencies")
        if isinstance(dependencies, list) and dependencies:
            kept = [urn for urn in dependencies if urn in earlier]
            if len(kept) != len(dependencies):
                changes["dependencies"] = kept
        property_dependencies = resource.get("propertyDependencies")
        if isinstance(property_dependencies, Mapping) and property_dependencies:
            kept_by_key: dict[str, Any] = {}
            for key, urns in property_dependencies.items():
                kept = [urn for urn in urns if urn in earlier] if isinstance(urns, list) else []
                if kept:
                    kept_by_key[key] = kept
            if kept_by_key != property_dependencies:
                changes["propertyDependencies"] = kept_by_key
        replace_with = resource.get("replaceWith")
        if isinstance(replace_with, list) and replace_with:
            kept = [urn for urn in replace_with if urn in earlier]
            if len(kept) != len(replace_with):
                changes["replaceWith"] = kept
        deleted_with = resource.get("deletedWith")
        if deleted_with and deleted_with not in earlier:
            changes["deletedWith"] = ""
        urn = resource.get("urn")
        if isinstance(urn, str):
            earlier.add(urn)
        rebuilt.append(_with_changes(resource, changes) if changes else resource)

    # Upstream undangleParentResources: a parent missing from the whole list leaves the child
    # without a parent (the "nearest ancestor" it looks up is never recorded for a missing URN).
    present = earlier
    for position, resource in enumerate(rebuilt):
        parent = resource.get("parent")
        if parent and parent not in present:
            rebuilt[position] = _with_changes(resource, {"parent": ""})
    return rebuilt


def _with_changes(resource: Mapping[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `resource` with `changes` applied; empty values are removed, as Go omits them."""
    copy = dict(resource)
    for key, value in changes.items():
        if value in ("", [], {}, None):
            copy.pop(key, None)
        else:
            copy[key] = value
    return copy


def _normalize_urn_references(
    resources: list[Mapping[str, Any]], warnings: _Warnings
) -> list[Mapping[str, Any]]:
    """Rewrites references through aliases and drops `aliases` (upstream NormalizeURNReferences)."""
    aliased: dict[str, str] = {}
    for resource in resources:
        urn = resource.get("urn")
        if not isinstance(urn, str):
            continue
        aliases = resource.get("aliases")
        for alias in aliases if isinstance(aliases, list) else ():
            if not isinstance(alias, str):
                continue
            other = aliased.get(alias)
            if other is not None and other != urn:
                warnings.add(f"resources {other} and {urn} both alias {alias}; kept the first")
                continue
            aliased[alias] = urn
        # A resource whose parent was renamed is renamed with it.
        parent = resource.get("parent")
        new_parent = aliased.get(parent) if isinstance(parent, str) and parent else None
        if new_parent and _qualified_type(new_parent) != ROOT_STACK_TYPE:
            renamed = _reparented_urn(urn, new_parent)
            if renamed is not None:
                aliased[urn] = renamed

    if not aliased:
        return [_with_changes(r, {"aliases": None}) if "aliases" in r else r for r in resources]

    def fix(urn: object) -> object:
        # One step only, as upstream does.
        return aliased.get(urn, urn) if isinstance(urn, str) else urn

    def fix_list(urns: object) -> object:
        return [fix(urn) for urn in urns] if isinstance(urns, list) else urns

    normalized: list[Mapping[str, Any]] = []
    for resource in resources:
        changes: dict[str, Any] = {"aliases": None}
        for key in ("urn", "parent", "deletedWith"):
            value = resource.get(key)
            if value and fix(value) != value:
                changes[key] = fix(value)
        for key in ("dependencies", "replaceWith"):
            value = resource.get(key)
            if value and fix_list(value) != value:
                changes[key] = fix_list(value)
        property_dependencies = resource.get("propertyDependencies")
        if isinstance(property_dependencies, Mapping) and property_dependencies:
            fixed = {key: fix_list(urns) for key, urns in property_dependencies.items()}
            if fixed != property_dependencies:
                changes["propertyDependencies"] = fixed
        provider = resource.get("provider")
        if isinstance(provider, str) and "::" in provider:
            # A provider reference is "<provider URN>::<provider ID>".
            provider_urn, provider_id = provider.rsplit("::", 1)
            fixed_urn = fix(provider_urn)
            if fixed_urn != provider_urn:
                changes["provider"] = f"{fixed_urn}::{provider_id}"
        if len(changes) > 1 or "aliases" in resource:
            normalized.append(_with_changes(resource, changes))
        else:
            normalized.append(resource)
    return normalized


class _Replayer:
    """Upstream JournalReplayer's bookkeeping over one base deployment."""

    def __init__(
        self, base: dict[str, Any], base_features: frozenset[str], warnings: _Warnings
    ) -> None:
        self.base = base
        self.base_features = base_features
        self.warnings = warnings
        self.has_refresh = False
        self.requires_byte_string = False
        self._reset()

    def _reset(self) -> None:
        self.new_resources: list[Mapping[str, Any]] = []
        self.operation_index: dict[int, int] = {}
        self.removed_operations: set[int] = set()
        self.removed_base: set[int] = set()
        self.replaced_base: dict[int, Mapping[str, Any]] = {}
        self.deleted_base: set[int] = set()
        self.pending_replacement_base: set[int] = set()
        self.incomplete: dict[int, Mapping[str, Any]] = {}
        self.extensions: dict[str, Any] = {}

    def _new_position(self, operation_id: int, sequence_id: int, key: str) -> int | None:
        position = self.operation_index.get(operation_id)
        if position is None:
            self.warnings.add(
                f"entry {sequence_id}: {key} refers to unknown operation {operation_id}; ignored"
            )
        return position

    def add(self, entry: Mapping[str, Any], sequence_id: int, is_last: bool) -> None:
        kind = entry["kind"]
        operation_id = entry.get("operationID") or 0
        state = entry.get("state")
        remove_old = entry.get("removeOld")
        remove_new = entry.get("removeNew")
        if entry.get("requiresByteString"):
            self.requires_byte_string = True

        if kind == KIND_BEGIN:
            self.incomplete[operation_id] = entry
        elif kind == KIND_SUCCESS:
            self.incomplete.pop(operation_id, None)
            if state is not None:
                self.operation_index[operation_id] = len(self.new_resources)
                self.new_resources.append(state)
            if remove_old is not None:
                self.removed_base.add(remove_old)
            if remove_new is not None:
                self._remove_new(remove_new, sequence_id)
            if entry.get("deleteOld") is not None:
                self.deleted_base.add(entry["deleteOld"])
            if entry.get("deleteNew") is not None:
                self._flag_new(entry["deleteNew"], "delete", sequence_id, "deleteNew")
            if entry.get("pendingReplacementOld") is not None:
                self.pending_replacement_base.add(entry["pendingReplacementOld"])
            if entry.get("pendingReplacementNew") is not None:
                self._flag_new(
                    entry["pendingReplacementNew"],
                    "pendingReplacement",
                    sequence_id,
                    "pendingReplacementNew",
                )
            if entry.get("isRefresh"):
                self.has_refresh = True
        elif kind == KIND_FAILURE:
            self.incomplete.pop(operation_id, None)
        elif kind == KIND_REFRESH_SUCCESS:
            self.incomplete.pop(operation_id, None)
            self.has_refresh = True
            if remove_old is not None:
                if state is None:
                    self.removed_base.add(remove_old)
                else:
                    self.replaced_base[remove_old] = state
            if remove_new is not None:
                if state is None:
                    self._remove_new(remove_new, sequence_id)
                else:
                    self._replace_new(remove_new, state, sequence_id)
        elif kind == KIND_OUTPUTS:
            if state is not None and remove_old is not None:
                self.replaced_base[remove_old] = state
            if remove_new is not None:
                # Upstream checks the operation exists even when there is no state.
                position = self._new_position(remove_new, sequence_id, "removeNew")
                if position is not None and state is not None:
                    self.new_resources[position] = state
        elif kind == KIND_WRITE:
            # Upstream expects this before any entry that touches the base, and keeps the
            # bookkeeping as it is.
            self.base = _as_deployment(
                entry["newSnapshot"], f"entry {sequence_id}: newSnapshot", self.warnings
            )
            self.base_features = frozenset()
        elif kind == KIND_SECRETS_MANAGER:
            provider = entry.get("secretsProvider")
            current = self.base.get("secrets_providers")
            if provider is None:
                if current is not None:
                    self.warnings.add(
                        f"entry {sequence_id}: secrets-manager entry without secretsProvider; "
                        "kept the existing one"
                    )
            elif not _same_secrets_provider(current, provider):
                # Keeping an identical provider avoids re-encrypting secrets on every update.
                self.base["secrets_providers"] = provider
        elif kind == KIND_SNIPPETS:
            self.base["snippets"] = entry.get("snippets")
        elif kind == KIND_REBUILT_BASE_STATE:
            if self.new_resources and not is_last:
                self.warnings.add(
                    f"entry {sequence_id}: rebuilt-base-state with {len(self.new_resources)} new "
                    "resources is not the last entry"
                )
            deployment, features = self.generate()
            self.base = deployment
            self.base_features = frozenset(features)
            self._reset()
        elif kind == KIND_EXTENSION_PARAMETERIZE:
            self.extensions[entry["extensionRef"]] = entry["extension"]

    def _remove_new(self, operation_id: int, sequence_id: int) -> None:
        if self._new_position(operation_id, sequence_id, "removeNew") is not None:
            self.removed_operations.add(operation_id)

    def _replace_new(self, operation_id: int, state: Mapping[str, Any], sequence_id: int) -> None:
        position = self._new_position(operation_id, sequence_id, "removeNew")
        if position is not None:
            self.new_resources[position] = state

    def _flag_new(self, operation_id: int, flag: str, sequence_id: int, key: str) -> None:
        position = self._new_position(operation_id, sequence_id, key)
        if position is not None:
            self.new_resources[position] = {**self.new_resources[position], flag: True}

    def _warn_out_of_range(self, count: int) -> None:
        referenced = (
            self.removed_base
            | self.deleted_base
            | self.pending_replacement_base
            | self.replaced_base.keys()
        )
        for index in sorted(i for i in referenced if not 0 <= i < count):
            self.warnings.add(
                f"base resource index {index} is out of range (base has {count}); ignored"
            )

    def generate(self) -> tuple[dict[str, Any], list[str]]:
        """The DeploymentV3 the entries so far produce, and the features it needs."""
        features: set[str] = set()
        removed_positions = {self.operation_index[op] for op in self.removed_operations}
        resources = [
            resource
            for position, resource in enumerate(self.new_resources)
            if position not in removed_positions
        ]
        base_resources = self.base["resources"]
        self._warn_out_of_range(len(base_resources))
        for index, resource in enumerate(base_resources):
            if index in self.removed_base:
                continue
            state = self.replaced_base.get(index, resource)
            is_deleted = index in self.deleted_base
            is_pending = index in self.pending_replacement_base
            if is_deleted or is_pending:
                state = dict(state)
                if is_deleted:
                    state["delete"] = True
                if is_pending:
                    state["pendingReplacement"] = True
            resources.append(state)

        operations: list[Mapping[str, Any]] = [
            entry["operation"] for entry in self.incomplete.values() if entry.get("operation")
        ]
        # Pending creates need a human to resolve them, so they are never cleared here.
        operations.extend(
            op for op in self.base["pending_operations"] if op.get("type") == "creating"
        )

        for resource in resources:
            _apply_features(resource, features)
        for operation in operations:
            resource = operation.get("resource")
            if isinstance(resource, Mapping):
                _apply_features(resource, features)
        # Byte strings hide inside secrets, so only the uploader's flag (or the base's
        # feature list) can tell that they are there.
        if self.requires_byte_string or "byteString" in self.base_features:
            features.add("byteString")

        if self.has_refresh:
            resources = _rebuild_dependencies(resources)
        resources = _normalize_urn_references(resources, self.warnings)

        # Upstream copies the base's extensions over the recorded ones, so the base wins.
        extensions = {**self.extensions, **self.base["extensions"]}
        snippets = self.base.get("snippets")
        if snippets:
            features.add("snippets-prototype")
        deployment: dict[str, Any] = {
            "secrets_providers": self.base.get("secrets_providers"),
            "resources": resources,
            "pending_operations": operations,
            "metadata": self.base["metadata"],
            "snippets": snippets,
            "extensions": extensions,
        }
        return deployment, sorted(features)


def _same_secrets_provider(current: object, provider: Mapping[str, Any]) -> bool:
    return (
        isinstance(current, Mapping)
        and current.get("type") == provider.get("type")
        and current.get("state") == provider.get("state")
    )


def _collect(entries: Iterable[Mapping[str, Any]], warnings: _Warnings) -> list[Mapping[str, Any]]:
    """Valid entries, one per sequenceID (the last received wins), in sequenceID order."""
    by_sequence: dict[int, Mapping[str, Any]] = {}
    for entry in entries:
        try:
            sequence_id = validate_entry(entry)
        except InvalidArgument as error:
            warnings.add(f"skipped an entry: {error.message}")
            continue
        previous = by_sequence.get(sequence_id)
        if previous is not None and previous != entry:
            warnings.add(f"entry {sequence_id} was uploaded twice with different content")
        by_sequence[sequence_id] = entry
    ordered = [by_sequence[sequence_id] for sequence_id in sorted(by_sequence)]
    if ordered and len(ordered) != ordered[-1]["sequenceID"]:
        warnings.add(
            f"journal has gaps: {len(ordered)} entries up to sequenceID {ordered[-1]['sequenceID']}"
        )
    return ordered


def replay(
    base: Mapping[str, Any] | None,
    entries: Iterable[Mapping[str, Any]],
    *,
    now: datetime,
    cli_version: str = "",
) -> ReplayResult:
    """Rebuilds the UntypedDeployment an update's journal entries produce over `base`."""
    warnings = _Warnings()
    base_features: frozenset[str] = frozenset()
    deployment_value: object = None
    if base is not None:
        deployment_value = base.get("deployment")
        features_value = base.get("features")
        if isinstance(features_value, list):
            base_features = frozenset(f for f in features_value if isinstance(f, str))
    replayer = _Replayer(
        _as_deployment(deployment_value, "base deployment", warnings), base_features, warnings
    )

    ordered = _collect(entries, warnings)
    last = len(ordered) - 1
    for position, entry in enumerate(ordered):
        replayer.add(entry, entry["sequenceID"], position == last)
    generated, features = replayer.generate()

    # Go's field order; empty optional fields are omitted as Go's omitempty does.
    deployment: dict[str, Any] = {"manifest": _manifest(now, cli_version)}
    if generated["secrets_providers"] is not None:
        deployment["secrets_providers"] = generated["secrets_providers"]
    if generated["resources"]:
        deployment["resources"] = generated["resources"]
    if generated["pending_operations"]:
        deployment["pending_operations"] = generated["pending_operations"]
    deployment["metadata"] = generated["metadata"]
    if generated["snippets"]:
        deployment["snippets"] = generated["snippets"]
    if generated["extensions"]:
        deployment["extensions"] = generated["extensions"]

    untyped: dict[str, Any] = {
        "version": SCHEMA_VERSION_LATEST if features else SCHEMA_VERSION_CURRENT
    }
    if features:
        untyped["features"] = features
    untyped["deployment"] = deployment
    return ReplayResult(
        deployment=untyped,
        resource_count=len(generated["resources"]),
        warnings=warnings.result(),
    )
