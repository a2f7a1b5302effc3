"""Journal replay: rebuilding a deployment from the entries a journaling CLI uploads (§4.4)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from services.common.errors import InvalidArgument
from services.updates.journal import ReplayResult, replay, validate_entry

NOW = datetime(2026, 8, 21, 10, 0, 0, 123456, tzinfo=UTC)
CLI_VERSION = "v3.200.0"

STACK = "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev"
PROVIDER = "urn:pulumi:dev::web::pulumi:providers:random::default_4_16_0"
PROVIDER_REF = f"{PROVIDER}::prov-id"
PET_TYPE = "random:index/randomPet:RandomPet"
SECRETS = {"type": "service", "state": {"url": "https://cairn.example", "stack": "web/dev"}}


def pet_urn(name: str) -> str:
    return f"urn:pulumi:dev::web::{PET_TYPE}::{name}"


def stack_state(**extra: Any) -> dict[str, Any]:
    return {"urn": STACK, "custom": False, "type": "pulumi:pulumi:Stack", **extra}


def provider_state() -> dict[str, Any]:
    return {"urn": PROVIDER, "custom": True, "id": "prov-id", "type": "pulumi:providers:random"}


def pet(name: str, **extra: Any) -> dict[str, Any]:
    return {
        "urn": pet_urn(name),
        "custom": True,
        "id": f"{name}-id",
        "type": PET_TYPE,
        "inputs": {"length": 2},
        "parent": STACK,
        "provider": PROVIDER_REF,
        **extra,
    }


class Journal:
    """Numbers entries and operations the way the CLI's JournalSnapshotManager does."""

    def __init__(self) -> None:
        self.entries: list[dict[str, Any]] = []
        self.operation_id = 0

    def add(self, kind: int, operation_id: int = 0, **fields: Any) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "version": 1,
            "kind": kind,
            "sequenceID": len(self.entries) + 1,
            "operationID": operation_id,
            "removeOld": None,
            "removeNew": None,
            **fields,
        }
        self.entries.append(entry)
        return entry

    def next_operation(self) -> int:
        self.operation_id += 1
        return self.operation_id

    def secrets(self, provider: Mapping[str, Any] = SECRETS) -> None:
        self.add(6, secretsProvider=dict(provider))

    def begin(self, operation: Mapping[str, Any] | None = None) -> int:
        operation_id = self.next_operation()
        if operation is None:
            self.add(0, operation_id)
        else:
            self.add(0, operation_id, operation=dict(operation))
        return operation_id

    def create(self, state: dict[str, Any], **fields: Any) -> int:
        operation_id = self.begin({"resource": state, "type": "creating"})
        self.add(1, operation_id, state=state, **fields)
        return operation_id

    def same(self, state: dict[str, Any], base_index: int) -> int:
        operation_id = self.begin()
        self.add(1, operation_id, state=state, removeOld=base_index)
        return operation_id

    def delete(self, old: dict[str, Any], base_index: int) -> None:
        operation_id = self.begin({"resource": old, "type": "deleting"})
        self.add(1, operation_id, removeOld=base_index)

    def outputs(self, state: dict[str, Any], **where: int) -> None:
        self.add(4, self.next_operation(), state=state, **where)

    def refresh(self, base_index: int, state: dict[str, Any] | None) -> None:
        operation_id = self.begin()
        fields: dict[str, Any] = {"isRefresh": True, "removeOld": base_index}
        if state is not None:
            fields["state"] = state
        self.add(3, operation_id, **fields)


def run(base: Mapping[str, Any] | None, entries: list[dict[str, Any]]) -> ReplayResult:
    return replay(base, entries, now=NOW, cli_version=CLI_VERSION)


def resources(result: ReplayResult) -> list[dict[str, Any]]:
    listed: list[dict[str, Any]] = result.deployment["deployment"].get("resources", [])
    return listed


def urns(result: ReplayResult) -> list[str]:
    return [resource["urn"] for resource in resources(result)]


