"""Generate gateway/schemas/catalogue.json: JSON Schemas keyed by operation id.

Also writes tests/contract/documented_routes.json: method, path, operation id and deprecation
of every documented route. Run once when the REST catalogue or the official SDK changes:

    python scripts/gen_schemas.py <catalogue dir holding endpoints.json and models.json>

Catalogued operations take their field names, types and required flags from the catalogue's
field trees merged with the official SDK's models (the SDK wins where both describe a field:
it is what fails on a missing required field). Operations the gateway serves that are not
catalogued but exist in the installed `pulumi-cloud-sdk` (listed in SDK_OPERATIONS) are read
from the SDK's method signatures and models. The output is committed; nothing reads the
catalogue directory at test or run time.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import json
import re
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUTPUT = ROOT / "gateway" / "schemas" / "catalogue.json"
# The documented routes, for the test that every one of them is routed.
DOCUMENTED = ROOT / "tests" / "contract" / "documented_routes.json"

# Served operations outside the catalogue whose shapes the official SDK defines.
SDK_OPERATIONS = (
    "get_current_user",
    "get_default_organization",
    "get_stack_updates",
    "get_update_status_for_update",
    "get_engine_events_destroy",
    "get_deployment_settings",
    "patch_deployment_settings",
    "replace_deployment_settings",
    "delete_deployment_settings",
    "encrypt_deployment_settings_secret",
    "create_api_deployment_handler_v2",
    "list_stack_deployments_handler_v2",
    "list_org_deployments",
    "get_deployment",
    "get_deployment_logs",
    "get_deployment_updates",
    "cancel_deployment",
    "list_personal_tokens",
    "create_personal_token",
    "delete_personal_token",
    "list_user_org_invites",
    "accept_org_invite",
    "get_organization",
    "update_organization_settings",
    "list_organization_members",
    "add_organization_member",
    "update_organization_member",
    "delete_organization_member",
    "get_organization_member_teams",
    "list_org_invites",
    "batch_create_org_invite_email",
    "cancel_org_invite",
    "list_teams",
    "create_pulumi_team",
    "get_team",
    "update_team",
    "delete_team",
    "list_org_tokens",
    "create_org_token",
    "delete_org_token",
    "list_team_tokens",
    "create_team_token",
    "delete_team_token",
    "list_audit_log_events_handler_v1",
    "export_audit_log_events_handler_v1",
    "list_audit_log_event_types",
    "register_oidc_issuer",
    "list_orgs_oidc_issuers",
    "get_oidc_issuer",
    "update_oidc_issuer",
    "delete_oidc_issuer",
    "regenerate_thumbprints",
    "get_auth_policy",
    "update_auth_policy",
    "token",
    "create_scheduled_deployment",
    "list_scheduled_deployment",
    "read_scheduled_deployment",
    "update_scheduled_deployment",
    "delete_scheduled_deployment",
    "pause_scheduled_deployment",
    "resume_scheduled_deployment",
    "list_scheduled_deployment_history",
    "create_scheduled_drift_deployment",
    "update_scheduled_drift_deployment",
    "list_drift_runs",
    "get_drift_run",
    "get_stack_drift_status",
    "create_scheduled_ttl_deployment",
    "update_scheduled_ttl_deployment",
    "pause_stack_deployments",
    "resume_stack_deployments",
    "pause_org_deployments",
    "resume_org_deployments",
    "get_deployments_status",
    "stack_deployments_metadata",
    "org_deployments_metadata",
)

Node = dict[str, Any]
Schema = dict[str, Any]

# -- the SDK as catalogue-shaped models -----------------------------------------------------

_SDK_SCALARS = {
    "str": "string",
    "int": "integer",
    "bool": "boolean",
    "float": "number",
    "datetime": "datetime",
    "date": "string",
    "bytes": "bytes",
    "object": "any",
    "Any": "any",
}


def _sdk_models() -> Any:
    return importlib.import_module("pulumi_cloud_sdk.models")


def _sdk_type(text: str) -> str:
    """An SDK type string (`list[AppStack]`, `dict[str, int]`) in the catalogue's vocabulary."""
    text = text.strip()
    if text in _SDK_SCALARS:
        return _SDK_SCALARS[text]
    match = re.fullmatch(r"list\[(.+)\]", text)
    if match:
        return f"array[{_sdk_type(match.group(1))}]"
    match = re.fullmatch(r"dict\[str,\s*(.+)\]", text)
    if match:
        return f"map[string]{_sdk_type(match.group(1))}"
    return text


