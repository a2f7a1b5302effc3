"""Invitation links by mail: a local SMTP sink on loopback receives the message, and its link
works; without SMTP settings nothing is sent; a failed send never fails the invitation."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import Message
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from structlog.testing import capture_logs

from services.common.config import Settings
from tests.gateway.conftest import AiohttpClient, Cairn, running_cairn

LINK = re.compile(r"http://\S+/join\?code=\S+")


@dataclass
class Sink:
    """Keeps every message it is given."""

    messages: list[Message] = field(default_factory=list)

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.original_content or b""
        self.messages.append(message_from_bytes(content))
        return "250 OK"


@pytest.fixture
async def sink() -> AsyncIterator[tuple[Sink, int]]:
    """An SMTP server on 127.0.0.1 (a free port), served by this test's event loop."""
    handler = Sink()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: SMTP(handler), host="127.0.0.1", port=0)
    port = server.sockets[0].getsockname()[1]
    try:
        yield handler, port
    finally:
        server.close()
        await server.wait_closed()


def mail_settings(settings: Settings, port: int) -> Settings:
    return settings.model_copy(
        update={
            "smtp_host": "127.0.0.1",
            "smtp_port": port,
            "smtp_starttls": False,
            "smtp_from": "cairn@example.com",
            "smtp_timeout_seconds": 5.0,
        }
    )


async def invite(cairn: Cairn, email: str) -> dict[str, Any]:
    reply = await cairn.json(
        "POST", "/api/orgs/admin/invites/batch", body={"invites": [{"email": email}]}
    )
    (sent,) = reply["sentInvites"]
    assert isinstance(sent, dict)
    return sent


async def test_the_mailed_link_works(
    settings: Settings, aiohttp_client: AiohttpClient, sink: tuple[Sink, int]
) -> None:
    handler, port = sink
    async for cairn in running_cairn(mail_settings(settings, port), aiohttp_client):
        sent = await invite(cairn, "ivy@example.com")
        (mail,) = handler.messages
        assert mail["To"] == "ivy@example.com"
        assert mail["From"] == "cairn@example.com"
        assert "admin" in mail["Subject"]
        body = mail.get_payload(decode=True)
        assert isinstance(body, bytes)
        (link,) = LINK.findall(body.decode())
        assert link == sent["acceptInviteUrl"]
        code = parse_qs(urlsplit(link).query)["code"][0]
        joined = await cairn.json(
            "POST", "/api/invites/accept", 201, token=None, body={"code": code, "login": "ivy"}
        )
        assert joined["user"]["email"] == "ivy@example.com"
        # Invitations of registered users are not mailed.
        await cairn.json("POST", "/api/admin/users", 201, body={"login": "jo", "email": "j@e.io"})
        await invite(cairn, "jo")
        assert len(handler.messages) == 1


async def test_nothing_is_sent_without_smtp_settings(
    settings: Settings, aiohttp_client: AiohttpClient, sink: tuple[Sink, int]
) -> None:
    handler, _ = sink
    async for cairn in running_cairn(settings, aiohttp_client):
        await invite(cairn, "kim@example.com")
        assert handler.messages == []


async def test_a_failed_send_is_logged_without_the_link(
    settings: Settings, aiohttp_client: AiohttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    # A port nobody listens on: bound, then closed.
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    caplog.set_level(logging.DEBUG)
    async for cairn in running_cairn(mail_settings(settings, closed_port), aiohttp_client):
        with capture_logs() as captured:
            sent = await invite(cairn, "lee@example.com")
        link = sent["acceptInviteUrl"]
        code = parse_qs(urlsplit(link).query)["code"][0]
        assert any(entry["event"] == "mail_not_sent" for entry in captured)
        logged = repr(captured) + caplog.text + repr([r.__dict__ for r in caplog.records])
        assert code not in logged
        await cairn.json(
            "POST", "/api/invites/accept", 201, token=None, body={"code": code, "login": "lee"}
        )