def untyped(*states: dict[str, Any], **deployment: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "manifest": {"time": "2026-08-01T00:00:00Z", "magic": "", "version": ""},
        "secrets_providers": SECRETS,
        "resources": list(states),
        "metadata": {},
        **deployment,
    }
    return {"version": 3, "deployment": body}


def fresh_up(count: int) -> tuple[Journal, dict[str, Any]]:
    """Entries of a first `up` creating the stack, a provider and `count` pets."""
    journal = Journal()
    journal.secrets()
    stack_operation = journal.create(stack_state())
    journal.create(provider_state())
    for number in range(count):
        journal.create(pet(f"p{number}"))
    final_stack = stack_state(outputs={"names": [f"p{n}" for n in range(count)]})
    journal.outputs(final_stack, removeNew=stack_operation)
    return journal, final_stack


# -- up, second up, destroy -------------------------------------------------------------------


def test_fresh_up_builds_the_stack() -> None:
    journal, final_stack = fresh_up(3)

    result = run(None, journal.entries)

    assert result.warnings == ()
    assert result.resource_count == 5
    assert urns(result) == [STACK, PROVIDER, pet_urn("p0"), pet_urn("p1"), pet_urn("p2")]
    assert resources(result)[0] == final_stack
    assert resources(result)[2] == pet("p0")
    assert result.deployment["version"] == 3
    assert "features" not in result.deployment
    deployment = result.deployment["deployment"]
    assert list(deployment) == ["manifest", "secrets_providers", "resources", "metadata"]
    assert deployment["secrets_providers"] == SECRETS
    assert deployment["metadata"] == {}
    assert deployment["manifest"] == {
        "time": "2026-08-21T10:00:00.123456Z",
        "magic": hashlib.sha256(CLI_VERSION.encode()).hexdigest(),
        "version": CLI_VERSION,
    }


def test_manifest_time_and_magic_follow_go() -> None:
    journal, _ = fresh_up(0)
    offset = timezone(timedelta(hours=2))

    whole_second = replay(None, journal.entries, now=datetime(2026, 1, 2, 3, 4, 5, tzinfo=offset))
    naive = replay(None, journal.entries, now=datetime(2026, 1, 2, 3, 4, 5, 500000))

    assert whole_second.deployment["deployment"]["manifest"] == {
        "time": "2026-01-02T03:04:05+02:00",
        "magic": "",
        "version": "",
    }
    assert naive.deployment["deployment"]["manifest"]["time"] == "2026-01-02T03:04:05.5Z"


def test_second_identical_up_keeps_every_resource() -> None:
    first_journal, final_stack = fresh_up(3)
    base = run(None, first_journal.entries).deployment
    journal = Journal()
    journal.secrets()
    stack_operation = journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    for number in range(3):
        journal.same(pet(f"p{number}"), number + 2)
    journal.outputs(final_stack, removeNew=stack_operation)

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("p0"), pet_urn("p1"), pet_urn("p2")]
    assert resources(result) == base["deployment"]["resources"]
    assert result.deployment["deployment"]["secrets_providers"] == SECRETS


def test_destroy_leaves_no_resources() -> None:
    first_journal, final_stack = fresh_up(2)
    base = run(None, first_journal.entries).deployment
    journal = Journal()
    journal.secrets()
    journal.delete(pet("p1"), 3)
    journal.delete(pet("p0"), 2)
    journal.delete(provider_state(), 1)
    journal.delete(final_stack, 0)

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert result.resource_count == 0
    assert list(result.deployment["deployment"]) == ["manifest", "secrets_providers", "metadata"]


def test_secrets_manager_entry_replaces_a_different_provider() -> None:
    journal = Journal()
    journal.secrets({"type": "passphrase", "state": {"salt": "v1:abc"}})

    result = run(untyped(stack_state()), journal.entries)

    assert result.deployment["deployment"]["secrets_providers"] == {
        "type": "passphrase",
        "state": {"salt": "v1:abc"},
    }
    assert urns(result) == [STACK]


