"""What /openapi.json promises about values is what the server does: documented enums and
integer widths are enforced, documented limits come from the services' own definitions."""

from __future__ import annotations

import re

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
