"""Property-based requests from /openapi.json against a running system (schemathesis).

Every operation of the served document gets a bounded number of generated requests, half
of them aimed at an existing stack; no answer may be a 5xx, and every answer must have a
documented status, content type and body shape. Update-token and agent routes are sent the
admin's access token, which is the wrong credential for them: they must answer 401.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import APIOperation, Case
from schemathesis.checks import not_a_server_error
from schemathesis.core.result import Ok
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

EXAMPLES_PER_OPERATION = 8
# Routes refusing the credential answer before reading the body; their (large) bodies are
# slow to generate and need few examples.
EXAMPLES_PER_CREDENTIAL_ROUTE = 3
REQUEST_TIMEOUT_SECONDS = 5.0
HEADERS = {"Authorization": f"token {ADMIN_TOKEN}", "Accept": "application/json"}
KNOWN = {"orgName": "fuzz", "projectName": "proj", "stackName": "dev"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]
CREDENTIAL_SCHEMES = ("updateToken", "agentToken")


def _ensure_stack(base_url: str) -> None:
    """The stack half of the cases aim at; recreated before each operation (one may delete)."""
    response = requests.post(
        f"{base_url}/api/stacks/{KNOWN['orgName']}/{KNOWN['projectName']}",
        data=orjson.dumps({"stackName": KNOWN["stackName"]}),
        headers={**HEADERS, "Content-Type": "application/json"},
        timeout=REQUEST_TIMEOUT_SECONDS,
    )
    assert response.status_code in (200, 409), response.text


def _describe(error: BaseException) -> str:
    if isinstance(error, BaseExceptionGroup):
        return "\n".join(_describe(inner) for inner in error.exceptions)
    return str(error)


def _fuzz_operation(
    operation: APIOperation[Any, Any, Any, Any], base_url: str, session: requests.Session
) -> set[int] | None:
    """Run the generated cases of one operation; the statuses a credential route answered."""
    names = {parameter.name for parameter in operation.path_parameters}
    known = {name: value for name, value in KNOWN.items() if name in names}
    strategy = operation.as_strategy()
    if known:
        strategy = st.one_of(strategy, operation.as_strategy(path_parameters=known))
    security = operation.definition.raw.get("security") or [{}]
    is_credential_route = any(name in CREDENTIAL_SCHEMES for name in security[0])
    statuses: set[int] = set()

    @hypothesis.settings(
        max_examples=(
            EXAMPLES_PER_CREDENTIAL_ROUTE if is_credential_route else EXAMPLES_PER_OPERATION
        ),
        deadline=None,
        database=None,
        derandomize=True,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @hypothesis.given(case=strategy)
    def run(case: Case[Any]) -> None:
        response = case.call(
            base_url=base_url, session=session, headers=HEADERS, timeout=REQUEST_TIMEOUT_SECONDS
        )
        case.validate_response(response, checks=CHECKS, headers=HEADERS)
        statuses.add(response.status_code)

    run()
    return statuses if is_credential_route else None


def _fuzz(document: dict[str, Any], base_url: str) -> tuple[list[str], int, dict[str, set[int]]]:
    """Failures, the number of operations fuzzed, and statuses seen by credential routes."""
    schema = schemathesis.openapi.from_dict(document)
    failures: list[str] = []
    credential_statuses: dict[str, set[int]] = {}
    count = 0
    session = requests.Session()
    for result in schema.get_all_operations():
        assert isinstance(result, Ok), result
        operation = result.ok()
        count += 1
        _ensure_stack(base_url)
        try:
            statuses = _fuzz_operation(operation, base_url, session)
        except (Exception, BaseExceptionGroup) as error:
            failures.append(f"{operation.label}: {_describe(error)}"[:2500])
            continue
        if statuses is not None:
            credential_statuses[operation.label] = statuses
    return failures, count, credential_statuses


@pytest.fixture
async def fuzzed_cairn(settings: Settings, aiohttp_client: AiohttpClient) -> AsyncIterator[Cairn]:
    """The fuzzer sends wrong credentials on purpose, far past the failed-authentication
    limit of one address."""
    lenient = settings.model_copy(update={"auth_failure_limit": "1000000/minute"})
    async for running in running_cairn(lenient, aiohttp_client):
        yield running


async def test_generated_requests_never_fail_the_server_and_match_the_document(
    fuzzed_cairn: Cairn,
) -> None:
    cairn = fuzzed_cairn
    response = await cairn.call("GET", "/openapi.json", token=None)
    assert response.status == 200
    document = orjson.loads(await response.read())
    base_url = str(cairn.client.make_url("")).rstrip("/")
    # Creating a stack creates no organization but the caller's own.
    await cairn.json("POST", "/api/orgs", 201, body={"name": KNOWN["orgName"]})

    failures, count, credential_statuses = await asyncio.to_thread(_fuzz, document, base_url)

    assert count == sum(len(item) for item in document["paths"].values())
    assert not failures, "\n\n".join(failures)
    assert credential_statuses, "no update-token or agent route was fuzzed"
    wrong = {label: seen for label, seen in credential_statuses.items() if seen != {401}}
    assert not wrong, f"routes answering an access token with other than 401: {wrong}"