# -- replacements and failures ----------------------------------------------------------------


def test_create_before_delete_replacement() -> None:
    base = untyped(stack_state(), provider_state(), pet("a"))
    replacement = pet("a", id="a-2", inputs={"length": 3})
    journal = Journal()
    journal.secrets()
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    journal.create(replacement, deleteOld=2)
    halfway = run(base, list(journal.entries))
    journal.delete(pet("a"), 2)

    result = run(base, journal.entries)

    assert urns(halfway) == [STACK, PROVIDER, pet_urn("a"), pet_urn("a")]
    assert resources(halfway)[2] == replacement
    assert resources(halfway)[3] == {**pet("a"), "delete": True}
    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("a")]
    assert resources(result)[2] == replacement


def test_delete_before_replace_marks_pending_replacement() -> None:
    base = untyped(stack_state(), provider_state(), pet("a"))
    replacement = pet("a", id="a-2")
    journal = Journal()
    journal.secrets()
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    deleting = journal.begin({"resource": pet("a"), "type": "deleting"})
    journal.add(1, deleting, pendingReplacementOld=2)
    halfway = run(base, list(journal.entries))
    journal.create(replacement, removeOld=2)

    result = run(base, journal.entries)

    assert urns(halfway) == [STACK, PROVIDER, pet_urn("a")]
    assert resources(halfway)[2] == {**pet("a"), "pendingReplacement": True}
    assert urns(result) == [STACK, PROVIDER, pet_urn("a")]
    assert resources(result)[2] == replacement


def test_new_resource_flags_from_delete_new_and_pending_replacement_new() -> None:
    journal = Journal()
    journal.secrets()
    journal.create(stack_state())
    first = journal.create(pet("a"))
    journal.create(pet("b"))
    journal.add(1, journal.next_operation(), deleteNew=first)
    journal.add(1, journal.next_operation(), pendingReplacementNew=first)

    result = run(None, journal.entries)

    assert urns(result) == [STACK, pet_urn("a"), pet_urn("b")]
    assert resources(result)[1] == {**pet("a"), "delete": True, "pendingReplacement": True}
    assert resources(result)[2] == pet("b")


def test_failures_change_nothing() -> None:
    base = untyped(stack_state(), provider_state(), pet("a"))
    changed = pet("a", inputs={"length": 9})
    journal = Journal()
    journal.secrets()
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    updating = journal.begin({"resource": changed, "type": "updating"})
    # The CLI sends the failed step's state and old index too; replay must ignore them.
    journal.add(2, updating, state=changed, removeOld=2)
    creating = journal.begin({"resource": pet("b"), "type": "creating"})
    journal.add(2, creating, state=pet("b"))

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("a")]
    assert resources(result)[2] == pet("a")
    assert "pending_operations" not in result.deployment["deployment"]


def test_interrupted_update_keeps_pending_operations() -> None:
    stuck_create = {"resource": pet("x"), "type": "creating"}
    stuck_delete = {"resource": pet("y"), "type": "deleting"}
    base = untyped(stack_state(), pendingOperations=[stuck_create, stuck_delete])
    journal = Journal()
    journal.secrets()
    journal.same(stack_state(), 0)
    journal.create(provider_state())
    in_flight = {"resource": pet("p0"), "type": "creating"}
    journal.begin(in_flight)
    journal.create(pet("p1"))

    result = run(base, journal.entries)

    deployment = result.deployment["deployment"]
    assert urns(result) == [STACK, PROVIDER, pet_urn("p1")]
    assert deployment["pending_operations"] == [in_flight, stuck_create]
    assert list(deployment) == [
        "manifest",
        "secrets_providers",
        "resources",
        "pending_operations",
        "metadata",
    ]


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_order_and_duplicates_do_not_matter(data: st.DataObject) -> None:
    journal, _ = fresh_up(4)
    expected = run(None, journal.entries)
    shuffled = data.draw(st.permutations(journal.entries))
    repeats = data.draw(st.lists(st.sampled_from(journal.entries), max_size=8))

    result = run(None, [*shuffled, *repeats])

    assert result == expected
    assert result.warnings == ()