def sdk_model(name: str) -> Node | None:
    """One SDK model (or enum) as a catalogue model node; None when the SDK has no such type."""
    cls = getattr(_sdk_models(), name, None)
    if cls is None:
        return None
    if hasattr(cls, "values") and not hasattr(cls, "__swagger_types__"):
        return {"enum": list(cls.values())}
    types: dict[str, str] = cls.__swagger_types__
    wire: dict[str, str] = cls.__attribute_map__
    parameters = inspect.signature(cls.__init__).parameters
    fields = []
    for attribute, type_text in types.items():
        parameter = parameters.get(attribute)
        required = parameter is not None and parameter.default is inspect.Parameter.empty
        fields.append({"name": wire[attribute], "type": _sdk_type(type_text), "required": required})
    return {"fields": fields}


def sdk_method(name: str) -> tuple[str, str, str | None, str | None, dict[str, str]]:
    """Method, path, request model, response model and query names of an SDK method."""
    apis = importlib.import_module("pulumi_cloud_sdk.apis")
    for api_name in dir(apis):
        api = getattr(apis, api_name)
        function = getattr(api, name, None) if inspect.isclass(api) else None
        if function is None:
            continue
        source = inspect.getsource(function)
        path = re.search(r"resource_path = '([^']+)'", source)
        method = re.search(r"call_api\(resource_path, '(\w+)'", source)
        assert path and method, name
        signature = inspect.signature(function)
        body = signature.parameters.get("request")
        request = str(body.annotation).strip("'") if body is not None else None
        response = str(signature.return_annotation).strip("'")
        queries = {
            wire: _sdk_type(str(signature.parameters[argument].annotation).strip("'"))
            for wire, argument in re.findall(r"query_params\['([^']+)'\] = (\w+)", source)
        }
        return (
            method.group(1),
            path.group(1),
            request,
            (None if response == "None" else response),
            queries,
        )
    raise SystemExit(f"the installed SDK has no method {name}")


# -- catalogue nodes to JSON Schema -----------------------------------------------------------


class Builder:
    """Turns catalogue field trees and models into JSON Schemas with shared components."""

    def __init__(self, models: dict[str, Node]) -> None:
        self.models = models
        self.components: dict[str, Schema] = {}

    def model(self, name: str) -> Node | None:
        if self.models.get(name) is None:
            found = sdk_model(name)
            if found is None:
                return None
            self.models[name] = found
        return self.models[name]

    def ref(self, name: str) -> Schema:
        """A reference to a named model, building its component on first use."""
        node = self.model(name)
        if node is None:
            return {"description": f"{name} (free form)"}
        if name not in self.components:
            self.components[name] = {}  # placeholder: models refer to themselves
            self.components[name] = self.model_schema(node)
        return {"$ref": f"#/components/schemas/{name}"}

    def model_schema(self, node: Node) -> Schema:
        if "enum" in node:
            return _enum(node["enum"])
        if node.get("subtypes") and not node.get("fields"):
            return {"anyOf": [self.ref(sub) for sub in node["subtypes"]]}
        return self.object(node.get("fields") or [], None)

    def type_schema(self, text: str, node: Node | None = None) -> Schema:
        node = node or {}
        if text == "enum":
            return _enum(node.get("enum") or [])
        simple = {
            "string": {"type": "string"},
            "integer": {"type": "integer"},
            "number": {"type": "number"},
            "boolean": {"type": "boolean"},
            "object": {"type": "object"},
            "any": {},
            "datetime": {"type": "string", "format": "date-time"},
            "bytes": {"type": "string", "contentEncoding": "base64"},
            "array": {"type": "array"},
            "string|object": {"type": ["string", "object"]},
        }
        if text in simple:
            return dict(simple[text])
        if text.startswith("array[") and text.endswith("]"):
            return {"type": "array", "items": self.type_schema(text[6:-1])}
        if text.startswith("map[string]"):
            return {"type": "object", "additionalProperties": self.type_schema(text[11:])}
        return self.ref(text)

    def field(self, node: Node, sdk: Node | None) -> Schema:
        """One field: the SDK's type where it knows the field, else the catalogue's tree."""
        if sdk is not None:
            return self.type_schema(sdk["type"], sdk)
        children = node.get("children")
        if children:
            element = self.object(children, node.get("ref"))
            if node["type"].startswith("array["):
                return {"type": "array", "items": element}
            if node["type"].startswith("map[string]"):
                return {"type": "object", "additionalProperties": element}
            return element
        return self.type_schema(node["type"], node)

    def object(self, fields: list[Node], model: str | None) -> Schema:
        """An object from catalogue fields merged with the SDK model of the same value.

        The SDK decides type and required for the fields it has (a missing required field
        fails its deserialisation); catalogue-only fields keep the catalogue's word. Optional
        fields may be null: the SDK writes unset members as null and reads null as unset.
        """
        sdk_fields = (
            {f["name"]: f for f in (self.model(model) or {}).get("fields", [])} if model else {}
        )
        properties: dict[str, Schema] = {}
        required: list[str] = []
        names = [f["name"] for f in fields] + [
            n for n in sdk_fields if n not in {f["name"] for f in fields}
        ]
        by_name = {f["name"]: f for f in fields}
        for name in names:
            sdk = sdk_fields.get(name)
            node = by_name.get(name, sdk)
            assert node is not None
            schema = self.field(node, sdk)
            is_required = bool((sdk or node).get("required"))
            if is_required:
                required.append(name)
            else:
                schema = _nullable(schema)
            properties[name] = schema
        result: Schema = {"type": "object", "properties": properties}
        if required:
            result["required"] = required
        return result


