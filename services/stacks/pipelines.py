"""Starter CI pipelines for a stack: one template file per CI system (`pipeline_templates/`),
rendered for the stack's runtime.

Every pipeline previews on merge/pull requests and updates on the default branch. Values are
written as JSON strings, which YAML reads as double-quoted scalars, so no name can break out
of its place in the file.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass

import jinja2

from services.common.errors import InvalidArgument, NotFound
from services.stacks.domain import StackPath

RUNTIME_TAG = "pulumi:runtime"
MAX_WORKING_DIRECTORY_LENGTH = 200
_DIRECTORY_PART = re.compile(r"[A-Za-z0-9_.-]+")


@dataclass(frozen=True)
class Toolchain:
    """How one runtime is set up: a GitHub Actions step and a GitLab CI image."""

    action: str
    action_inputs: tuple[tuple[str, str], ...]
    image: str
    # Prints the toolchain's version, so a pipeline on a broken image fails early and plainly.
    check: str


# `pulumi install` installs the program's dependencies (npm/yarn/pnpm, pip/poetry/uv, go
# modules, NuGet, Maven/Gradle) and plugins as Pulumi.yaml configures them.
TOOLCHAINS: dict[str, Toolchain | None] = {
    "nodejs": Toolchain(
        "actions/setup-node@v4", (("node-version", "22"),), "node:22", "node --version"
    ),
    "python": Toolchain(
        "actions/setup-python@v5", (("python-version", "3.12"),), "python:3.12", "python --version"
    ),
    "go": Toolchain("actions/setup-go@v5", (("go-version", "1.23"),), "golang:1.23", "go version"),
    "dotnet": Toolchain(
        "actions/setup-dotnet@v4",
        (("dotnet-version", "8.0.x"),),
        "mcr.microsoft.com/dotnet/sdk:8.0",
        "dotnet --version",
    ),
    "java": Toolchain(
        "actions/setup-java@v4",
        (("distribution", "temurin"), ("java-version", "21")),
        "maven:3-eclipse-temurin-21",
        "java -version",
    ),
    # Pulumi YAML programs need no language toolchain.
    "yaml": None,
}
YAML_IMAGE = "buildpack-deps:bookworm-curl"


@dataclass(frozen=True)
class WorkflowRequest:
    stack: StackPath
    runtime: str
    ci_system: str
    working_directory: str
    enable_path_filters: bool
    backend_url: str


def _q(value: str) -> str:
    return json.dumps(value)


def normalise_working_directory(value: str) -> str:
    """A relative directory inside the repository, '.' for its root."""
    trimmed = value.strip()
    while trimmed.startswith("./"):
        trimmed = trimmed[2:]
    trimmed = trimmed.rstrip("/")
    if trimmed in ("", "."):
        return "."
    if len(trimmed) > MAX_WORKING_DIRECTORY_LENGTH or trimmed.startswith("/"):
        raise InvalidArgument(
            "Bad Request: 'workingDirectory' must be a relative path inside the repository"
        )
    for part in trimmed.split("/"):
        if part in ("", ".", "..") or not _DIRECTORY_PART.fullmatch(part):
            raise InvalidArgument(
                "Bad Request: 'workingDirectory' may only hold alphanumerics, '_', '.', '-' and "
                "'/' separators, without '..' parts"
            )
    return trimmed


def _ci_key(ci_system: str) -> str:
    return re.sub(r"[^a-z0-9]", "", ci_system.lower())


@functools.cache
def _environment() -> jinja2.Environment:
    """Templates are YAML, not HTML: nothing is escaped; values go through the `q` filter."""
    environment = jinja2.Environment(
        loader=jinja2.PackageLoader("services.stacks", "pipeline_templates"),
        autoescape=False,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        undefined=jinja2.StrictUndefined,
    )
    environment.filters["q"] = _q
    return environment


def _render(template: str, request: WorkflowRequest, directory: str) -> str:
    toolchain = TOOLCHAINS[request.runtime]
    return (
        _environment()
        .get_template(template)
        .render(
            stack=str(request.stack),
            runtime=request.runtime,
            backend_url=request.backend_url,
            directory=directory,
            path_filters=request.enable_path_filters,
            toolchain=toolchain,
            image=toolchain.image if toolchain is not None else YAML_IMAGE,
        )
    )


# Template files by CI system, under any spelling that reduces to the key.
TEMPLATES: dict[str, str] = {
    "github": "github-actions.yml.j2",
    "githubactions": "github-actions.yml.j2",
    "gitlab": "gitlab-ci.yml.j2",
    "gitlabci": "gitlab-ci.yml.j2",
}


def starter_workflow(request: WorkflowRequest) -> str:
    """The pipeline text; 400 without a CI system or runtime, 404 without a template."""
    if not request.ci_system.strip():
        raise InvalidArgument("Bad Request: CISystem must be specified")
    if not request.runtime:
        raise InvalidArgument(f"Bad Request: Stack does not have a runtime tag ({RUNTIME_TAG})")
    template = TEMPLATES.get(_ci_key(request.ci_system))
    if template is None:
        raise NotFound(
            f"Not Found: WorkflowTemplate for CI system '{request.ci_system[:100]}' not found; "
            "use GitHub Actions or GitLab CI"
        )
    if request.runtime not in TOOLCHAINS:
        raise NotFound(
            f"Not Found: WorkflowTemplate for runtime '{request.runtime[:100]}' not found"
        )
    return _render(template, request, normalise_working_directory(request.working_directory))
