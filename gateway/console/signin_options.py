"""Which sign-in options the console offers besides an access token."""

from __future__ import annotations

from urllib.parse import urlsplit

from services.common.config import Settings


def provider_name(settings: Settings) -> str:
    """What the single sign-on button names: the setting, else the issuer's host; '' when
    single sign-on is off (no issuer or client id)."""
    if not (settings.oidc_issuer and settings.oidc_client_id):
        return ""
    return settings.oidc_display_name or urlsplit(settings.oidc_issuer).hostname or "SSO"
