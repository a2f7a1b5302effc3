"""What /openapi.json promises about values is what the server does: documented enums and
integer widths are enforced, documented limits come from the services' own definitions."""

from __future__ import annotations

import re

import pytest

from gateway.convert import INT32_BITS, optional_int
from gateway.errors import ApiError
from gateway.openapi import build_document
from services.common import limits
from tests.gateway.conftest import Cairn


async def _status(cairn: Cairn, method: str, path: str, **kwargs: object) -> int:
    response = await cairn.call(method, path, **kwargs)  # type: ignore[arg-type]
    await response.read()
    return response.status


async def test_unknown_enum_values_and_too_wide_integers_are_refused(cairn: Cairn) -> None:
    assert await _status(cairn, "GET", "/api/user/tokens?sortDirection=AAA") == 400
    assert await _status(cairn, "GET", "/api/user/tokens?sortBy=size") == 400
    assert await _status(cairn, "GET", "/api/user/tokens?sortDirection=desc") == 200
    assert await _status(cairn, "GET", f"/api/user/tokens?maxResults={2**31}") == 400


async def test_a_whole_number_written_with_a_fraction_is_a_whole_number(cairn: Cairn) -> None:
    answer = await cairn.json("PUT", "/api/orgs/admin/state-retention", body={"keepVersions": 3.0})
    assert answer["keepVersions"] == 3


def test_integer_body_members_take_whole_numbers_written_with_a_fraction() -> None:
    assert optional_int({"journalVersion": 1.0}, "journalVersion", bits=INT32_BITS) == 1
    for wrong in (1.5, 2.0**31, "1", True):
        with pytest.raises(ApiError):
            optional_int({"journalVersion": wrong}, "journalVersion", bits=INT32_BITS)


async def test_member_roles_are_the_three_cairn_has(cairn: Cairn) -> None:
    await cairn.new_user("dana")
    path = "/api/orgs/admin/members/dana"
    assert await _status(cairn, "POST", path, body={"role": "billing-manager"}) == 400
    assert await _status(cairn, "POST", path, body={"role": "viewer"}) == 200


def test_the_document_states_the_services_limits() -> None:
    document = build_document()
    body = document["paths"]["/api/admin/users"]["post"]["requestBody"]
    properties = body["content"]["application/json"]["schema"]["properties"]
    assert re.fullmatch(properties["login"]["pattern"], "a" * limits.MAX_IDENTITY_NAME_LENGTH)
    assert not re.fullmatch(properties["login"]["pattern"], "a" * 101)
    assert properties["email"]["maxLength"] == limits.MAX_EMAIL_LENGTH
    cancel = document["paths"][
        "/api/stacks/{orgName}/{projectName}/{stackName}/deployments/{deploymentId}/cancel"
    ]["post"]
    assert {"204", "404", "409"} <= set(cancel["responses"])
    exchange = document["paths"]["/api/oauth/token"]["post"]["responses"]
    assert "401" in exchange


def test_the_document_states_what_issuers_invites_and_feeds_take() -> None:
    paths = build_document()["paths"]

    def body(path: str, method: str) -> dict[str, object]:
        schema: dict[str, object] = paths[path][method]["requestBody"]["content"][
            "application/json"
        ]["schema"]["properties"]
        return schema

    issuer = body("/api/orgs/{orgName}/oidc/issuers/{issuerId}", "patch")
    thumbprint = issuer["thumbprints"]["items"]["pattern"]  # type: ignore[index]
    assert re.fullmatch(thumbprint, "ab" * 20) and not re.fullmatch(thumbprint, "ab" * 21)
    assert issuer["name"]["maxLength"] == limits.MAX_ISSUER_NAME_LENGTH  # type: ignore[index]
    invites = body("/api/orgs/{orgName}/invites/batch", "post")["invites"]
    assert invites["minItems"] == 1 and "email" in invites["items"]["required"]  # type: ignore[index]
    activity = paths["/api/stacks/{orgName}/{projectName}/{stackName}/activity"]["get"]
    sizes = {p["name"]: p["schema"] for p in activity["parameters"]}
    assert sizes["pageSize"]["maximum"] == limits.MAX_FEED_ITEMS
    assert sizes["page"]["minimum"] == 0