# -- refresh, write, rebuilt base state -------------------------------------------------------


def test_refresh_drops_a_deleted_resource_and_dangling_references() -> None:
    a = pet_urn("a")
    dependent = pet(
        "b",
        dependencies=[a],
        propertyDependencies={"prefix": [a], "length": []},
        deletedWith=a,
        replaceWith=[a],
    )
    child = pet("c", parent=a)
    base = untyped(stack_state(), provider_state(), pet("a"), dependent, child)
    refreshed = {**dependent, "outputs": {"id": "b-id", "length": 2}}
    journal = Journal()
    journal.secrets()
    journal.refresh(0, stack_state())
    journal.refresh(1, provider_state())
    journal.refresh(2, None)
    journal.refresh(3, refreshed)
    journal.refresh(4, child)

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("b"), pet_urn("c")]
    assert resources(result)[2] == {
        **pet("b"),
        "outputs": {"id": "b-id", "length": 2},
    }
    # Upstream leaves a child whose parent vanished without any parent.
    assert "parent" not in resources(result)[3]
    assert "replaceWith" in dependent  # inputs are never mutated


def test_write_entry_rebases_before_the_steps() -> None:
    legacy = pet("a", provider="")
    base = untyped(stack_state(), legacy)
    rebased = untyped(stack_state(), provider_state(), pet("a"))["deployment"]
    journal = Journal()
    journal.secrets()
    journal.add(5, newSnapshot=rebased)
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    journal.same(pet("a"), 2)

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("a")]
    assert resources(result)[2]["provider"] == PROVIDER_REF


def test_rebuilt_base_state_after_refresh_resets_indices() -> None:
    base = untyped(stack_state(), provider_state(), pet("a"), pet("b"))
    refreshed_a = pet("a", outputs={"id": "a-id", "length": 2})
    journal = Journal()
    journal.secrets()
    journal.refresh(0, stack_state())
    journal.refresh(1, provider_state())
    journal.refresh(2, refreshed_a)
    journal.refresh(3, None)
    journal.add(7)
    # Indices now point into the rebuilt base [stack, provider, a'].
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    journal.same(refreshed_a, 2)
    journal.create(pet("c"))

    result = run(base, journal.entries)

    assert result.warnings == ()
    assert urns(result) == [STACK, PROVIDER, pet_urn("a"), pet_urn("c")]
    assert resources(result)[2] == refreshed_a


# -- normalisation, features, extensions ------------------------------------------------------


def test_aliases_rewrite_references_and_are_dropped() -> None:
    old_component = "urn:pulumi:dev::web::my:index:Old::comp"
    new_component = "urn:pulumi:dev::web::my:index:New::comp"
    old_child = f"urn:pulumi:dev::web::my:index:Old${PET_TYPE}::c"
    new_child = f"urn:pulumi:dev::web::my:index:New${PET_TYPE}::c"
    component = {"urn": old_component, "custom": False, "type": "my:index:Old", "parent": STACK}
    child = pet("c", urn=old_child, parent=old_component)
    consumer = pet("d", dependencies=[old_child], propertyDependencies={"x": [old_child]})
    base = untyped(stack_state(), provider_state(), component, child, consumer)
    renamed = {
        "urn": new_component,
        "custom": False,
        "type": "my:index:New",
        "parent": STACK,
        "aliases": [old_component],
    }
    journal = Journal()
    journal.secrets()
    journal.same(stack_state(), 0)
    journal.same(provider_state(), 1)
    journal.same(renamed, 2)

    result = run(base, journal.entries)

    listed = resources(result)
    assert urns(result) == [STACK, PROVIDER, new_component, new_child, pet_urn("d")]
    assert "aliases" not in listed[2]
    assert listed[3]["parent"] == new_component
    assert listed[4]["dependencies"] == [new_child]
    assert listed[4]["propertyDependencies"] == {"x": [new_child]}


