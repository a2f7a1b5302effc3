"""Starter workflow templates and the stack settings rules, as pure functions."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from services.common.errors import InvalidArgument, NotFound
from services.stacks.domain import (
    MAX_ANNOTATION_BYTES,
    NewAnnotation,
    StackPath,
    annotation_query,
    transfer_target,
    validate_new_annotation,
)
from services.stacks.pipelines import (
    TOOLCHAINS,
    WorkflowRequest,
    normalise_working_directory,
    starter_workflow,
)

REQUEST = WorkflowRequest(
    stack=StackPath("acme", "web", "dev"),
    runtime="nodejs",
    ci_system="GitHub Actions",
    working_directory="infra",
    enable_path_filters=True,
    backend_url="https://cairn.example.com",
)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("", "."),
        (".", "."),
        ("./", "."),
        ("infra", "infra"),
        ("./infra/", "infra"),
        ("deploy/aws-east_1/v1.2", "deploy/aws-east_1/v1.2"),
    ],
)
def test_working_directories_are_normalised(given: str, expected: str) -> None:
    assert normalise_working_directory(given) == expected


@pytest.mark.parametrize(
    "given", ["/etc", "../up", "a/../b", "a//b", "a b", 'a"b', "a\nb", "$(id)", "x" * 201]
)
def test_working_directories_outside_the_repository_are_refused(given: str) -> None:
    with pytest.raises(InvalidArgument):
        normalise_working_directory(given)


@pytest.mark.parametrize("ci_system", ["github", "GitHub Actions", "github-actions"])
def test_github_names_pick_the_github_template(ci_system: str) -> None:
    content = starter_workflow(dataclasses.replace(REQUEST, ci_system=ci_system))
    assert "jobs" in yaml.safe_load(content)


@pytest.mark.parametrize("ci_system", ["gitlab", "GitLab CI", "gitlab-ci"])
def test_gitlab_names_pick_the_gitlab_template(ci_system: str) -> None:
    content = starter_workflow(dataclasses.replace(REQUEST, ci_system=ci_system))
    assert "before_script" in yaml.safe_load(content)["default"]


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"ci_system": ""}, InvalidArgument),
        ({"ci_system": "  "}, InvalidArgument),
        ({"runtime": ""}, InvalidArgument),
        ({"ci_system": "jenkins"}, NotFound),
        ({"runtime": "rust"}, NotFound),
        ({"working_directory": "../x"}, InvalidArgument),
    ],
)
def test_workflow_refusals(change: dict[str, str], error: type[Exception]) -> None:
    with pytest.raises(error):
        starter_workflow(dataclasses.replace(REQUEST, **change))  # type: ignore[arg-type]


@pytest.mark.parametrize("runtime", sorted(TOOLCHAINS))
@pytest.mark.parametrize("ci_system", ["github", "gitlab"])
def test_odd_backend_urls_cannot_break_the_yaml(runtime: str, ci_system: str) -> None:
    url = 'http://host/"\n  injected: true\n#'
    content = starter_workflow(
        dataclasses.replace(REQUEST, runtime=runtime, ci_system=ci_system, backend_url=url)
    )
    pipeline = yaml.safe_load(content)
    values = pipeline["env"] if ci_system == "github" else pipeline["variables"]
    assert values["PULUMI_BACKEND_URL"] == url
    assert "injected" not in values


def test_transfer_target_keeps_project_and_name() -> None:
    path = StackPath("acme", "web", "dev")
    assert transfer_target(path, "other") == StackPath("other", "web", "dev")
    for destination in ("acme", "", "a b"):
        with pytest.raises(InvalidArgument):
            transfer_target(path, destination)


def test_annotation_rules() -> None:
    base = NewAnnotation(kind="custom", source="ci", content=b'{"a": 1}', modified_by="me")
    assert validate_new_annotation(base) == base
    assert validate_new_annotation(dataclasses.replace(base, content=b"[]", source=""))
    for bad in (
        {"kind": "other"},
        {"kind": "CUSTOM"},
    ):
        with pytest.raises(NotFound):
            validate_new_annotation(dataclasses.replace(base, **bad))  # type: ignore[arg-type]
    for content in (b"", b"{", b"\xff", b"[" * 10000, b'"' + b"x" * MAX_ANNOTATION_BYTES + b'"'):
        with pytest.raises(InvalidArgument):
            validate_new_annotation(dataclasses.replace(base, content=content))
    for field, value in (("source", "a b"), ("source", "x" * 101), ("expected_version", -1)):
        with pytest.raises(InvalidArgument):
            validate_new_annotation(dataclasses.replace(base, **{field: value}))  # type: ignore[arg-type]
    assert annotation_query("compliance", "", 0).kind == "compliance"
    with pytest.raises(InvalidArgument):
        annotation_query("compliance", "", -1)
    with pytest.raises(NotFound):
        annotation_query("nope", "", 0)
