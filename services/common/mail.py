"""Outgoing mail (invitation links) over SMTP, with the standard library in a worker thread.

Nothing is sent unless `CAIRN_SMTP_HOST` is set. A failed send is logged without the message
(which carries a link that works like a password) and reported as False; callers never fail
because mail could not go out.
"""

from __future__ import annotations

import asyncio
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage

from services.common.config import Settings
from services.common.logging import get_logger

log = get_logger("cairn.mail")


@dataclass(frozen=True)
class Mail:
    to: str
    subject: str
    body: str


class Mailer:
    """Sends plain-text mail through the configured SMTP server, if any."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings

    @property
    def is_configured(self) -> bool:
        return bool(self._settings.smtp_host)

    async def send(self, mail: Mail) -> bool:
        """Send one message; False (logged) when it could not be sent or mail is off."""
        if not self.is_configured:
            return False
        try:
            await asyncio.wait_for(
                asyncio.to_thread(self._send, mail),
                timeout=self._settings.smtp_timeout_seconds * 2,
            )
        except (OSError, smtplib.SMTPException, TimeoutError, ValueError) as error:
            # Never the message: its link is a credential.
            log.warning("mail_not_sent", error=type(error).__name__)
            return False
        log.info("mail_sent")
        return True

    def _send(self, mail: Mail) -> None:
        settings = self._settings
        message = EmailMessage()
        message["From"] = settings.smtp_from or f"cairn@{settings.smtp_host}"
        message["To"] = mail.to
        message["Subject"] = mail.subject
        message.set_content(mail.body)
        with smtplib.SMTP(
            settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds
        ) as client:
            if settings.smtp_starttls:
                client.starttls(context=ssl.create_default_context())
            if settings.smtp_username:
                password = settings.smtp_password
                client.login(
                    settings.smtp_username, password.get_secret_value() if password else ""
                )
            client.send_message(message)
