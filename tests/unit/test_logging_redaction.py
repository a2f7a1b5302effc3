"""The one logging setup: no token in any line, no local variable in any traceback."""

from __future__ import annotations

import secrets
import subprocess
import sys
import textwrap

import pytest

from services.common.auth import new_token
from services.common.logging import REDACTED, mask_tokens, redact

SCRIPT = textwrap.dedent(
    """
    import logging
    import sys

    from services.common.logging import configure_logging, get_logger

    configure_logging(sys.argv[1], "debug")
    access, lease = sys.argv[2], sys.argv[3]


    def fail(lease_token: str) -> None:
        local_marker = "LOCAL" + "MARKER" * 2
        raise ValueError(f"refused token {access}")


    log = get_logger("cairn.test")
    log.info("plain_event", note="visible-marker", header=f"token {access}")
    try:
        fail(lease)
    except ValueError:
        log.exception("rpc_failed", detail=f"update-token {lease}")
    try:
        fail(lease)
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request %s", access)
    logging.getLogger("aiohttp.access").info("GET /x %s", lease)
    """
)


@pytest.mark.parametrize("log_format", ["console", "json"])
def test_process_logs_mask_tokens_and_never_print_locals(log_format: str) -> None:
    access = new_token()
    lease = secrets.token_urlsafe(32)
    result = subprocess.run(
        [sys.executable, "-c", SCRIPT, log_format, access, lease],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    output = result.stdout + result.stderr
    # The scan means something: the events, tracebacks and stdlib records are all there.
    for marker in ("plain_event", "visible-marker", "rpc_failed", "Error handling request"):
        assert marker in output
    assert output.count("Traceback (most recent call last)") == 2
    assert "refused token [secret]" in output
    assert access not in output
    assert lease not in output
    # A local variable's value appears only where locals are printed.
    assert "LOCALMARKERMARKER" not in output
    assert "lease_token =" not in output


def test_sensitive_fields_are_replaced_whole_and_values_masked() -> None:
    token = new_token()
    event = redact(
        None,
        "info",
        {"event": "e", "authorization": "token x", "path": "/a", "token_id": "1", "body": "{}"},
    )
    assert event == {
        "event": "e",
        "authorization": REDACTED,
        "path": "/a",
        "token_id": "1",  # identifiers stay: lines are correlated by them
        "body": REDACTED,
    }
    # An identifier field holding a token is still masked by the last line of defence.
    assert mask_tokens(None, "info", {"token_id": token})["token_id"] == "[secret]"
    masked = mask_tokens(
        None,
        "info",
        {"event": f"bad {token}", "nested": {"list": [f"x {token}", 3]}, "error": KeyError(token)},
    )
    assert token not in repr(masked)
    assert masked["nested"] == {"list": ["x [secret]", 3]}
