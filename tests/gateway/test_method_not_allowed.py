"""Every method a documented path does not serve answers 405 with an `Allow` header (RFC 9110
§15.5.6) naming exactly what the path serves."""

from __future__ import annotations

import re

import orjson

from gateway.openapi import build_document
from tests.gateway.conftest import Cairn

METHODS = ("GET", "PUT", "POST", "DELETE", "PATCH")
_VARIABLE = re.compile(r"\{(\w+)\}")


def _concrete(path: str, integers: set[str]) -> str:
    """The path with each variable replaced by a value its route matches."""
    return _VARIABLE.sub(lambda m: "7" if m.group(1) in integers else "x7", path)


def _template(path: str) -> re.Pattern[str]:
    parts = _VARIABLE.split(path)
    pattern = "".join(re.escape(part) if i % 2 == 0 else "[^/]+" for i, part in enumerate(parts))
    return re.compile(f"^{pattern}$")


async def test_undocumented_methods_answer_405_with_allow(cairn: Cairn) -> None:
    document = build_document()
    templates = [(_template(path), set(item)) for path, item in document["paths"].items()]
    probed = 0
    for path, item in document["paths"].items():
        integers = {
            parameter["name"]
            for operation in item.values()
            for parameter in operation["parameters"]
            if parameter["in"] == "path" and parameter["schema"].get("type") == "integer"
        }
        url = _concrete(path, integers)
        # Methods another documented path serves at this URL (`/teams/pulumi` is also a
        # `/teams/{teamName}`) are answered by that route.
        served = {
            method.upper()
            for template, methods in templates
            if template.match(url)
            for method in methods
        }
        # One method per path keeps the test quick; which one varies with the path.
        unserved = [method for method in METHODS if method not in served]
        for method in unserved[len(path) % len(unserved) :][:1] if unserved else []:
            response = await cairn.call(method, url, raw=b"")
            text = await response.text()
            assert response.status == 405, f"{method} {url}: {response.status} {text}"
            assert orjson.loads(text)["code"] == 405
            allowed = {name.strip() for name in response.headers.get("Allow", "").split(",")}
            assert served <= allowed <= served | {"HEAD"}, f"{method} {url}: Allow {allowed}"
            probed += 1
    assert probed > len(document["paths"]) // 2