def test_conflicting_aliases_warn_instead_of_failing() -> None:
    journal = Journal()
    journal.create(pet("a", aliases=[pet_urn("old")]))
    journal.create(pet("b", aliases=[pet_urn("old")]))

    result = run(None, journal.entries)

    assert urns(result) == [pet_urn("a"), pet_urn("b")]
    assert len(result.warnings) == 1
    assert "both alias" in result.warnings[0]


def test_features_raise_the_schema_version() -> None:
    journal = Journal()
    journal.secrets()
    journal.create(stack_state())
    journal.create(pet("a", taint=True), requiresByteString=True)
    journal.create(pet("v", viewOf=pet_urn("a")))
    journal.add(9, snippets=[{"id": "s1"}])

    result = run(None, journal.entries)

    assert result.deployment["version"] == 4
    assert result.deployment["features"] == ["byteString", "snippets-prototype", "taint", "views"]
    assert result.deployment["deployment"]["snippets"] == [{"id": "s1"}]
    assert list(result.deployment) == ["version", "features", "deployment"]


def test_extensions_merge_with_the_base_winning() -> None:
    base = untyped(stack_state(), extensions={"r0": {"name": "base"}, "r1": {"name": "old"}})
    journal = Journal()
    journal.add(8, extensionRef="r1", extension={"name": "new"})
    journal.add(8, extensionRef="r2", extension={"name": "added"})

    result = run(base, journal.entries)

    assert result.deployment["deployment"]["extensions"] == {
        "r0": {"name": "base"},
        "r1": {"name": "old"},
        "r2": {"name": "added"},
    }


# -- validation and tolerance -----------------------------------------------------------------


def valid_entry(**fields: Any) -> dict[str, Any]:
    return {
        "version": 1,
        "kind": 1,
        "sequenceID": 3,
        "operationID": 2,
        "removeOld": None,
        "removeNew": None,
        **fields,
    }


def test_validate_entry_returns_the_sequence_id() -> None:
    assert validate_entry(valid_entry()) == 3
    assert validate_entry(valid_entry(state=pet("a"), snippets=None, isRefresh=None)) == 3
    assert validate_entry({"kind": 0, "sequenceID": 1}) == 1


@pytest.mark.parametrize(
    "entry",
    [
        [],
        "entry",
        None,
        valid_entry(sequenceID=0),
        valid_entry(sequenceID=-4),
        valid_entry(sequenceID="3"),
        valid_entry(sequenceID=True),
        {"kind": 1},
        valid_entry(kind=None),
        valid_entry(kind="1"),
        valid_entry(kind=True),
        valid_entry(kind=-1),
        valid_entry(kind=11),
        valid_entry(kind=10, version=2, removeOlds=[0], states=[pet("a")]),
        valid_entry(version=2),
        valid_entry(operationID="2"),
        valid_entry(operationID=1.5),
        valid_entry(removeOld="2"),
        valid_entry(removeNew=1.0),
        valid_entry(deleteOld=True),
        valid_entry(pendingReplacementNew=[1]),
        valid_entry(state=[]),
        valid_entry(state={"id": "x"}),
        valid_entry(operation="creating"),
        valid_entry(operation={"resource": pet("a")}),
        valid_entry(operation={"resource": "a", "type": "creating"}),
        valid_entry(isRefresh="yes"),
        valid_entry(secretsProvider={"state": {}}),
        valid_entry(snippets={}),
        valid_entry(newSnapshot=[]),
        valid_entry(newSnapshot={"resources": {}}),
        valid_entry(newSnapshot={"resources": [{"id": "x"}]}),
        valid_entry(kind=5),
        valid_entry(kind=8, extension={"name": "x"}),
        valid_entry(kind=8, extensionRef=3, extension={}),
    ],
)
def test_validate_entry_refuses_malformed_entries(entry: object) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_entry(entry)
    assert caught.value.message.startswith("Bad Request: ")


