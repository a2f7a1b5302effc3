"""Property-based requests from /openapi.json against a running system (schemathesis).

Every operation of the served document gets a bounded number of generated requests, half
of them aimed at an existing stack, some valid by the document and some not; every
schemathesis check runs on every answer (NARROWED lists the few exceptions and why): no 5xx,
a documented status, content type, headers and body shape, valid requests accepted, invalid
ones refused. Update-token and agent routes are sent the admin's access token, which is the
wrong credential for them: they must answer 401. Every 405 carrying `Allow` is checked
across all paths by tests/gateway/test_method_not_allowed.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import hypothesis
import orjson
import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, Phase
from hypothesis import strategies as st
from schemathesis import APIOperation, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.core.result import Ok
from schemathesis.core.transport import Response
from schemathesis.specs.openapi.checks import (
    allow_header_conformance,
    content_type_conformance,
    ensure_resource_availability,
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
    unsupported_method,
    use_after_free,
)

from services.common.config import Settings
from tests.gateway.conftest import ADMIN_TOKEN, AiohttpClient, Cairn, running_cairn

EXAMPLES_PER_OPERATION = 8
# Routes refusing the credential answer before reading the body; their (large) bodies are
# slow to generate and need few examples.
EXAMPLES_PER_CREDENTIAL_ROUTE = 3
REQUEST_TIMEOUT_SECONDS = 5.0
AUTHORIZATION = {"Authorization": f"token {ADMIN_TOKEN}"}
HEADERS = {**AUTHORIZATION, "Accept": "application/json"}
KNOWN = {"orgName": "fuzz", "projectName": "proj", "stackName": "dev"}
# Every check schemathesis has but `max_response_time` (a wall-clock budget, which a busy
# machine fails) and `object_level_authorization` (needs a second identity's objects).
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    positive_data_acceptance,
    missing_required_header,
    unsupported_method,
    allow_header_conformance,
    ignored_auth,
    use_after_free,
    ensure_resource_availability,
]
CREDENTIAL_SCHEMES = ("updateToken", "agentToken")

# The one place a check is narrowed for an operation: label -> (checks not run, why). Each
# entry is a refusal the document cannot express (a value that must name something existing
# or be issued by the server), not a limit left undocumented.
_VALID_ONLY_IF = ("positive_data_acceptance",)
_STACK = "/api/stacks/{orgName}/{projectName}/{stackName}"
NARROWED: dict[str, tuple[tuple[str, ...], str]] = {
    # Values only the server issues or knows.
    **{
        label: (_VALID_ONLY_IF, "a continuation token is one a previous page returned")
        for label in (
            "GET /api/user/stacks",
            "GET /api/orgs/{orgName}/auditlogs",
            "GET /api/orgs/{orgName}/auditlogs/export",
            f"GET {_STACK}/deployments/{{deploymentId}}/logs",
        )
    },
    **{
        label: (_VALID_ONLY_IF, "a ciphertext must be one this stack's key produced")
        for label in (f"POST {_STACK}/decrypt", f"POST {_STACK}/batch-decrypt")
    },
    f"POST {_STACK}/encrypt": (_VALID_ONLY_IF, "'plaintext' must decode as base64"),
    f"POST {_STACK}/batch-encrypt": (_VALID_ONLY_IF, "'plaintexts' must decode as base64"),
    "GET /api/admin/auditlogs/export": (_VALID_ONLY_IF, "'eventFilter' names a known event"),
    **{
        f"GET {_STACK}/resources/{at}/{{urn}}": (_VALID_ONLY_IF, "the URN's syntax is not typed")
        for at in ("latest", "{version}")
    },
    # Values that must agree with the clock, the path or the stack's state.
    **{
        label: (_VALID_ONLY_IF, "'expires' must be in the future")
        for label in (
            "POST /api/user/tokens",
            "POST /api/orgs/{orgName}/tokens",
            "POST /api/orgs/{orgName}/teams/{teamName}/tokens",
        )
    },
    **{
        label: (_VALID_ONLY_IF, "'organizationName' (and the stack) must be the path's")
        for label in (
            "POST /api/orgs/{orgName}/hooks",
            "PATCH /api/orgs/{orgName}/hooks/{hookName}",
            f"POST {_STACK}/hooks",
            f"PATCH {_STACK}/hooks/{{hookName}}",
        )
    },
    f"POST {_STACK}/transfer": (_VALID_ONLY_IF, "'fromOrg' must be the path's organization"),
    f"POST {_STACK}/import": (
        _VALID_ONLY_IF,
        "JSON Schema calls 4.0 an integer; the CLI could not load such a checkpoint version",
    ),
    f"POST {_STACK}/workflow": (_VALID_ONLY_IF, "the stack must carry a runtime tag"),
    "POST /api/ai/chat/preview": (_VALID_ONLY_IF, "'orgId' must be one of the caller's"),
    "POST /api/orgs/{orgName}/oidc/issuers": (
        _VALID_ONLY_IF,
        "registering fetches the issuer's https URL, which the fuzzer must not reach",
    ),
    # Schedules: a time must lie in the future, and a cron expression's fields must hold
    # values croniter accepts (ranges, steps, names per field) that name a day that exists
    # (not `0 0 30 2 *`); the document types the five-field shape and which members a
    # schedule needs.
    **{
        label: (
            _VALID_ONLY_IF,
            "'scheduleOnce' must be in the future; a cron expression's field values must be "
            "ones croniter accepts and name a day that exists",
        )
        for label in (
            f"POST {_STACK}/deployments/schedules",
            f"POST {_STACK}/deployments/schedules/{{scheduleID}}",
        )
    },
    **{
        label: (_VALID_ONLY_IF, "'timestamp' must be in the future")
        for label in (
            f"POST {_STACK}/deployments/ttl/schedules",
            f"POST {_STACK}/deployments/ttl/schedules/{{scheduleID}}",
        )
    },
    **{
        label: (
            _VALID_ONLY_IF,
            "a cron expression's field values must be ones croniter accepts and name a day "
            "that exists",
        )
        for label in (
            f"POST {_STACK}/deployments/drift/schedules",
            f"POST {_STACK}/deployments/drift/schedules/{{scheduleID}}",
        )
    },
}


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


def _exchange(case: Case[Any], response: Response) -> str:
    """The request sent and, for a refusal, the error body (never a success body: some hold
    tokens)."""
    sent = f"sent: {case.method} {case.formatted_path} query={case.query!r}"
    if case.body is not None and not isinstance(case.body, NotSet):
        sent += f" body={json.dumps(case.body, default=repr)[:600]}"
    answered = f"answered: {response.status_code}"
    if response.status_code >= 400:
        answered += f" {response.text[:300]}"
    return f"{sent}\n{answered}"


def _fuzz_operation(
    operation: APIOperation[Any, Any, Any, Any], base_url: str, session: requests.Session
) -> set[int] | None:
    """Run the generated cases of one operation; the statuses a credential route answered."""
    names = {parameter.name for parameter in operation.path_parameters}
    known = {name: value for name, value in KNOWN.items() if name in names}
    # The credential is fixed, so negative cases never consist of a missing one only (the
    # credential routes are sent the wrong one on purpose).
    strategies = [
        operation.as_strategy(generation_mode=mode, headers=AUTHORIZATION)
        for mode in GenerationMode
    ]
    if known:
        strategies += [
            operation.as_strategy(
                generation_mode=mode, path_parameters=known, headers=AUTHORIZATION
            )
            for mode in GenerationMode
        ]
    strategy = st.one_of(strategies)
    security = operation.definition.raw.get("security") or [{}]
    is_credential_route = any(name in CREDENTIAL_SCHEMES for name in security[0])
    statuses: set[int] = set()
    excluded = NARROWED.get(operation.label, ((), ""))[0]
    checks = [check for check in CHECKS if check.__name__ not in excluded]

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
        try:
            case.validate_response(response, checks=checks, headers=HEADERS)
        except (Exception, BaseExceptionGroup) as error:
            raise AssertionError(f"{_describe(error)}\n{_exchange(case, response)}") from None
        # An invalid request may be refused for its shape before its credential is read.
        if case.meta is None or case.meta.generation.mode.is_positive:
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


# Valid and invalid cases with every check take longer than the suite's default timeout on
# a busy machine; this is a bound against a hung run, not a speed budget.
@pytest.mark.timeout(900)
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
    labels = {
        f"{method.upper()} {path}" for path, item in document["paths"].items() for method in item
    }
    assert set(NARROWED) <= labels, (
        f"narrowed operations not in the document: {set(NARROWED) - labels}"
    )
    assert not failures, "\n\n".join(failures)
    assert credential_statuses, "no update-token or agent route was fuzzed"
    wrong = {label: seen for label, seen in credential_statuses.items() if seen != {401}}
    assert not wrong, f"routes answering an access token with other than 401: {wrong}"
