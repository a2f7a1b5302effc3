"""Starter CI pipelines for a stack: one template per CI system, tailored to the runtime.

Every pipeline previews on merge/pull requests and updates on the default branch. Values are
written as JSON strings, which YAML reads as double-quoted scalars, so no name can break out
of its place in the file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from dataclasses import dataclass

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


def _header(request: WorkflowRequest, secret_hint: str) -> list[str]:
    return [
        f"# Starter Pulumi pipeline for stack {request.stack} ({request.runtime}).",
        f"# {secret_hint}",
    ]


def github_actions(request: WorkflowRequest, directory: str) -> str:
    toolchain = TOOLCHAINS[request.runtime]
    lines = _header(
        request,
        "Store an access token for this backend as the repository secret PULUMI_ACCESS_TOKEN.",
    )
    lines += [f"name: {_q(f'Pulumi {request.stack}')}", "on:"]
    for event in ("pull_request", "push"):
        lines += [f"  {event}:", '    branches: ["main"]']
        if request.enable_path_filters:
            pattern = "**" if directory == "." else f"{directory}/**"
            lines.append(f"    paths: [{_q(pattern)}]")
    lines += [
        "env:",
        "  PULUMI_ACCESS_TOKEN: ${{ secrets.PULUMI_ACCESS_TOKEN }}",
        f"  PULUMI_BACKEND_URL: {_q(request.backend_url)}",
        f"  PULUMI_STACK: {_q(str(request.stack))}",
        "jobs:",
    ]
    jobs = (
        ("preview", "pull_request", 'pulumi preview --stack "$PULUMI_STACK" --non-interactive'),
        ("update", "push", 'pulumi up --stack "$PULUMI_STACK" --yes --non-interactive'),
    )
    for job, event, command in jobs:
        lines += [
            f"  {job}:",
            f"    if: github.event_name == '{event}'",
            "    runs-on: ubuntu-latest",
            "    defaults:",
            "      run:",
            f"        working-directory: {_q(directory)}",
            "    steps:",
            "      - uses: actions/checkout@v4",
        ]
        if toolchain is not None:
            lines.append(f"      - uses: {toolchain.action}")
            lines.append("        with:")
            lines += [f"          {name}: {_q(value)}" for name, value in toolchain.action_inputs]
        lines += [
            "      - name: Install the Pulumi CLI",
            "        run: |",
            "          curl -fsSL https://get.pulumi.com | sh",
            '          echo "$HOME/.pulumi/bin" >> "$GITHUB_PATH"',
            "      - name: Log in to the backend",
            '        run: pulumi login "$PULUMI_BACKEND_URL"',
        ]
        if toolchain is not None:
            lines += ["      - name: Check the toolchain", f"        run: {toolchain.check}"]
        lines += [
            "      - name: Install dependencies",
            "        run: pulumi install",
            f"      - name: {job.capitalize()}",
            f"        run: {command}",
        ]
    return "\n".join(lines) + "\n"


def gitlab_ci(request: WorkflowRequest, directory: str) -> str:
    toolchain = TOOLCHAINS[request.runtime]
    image = toolchain.image if toolchain is not None else YAML_IMAGE
    lines = _header(
        request,
        "Store an access token for this backend as the masked CI/CD variable PULUMI_ACCESS_TOKEN.",
    )
    lines += [
        "stages: [preview, update]",
        "variables:",
        f"  PULUMI_BACKEND_URL: {_q(request.backend_url)}",
        f"  PULUMI_STACK: {_q(str(request.stack))}",
        "default:",
        f"  image: {_q(image)}",
        "  before_script:",
        f"    - {_q(f'cd {directory}')}",
        "    - curl -fsSL https://get.pulumi.com | sh",
        '    - export PATH="$HOME/.pulumi/bin:$PATH"',
        '    - pulumi login "$PULUMI_BACKEND_URL"',
    ]
    if toolchain is not None:
        lines.append(f"    - {toolchain.check}")
    lines.append("    - pulumi install")
    jobs = (
        (
            "preview",
            '$CI_PIPELINE_SOURCE == "merge_request_event"',
            'pulumi preview --stack "$PULUMI_STACK" --non-interactive',
        ),
        (
            "update",
            "$CI_COMMIT_BRANCH == $CI_DEFAULT_BRANCH",
            'pulumi up --stack "$PULUMI_STACK" --yes --non-interactive',
        ),
    )
    for job, condition, command in jobs:
        lines += [f"{job}:", f"  stage: {job}", "  rules:", f"    - if: {condition}"]
        if request.enable_path_filters:
            pattern = "**/*" if directory == "." else f"{directory}/**/*"
            lines.append(f"      changes: [{_q(pattern)}]")
        lines += ["  script:", f"    - {command}"]
    return "\n".join(lines) + "\n"


TEMPLATES: dict[str, Callable[[WorkflowRequest, str], str]] = {
    "github": github_actions,
    "githubactions": github_actions,
    "gitlab": gitlab_ci,
    "gitlabci": gitlab_ci,
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
    return template(request, normalise_working_directory(request.working_directory))
