"""Pure rules of the console's signed-out sessions: what a session id and its expiry are."""

from __future__ import annotations

import re

from services.common.errors import InvalidArgument

# The gateway draws 32 random bytes, base64url without padding.
_SESSION_ID = re.compile(r"^[A-Za-z0-9_-]{22,64}$")
# No console session lasts longer; a later expiry is a caller's mistake, not a session.
MAX_SESSION_SECONDS = 30 * 24 * 60 * 60


def validate_session_id(value: str) -> str:
    if not _SESSION_ID.match(value):
        raise InvalidArgument("Bad Request: a console session id is 22 to 64 base64url characters")
    return value


def check_session_expiry(expires_at: int, now: int) -> None:
    """Refuse an expiry no console session could have."""
    if expires_at > now + MAX_SESSION_SECONDS:
        raise InvalidArgument("Bad Request: a console session expires within 30 days")


def is_worth_recording(expires_at: int, now: int) -> bool:
    """A session that has expired already needs no record: its cookie is refused anyway."""
    return expires_at > now
