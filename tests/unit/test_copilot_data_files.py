"""The copilot's data files: found through importlib.resources and declared for the wheel."""

from __future__ import annotations

import tomllib
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path

import pytest

from services.copilot.programs import CLOUDS, RESOURCES, catalog
from services.copilot.programs.spec import KUBERNETES_RESOURCES

ROOT = Path(__file__).resolve().parents[2]


def test_every_template_is_found_through_importlib_resources() -> None:
    folder = resources.files(catalog.PACKAGE).joinpath(catalog.TEMPLATES)
    found = sorted(entry.name for entry in folder.iterdir() if entry.name.endswith(".yaml"))
    assert found == sorted(catalog.template_names())
    assert len(found) == len(CLOUDS) * len(RESOURCES) + len(KUBERNETES_RESOURCES)


@pytest.mark.parametrize("cloud", CLOUDS)
@pytest.mark.parametrize("resource", RESOURCES)
def test_every_template_loads_as_its_cloud_and_resource(cloud: str, resource: str) -> None:
    spec = catalog.template_for(resource, cloud)
    assert spec is not None
    assert (spec.cloud, spec.resource) == (cloud, resource)
    assert spec.steps
    assert catalog.provider_for(cloud).cloud == cloud


@pytest.mark.parametrize("resource", KUBERNETES_RESOURCES)
def test_every_kubernetes_template_loads(resource: str) -> None:
    spec = catalog.template_for(resource, "kubernetes")
    assert spec is not None
    assert (spec.cloud, spec.resource) == ("kubernetes", resource)
    assert all(step.token.startswith("kubernetes:") for step in spec.steps)


def test_unknown_template_is_none() -> None:
    assert catalog.template_for("bucket", "oracle") is None
    assert catalog.template_for("../providers", "aws") is None


def test_package_data_declares_every_copilot_data_file() -> None:
    """A wheel ships exactly what pyproject declares; every data file must be declared."""
    settings = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    declared: dict[str, list[str]] = settings["tool"]["setuptools"]["package-data"]
    copilot = ROOT / "services" / "copilot"
    data = [
        path for path in copilot.rglob("*") if path.is_file() and path.suffix not in (".py", ".pyc")
    ]
    assert copilot / "failure_patterns.yaml" in data
    undeclared = []
    for path in data:
        owners = [p for p in path.parents if (p / "__init__.py").exists() and p != ROOT]
        is_declared = any(
            fnmatch(path.relative_to(owner).as_posix(), pattern)
            for owner in owners
            for pattern in declared.get(owner.relative_to(ROOT).as_posix().replace("/", "."), [])
        )
        if not is_declared:
            undeclared.append(path.relative_to(ROOT).as_posix())
    assert undeclared == []


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ({"$ref": "a..b"}, "bad \\$ref"),
        ({"$nope": 1}, "unknown value tag"),
        ({"$ref": "a", "$config": "b"}, "exactly one"),
        ({"$join": [["x"]]}, "\\$join takes"),
    ],
)
def test_malformed_values_are_rejected(value: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        catalog.decode_value(value)