def test_state_migration_entries_are_refused_with_a_reason() -> None:
    with pytest.raises(InvalidArgument, match="journal version 2"):
        validate_entry(valid_entry(kind=10, version=2))


def test_replay_tolerates_bad_references_with_warnings() -> None:
    base = untyped(stack_state())
    journal = Journal()
    journal.add(1, 1, removeOld=7)
    journal.add(1, 2, removeOld=-1, deleteOld=99, pendingReplacementOld=42)
    journal.add(1, 3, removeNew=555, deleteNew=556, pendingReplacementNew=557)
    journal.add(4, 4, state=pet("z"), removeNew=558)
    journal.add(3, 5, state=pet("z"), removeNew=559)
    journal.add(4, 6, state=stack_state(outputs={"x": 1}), removeOld=12)
    invalid: list[Any] = [{"kind": 99, "sequenceID": 40}, "garbage"]
    after_a_gap = {"kind": 2, "sequenceID": 50, "operationID": 9}
    entries: list[Any] = [*journal.entries, *invalid, after_a_gap]

    result = replay(base, entries, now=NOW)

    assert urns(result) == [STACK]
    assert resources(result)[0] == stack_state()
    text = "\n".join(result.warnings)
    for expected in ("index -1", "index 7", "index 12", "index 42", "index 99", "operation 555"):
        assert expected in text
    assert "operation 559" in text
    assert "unknown kind 99" in text
    assert "journal has gaps" in text


def test_replay_of_nothing_is_an_empty_stack() -> None:
    result = replay(None, [], now=NOW)

    assert result.deployment == {
        "version": 3,
        "deployment": {
            "manifest": {"time": "2026-08-21T10:00:00.123456Z", "magic": "", "version": ""},
            "metadata": {},
        },
    }
    assert result.resource_count == 0


def test_malformed_base_does_not_break_replay() -> None:
    base: dict[str, Any] = {"version": 3, "deployment": {"resources": "nope", "metadata": 4}}
    journal = Journal()
    journal.create(stack_state())

    result = run(base, journal.entries)

    assert urns(result) == [STACK]
    assert result.deployment["deployment"]["metadata"] == {}
    assert len(result.warnings) == 1


indices = st.one_of(st.none(), st.integers(min_value=-3, max_value=12))
random_entries = st.lists(
    st.fixed_dictionaries(
        {
            "kind": st.sampled_from([0, 1, 2, 3, 4, 6, 7, 9]),
            "sequenceID": st.integers(min_value=1, max_value=40),
            "operationID": st.integers(min_value=0, max_value=8),
            "removeOld": indices,
            "removeNew": indices,
            "deleteOld": indices,
            "deleteNew": indices,
            "pendingReplacementOld": indices,
            "pendingReplacementNew": indices,
            "isRefresh": st.booleans(),
        },
        optional={
            "state": st.builds(pet, st.sampled_from("abcdef")),
            "operation": st.builds(
                lambda name, kind: {"resource": pet(name), "type": kind},
                st.sampled_from("abc"),
                st.sampled_from(["creating", "updating", "deleting"]),
            ),
        },
    ),
    max_size=30,
)


@settings(max_examples=200, deadline=None)
@given(random_entries)
def test_replay_never_raises_on_valid_entries(entries: list[dict[str, Any]]) -> None:
    for entry in entries:
        validate_entry(entry)
    base = untyped(stack_state(), provider_state(), pet("a"), pet("b", dependencies=[pet_urn("a")]))

    result = run(base, entries)

    assert result.resource_count == len(resources(result))


def test_large_journal_replays_every_resource() -> None:
    # Timing lives in scripts/bench_updates.py; this checks the result at scale.
    count = 10_000
    base = untyped(*(pet(f"p{number}") for number in range(count)))
    journal = Journal()
    for number in range(count):
        journal.same(pet(f"p{number}", outputs={"n": number}), number)

    result = run(base, journal.entries)

    assert len(journal.entries) == 2 * count
    assert result.resource_count == count
    assert resources(result)[-1]["outputs"] == {"n": count - 1}