def _enum(values: list[Any]) -> Schema:
    if values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return {"type": "integer", "enum": values}
    return {"type": "string", "enum": values}


def _nullable(schema: Schema) -> Schema:
    if "$ref" in schema or "anyOf" in schema or "type" not in schema:
        return {"anyOf": [schema, {"type": "null"}]} if schema else schema
    kinds = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
    result = dict(schema, type=[*kinds, "null"])
    if "enum" in result:
        result["enum"] = [*result["enum"], None]
    return result


_PARAMETER_TYPES = {"string": "string", "integer": "integer", "boolean": "boolean"}


def _body(builder: Builder, model: str | None, fields: list[Node] | None) -> Schema:
    if model == "Any" or (model is None and not fields):
        return {}
    if model == "dict[str, str]":
        return {"type": "object", "additionalProperties": {"type": "string"}}
    if model is not None and builder.model(model) is None:
        return builder.type_schema(_sdk_type(model))
    return builder.object(fields or [], model)


def catalogue_operation(builder: Builder, entry: Node) -> Node:
    sdk = entry["sdk"]
    request = entry.get("request")
    operation: Node = {
        "summary": entry["summary"],
        "deprecated": entry["deprecated"],
        "source": "catalogue",
        "query": [
            {
                "name": p["name"],
                "required": p["required"],
                "schema": _enum(p["enum"])
                if p.get("enum")
                else {"type": _PARAMETER_TYPES.get(p["type"], "string")},
            }
            for p in entry["params"]
            if p["in"] == "query"
        ],
        "request": None,
        "responses": {},
        "errors": sorted({e["status"] for e in entry["errors"]}),
    }
    known = {q["name"] for q in operation["query"]}
    sdk_types = sdk_method(sdk["method"])[4] if sdk["query_params"] else {}
    operation["query"] += [
        {"name": name, "required": False, "schema": builder.type_schema(sdk_types[name])}
        for name in sdk["query_params"]
        if name not in known
    ]
    if request is not None:
        operation["request"] = _body(builder, sdk["request_model"], request.get("fields"))
    for response in entry["responses"]:
        status = str(response["status"])
        if response["status"] == 204 or sdk["response_model"] == "str":
            operation["responses"][status] = None
        elif response.get("body") == "unspecified":
            operation["responses"][status] = {}
        else:
            operation["responses"][status] = _body(
                builder, sdk["response_model"], response.get("fields")
            )
    return operation


def sdk_operation(builder: Builder, name: str) -> Node:
    method, path, request, response, queries = sdk_method(name)
    return {
        "summary": f"{method} {path} (official SDK)",
        "deprecated": False,
        "source": "sdk",
        "query": [
            {"name": q, "required": False, "schema": builder.type_schema(kind)}
            for q, kind in queries.items()
        ],
        "request": None if request is None else _body(builder, request, None),
        "responses": {"200": None if response is None else _body(builder, response, None)},
        "errors": [],
    }


def generate(catalogue_dir: Path) -> Node:
    entries = json.loads((catalogue_dir / "endpoints.json").read_text())
    models = json.loads((catalogue_dir / "models.json").read_text())["models"]
    builder = Builder(dict(models))
    operations = {entry["operation_id"]: catalogue_operation(builder, entry) for entry in entries}
    for name in SDK_OPERATIONS:
        if name not in operations:
            operations[name] = sdk_operation(builder, name)
    return {
        "operations": dict(sorted(operations.items())),
        "components": dict(sorted(builder.components.items())),
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("catalogue_dir", type=Path)
    args = parser.parse_args(argv)
    document = generate(args.catalogue_dir)
    OUTPUT.write_text(json.dumps(document, indent=1) + "\n")
    entries = json.loads((args.catalogue_dir / "endpoints.json").read_text())
    documented = [
        {
            "method": entry["method"],
            "path": entry["path"],
            "operation_id": entry["operation_id"],
            "deprecated": entry["deprecated"],
        }
        for entry in entries
    ]
    DOCUMENTED.write_text(json.dumps(documented, indent=1) + "\n")
    print(f"{len(document['operations'])} operations, {len(document['components'])} schemas")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
