"""Pure pieces of the history views: resource shapes, StackReference names, event digests,
the text summary, feed paging and reference resolution."""

from __future__ import annotations

import orjson
import pytest

from services.common.errors import InvalidArgument, NotFound
from services.common.stack_references import reference_names, resolve_reference
from services.updates.domain import MAX_FEED_ITEMS, feed_page
from services.updates.views import (
    SummaryHeader,
    digest,
    projected_count,
    render_summary,
    resource_views,
    stack_references,
)

STACK_URN = "urn:pulumi:dev::web::pulumi:pulumi:Stack::web-dev"
PET = "random:index/randomPet:RandomPet"


def urn(name: str) -> str:
    return f"urn:pulumi:dev::web::{PET}::{name}"


def pet(name: str, **extra: object) -> dict[str, object]:
    return {
        "urn": f"urn:pulumi:dev::web::{PET}::{name}",
        "type": PET,
        "custom": True,
        "parent": STACK_URN,
        **extra,
    }


def text(resources: list[dict[str, object]]) -> bytes:
    return orjson.dumps({"version": 3, "deployment": {"resources": resources}})


def event(**body: object) -> bytes:
    return orjson.dumps({"sequence": 0, "timestamp": 1, **body})


def test_resource_views_fill_what_the_sdk_requires() -> None:
    state = text([{"urn": STACK_URN, "type": "pulumi:pulumi:Stack"}, pet("a", dependencies=["x"])])
    root, a = (orjson.loads(view) for view in resource_views(state))
    assert (root["custom"], root["delete"], root["dependencies"]) == (False, False, [])
    assert a["dependencies"] == ["x"] and a["custom"] is True
    (only,) = resource_views(state, urn("a"))
    assert orjson.loads(only)["urn"] == urn("a")
    with pytest.raises(NotFound):
        resource_views(state, "urn:pulumi:dev::web::x::missing")
    # A pending delete beside its replacement: the live one is shown.
    doubled = text([pet("a", delete=True, id="old"), pet("a", id="new")])
    assert orjson.loads(resource_views(doubled, urn("a"))[0])["id"] == "new"


def test_stack_references_are_read_from_inputs_or_outputs() -> None:
    ref = {"type": "pulumi:pulumi:StackReference", "urn": "u1", "custom": True}
    state = text(
        [
            dict(ref, inputs={"name": "org/p/s"}),
            dict(ref, urn="u2", outputs={"name": "s2"}),
            dict(ref, urn="u3", outputs={"name": "gone"}, delete=True),
            pet("a", inputs={"name": "not-a-reference"}),
        ]
    )
    assert stack_references(state) == ("org/p/s", "s2")
    assert stack_references(text([pet("a")])) == ()
    assert stack_references(b"not json pulumi:pulumi:StackReference") == ()


def test_digest_counts_steps_by_type_and_kind_and_keeps_diagnostics() -> None:
    a, b = pet("a"), pet("b")
    events = [
        event(resourcePreEvent={"metadata": {"op": "create", "urn": a["urn"], "type": PET}}),
        event(resourcePreEvent={"metadata": {"op": "create", "urn": b["urn"], "type": PET}}),
        event(resOutputsEvent={"metadata": {"op": "create", "urn": a["urn"], "type": PET}}),
        event(resOpFailedEvent={"metadata": {"op": "create", "urn": b["urn"], "type": PET}}),
        event(diagnosticEvent={"urn": b["urn"], "severity": "error", "message": "boom\n"}),
        event(diagnosticEvent={"urn": b["urn"], "severity": "debug", "message": "noise\n"}),
        b"{not json",
    ]
    folded = digest(events)
    assert folded.resource_changes == {"create": 1}
    assert folded.changes_by_type == {PET: {"create": 1}}
    assert [(d.severity, d.message) for d in folded.diagnostics] == [("error", "boom")]
    assert [s.is_failed for s in folded.steps] == [False, True]
    summarised = digest([*events, event(summaryEvent={"resourceChanges": {"create": 5}})])
    assert summarised.resource_changes == {"create": 5}


def test_render_summary_shows_the_tree_errors_and_counts() -> None:
    root = {"op": "create", "urn": STACK_URN, "type": "pulumi:pulumi:Stack"}
    child = {"op": "create", "urn": pet("a")["urn"], "type": PET, "new": {"parent": STACK_URN}}
    folded = digest(
        [
            event(resourcePreEvent={"metadata": root}),
            event(resourcePreEvent={"metadata": child}),
            event(resOutputsEvent={"metadata": {**root, "new": {"outputs": {"x": 1}}}}),
            event(resOpFailedEvent={"metadata": child}),
            event(diagnosticEvent={"urn": child["urn"], "severity": "error", "message": "no"}),
            event(summaryEvent={"resourceChanges": {"create": 1}, "durationSeconds": 75}),
        ]
    )
    header = SummaryHeader("update", False, "o/p/s", "failed", folded.duration_seconds)
    rendered = render_summary(header, folded)
    lines = rendered.splitlines()
    assert lines[0] == "Updating (o/p/s):"
    assert any(
        line.startswith(" +   └─ " + PET) and "**creating failed**" in line for line in lines
    )
    assert "1 error" in rendered and "    error: no" in lines
    assert "    x: 1" in lines and "    + 1 created" in lines
    assert "Duration: 1m15s" in lines and lines[-1] == "Result: failed"
    preview = render_summary(SummaryHeader("update", True, "o/p/s", "succeeded", None), folded)
    assert preview.startswith("Previewing update (o/p/s):") and "+ 1 to create" in preview
    assert "Outputs:" not in preview


def test_projected_count_and_feed_paging() -> None:
    assert projected_count({"same": 2, "create": 1, "delete": 4, "replace": 1}) == 4
    assert feed_page(0, 0) == (MAX_FEED_ITEMS, 0)
    assert feed_page(3, 5) == (5, 10)
    assert feed_page(1, 0) == (10, 0)
    # Page 0 is everything, whatever the page size sent along.
    assert feed_page(0, 4) == (MAX_FEED_ITEMS, 0)
    for page, size in ((-1, 0), (0, -4), (0, MAX_FEED_ITEMS + 1), (1, -1), (1, MAX_FEED_ITEMS + 1)):
        with pytest.raises(InvalidArgument):
            feed_page(page, size)


def test_reference_names_resolve_relative_to_the_referencing_stack() -> None:
    assert resolve_reference("o/p/s", "x", "y") == ("o", "p", "s")
    assert resolve_reference("o/s", "x", "y") == ("o", "y", "s")
    assert resolve_reference("s", "x", "y") == ("x", "y", "s")
    assert resolve_reference("a/b/c/d", "x", "y") is None
    assert resolve_reference("a//c", "x", "y") is None
    for name in reference_names(("o", "p", "s")):
        assert resolve_reference(name, "o", "p") == ("o", "p", "s")
