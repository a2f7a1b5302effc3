"""The stack-creation body, decoded once by the stacks service."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from services.common import rawjson
from services.common.errors import InvalidArgument
from services.stacks import bodies
from services.stacks.bodies import stack_creation
from services.stacks.domain import StackConfig

STATE = b'{ "version": 3, "deployment": {"manifest": {"time": "t\\u00e9"}} }'


def test_one_pass_keeps_the_states_exact_bytes_unparsed(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, ...]] = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        calls.append(args)
        return rawjson.decode_members(*args, **kwargs)

    monkeypatch.setattr(bodies, "decode_members", counted)
    body = (
        b'{"stackName":"dev","tags":{"a":"b"},"teams":["t"],'
        b'"config":{"environment":"e","secretsProvider":"p"},"state":' + STATE + b"}"
    )
    creation = stack_creation(body)
    assert len(calls) == 1
    assert creation.stack_name == "dev"
    assert creation.tags == {"a": "b"}
    assert creation.teams == ("t",)
    assert creation.config == StackConfig(environment="e", secrets_provider="p")
    assert creation.initial_state == STATE
    assert stack_creation(b'{"stackName":"dev","state":null}').initial_state is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "a JSON request body is required"),
        (b"{not json", "the request body is not valid JSON ("),
        (orjson.dumps(["stackName", "dev"]), "the request body must be a JSON object"),
        (orjson.dumps({"stackName": 7}), "'stackName' must be a string"),
        (orjson.dumps({"tags": {}}), "'stackName' is required"),
        (orjson.dumps({"stackName": "dev", "tags": ["a"]}), "'tags' must be an object"),
        (orjson.dumps({"stackName": "dev", "tags": {"a": 1}}), "'tags' must be an object"),
        (orjson.dumps({"stackName": "dev", "teams": "t"}), "'teams' must be an array"),
        (orjson.dumps({"stackName": "dev", "config": "x"}), "'config' must be an object"),
        (orjson.dumps({"stackName": "dev", "config": {}}), "'config.environment' is required"),
        (orjson.dumps({"stackName": "dev", "state": [1]}), "'state' must be an untyped"),
        (b'{"stackName":"dev","tags":{"a":"\\udc00"}}', "not valid JSON"),
    ],
)
def test_bad_creation_bodies_are_refused_with_the_apis_messages(body: bytes, message: str) -> None:
    with pytest.raises(InvalidArgument) as refused:
        stack_creation(body)
    assert refused.value.message.startswith("Bad Request: ")
    assert message in refused.value.message
