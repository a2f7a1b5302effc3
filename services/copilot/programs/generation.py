"""From a request to a rendered program with the steps to run it."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import replace

from services.copilot.programs.catalog import provider_for, template_for
from services.copilot.programs.render_csharp import render_csharp
from services.copilot.programs.render_go import render_go
from services.copilot.programs.render_python import render_python
from services.copilot.programs.render_typescript import render_typescript
from services.copilot.programs.render_yaml import render_yaml
from services.copilot.programs.spec import (
    LANGUAGE_NAMES,
    LANGUAGES,
    PROGRAM_FILES,
    GeneratedProgram,
    ProgramRequest,
    Resource,
    Spec,
    validate,
)

HELM_RELEASE = "kubernetes:helm.sh/v3:Release"

_RENDERERS = {
    "typescript": render_typescript,
    "python": render_python,
    "go": render_go,
    "csharp": render_csharp,
    "yaml": render_yaml,
}


def _instructions(spec: Spec, language: str) -> str:
    provider = provider_for(spec.cloud)
    project = f"{spec.cloud}-{spec.resource}"
    template = f"{provider.cloud}-{language}"
    language_name = LANGUAGE_NAMES[language]
    program_file = PROGRAM_FILES[language]
    steps = [
        f"Create a project from the `{template}` template: "
        f"`mkdir {project} && cd {project} && pulumi new {template}`.",
        f"Before deploying, {provider.login}.",
        f"Set {provider.location_purpose}: `pulumi config set {provider.location_key} "
        f"{provider.location_example}`.",
    ]
    for config in spec.configs:
        if config.secret:
            steps.append(
                f"Store {config.purpose} as an encrypted secret: "
                f"`pulumi config set --secret {config.key}` (you will be prompted for the value)."
            )
        elif config.default is None:
            steps.append(
                f"Set {config.purpose}: `pulumi config set {config.key} {config.example}`."
            )
        else:
            steps.append(
                f"Optionally change {config.purpose} (default `{config.default}`): "
                f"`pulumi config set {config.key} {config.example or config.default}`."
            )
    replace = f"Replace the contents of `{program_file}` with the program below"
    if language == "go":
        replace += ", then run `go mod tidy` to fetch the provider packages"
    elif language == "yaml":
        replace += f" (its `name` is `{project}`, the name `pulumi new` gave the project)"
    steps += [
        replace + ".",
        "Preview and deploy with `pulumi up`.",
        "Read the results with `pulumi stack output` "
        f"({', '.join(name for name, _ in spec.exports)}).",
    ]
    numbered = [f"{index}. {text}" for index, text in enumerate(steps, start=1)]
    intro = f"Here is the {language_name} program for `{program_file}`:"
    return "\n".join([spec.summary, "", *numbered, "", intro])


def _program_id(request: ProgramRequest, salt: str) -> str:
    """Seven URL-safe characters from a hash, so equal requests and salts get equal ids."""
    chart = f"|{request.chart}" if request.chart else ""
    material = f"{request.resource}|{request.cloud}|{request.language}{chart}|{salt}".encode()
    digest = hashlib.sha256(material).digest()
    return base64.urlsafe_b64encode(digest).decode("ascii")[:7]


def with_chart(spec: Spec, chart: str) -> Spec:
    """The Helm release template installing another chart of the same repository.

    The template pins its own chart's version; another chart's version is left to the
    repository's latest, and the release's note says to pin it.
    """
    steps = []
    changed = False
    for step in spec.steps:
        if isinstance(step, Resource) and step.token == HELM_RELEASE:
            current = dict(step.args).get("chart")
            if current == chart:
                return spec
            args = tuple(
                (key, chart if key == "chart" else chart if key == "namespace" else value)
                for key, value in step.args
                if key != "version"
            )
            note = f"Pin `version` to the {chart} chart version you have tested."
            step = replace(step, name=f"{chart}-release", args=args, note=note)
            changed = True
        steps.append(step)
    if not changed:
        return spec
    summary = f"The Bitnami {chart} Helm chart installed as a Helm release in its own namespace."
    return replace(spec, summary=summary, steps=tuple(steps))


def generate(request: ProgramRequest, salt: str = "") -> GeneratedProgram:
    """Render the program for a request; salt varies the id between conversations."""
    if request.language not in LANGUAGES:
        raise ValueError(f"unsupported language {request.language!r}")
    spec = template_for(request.resource, request.cloud)
    if spec is None:
        raise ValueError(f"no program for {request.resource!r} on {request.cloud!r}")
    if request.chart:
        spec = with_chart(spec, request.chart)
    validate(spec)
    return GeneratedProgram(
        code=_RENDERERS[request.language](spec),
        instructions=_instructions(spec, request.language),
        language=request.language,
        program_id=_program_id(request, salt),
        resource=request.resource,
        cloud=request.cloud,
    )
