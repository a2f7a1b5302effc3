"""Invitation links as the REST API and the console hand them out: the URL of the console
page that redeems one, the mail that carries it, and the `pulumi login` line that follows.

The link's secret travels in the query string, never in a path: paths are what the audit
trail and the logs name.
"""

from __future__ import annotations

from urllib.parse import quote

from aiohttp import web

from gateway.context import SETTINGS, public_url
from gateway.views import ROLE_LABELS
from protos.cairn.v1 import common_pb2, identity_pb2
from services.common.mail import Mail, Mailer

MAILER = web.AppKey("mailer", Mailer)
# The console page that shows an invitation link and redeems it.
JOIN_PATH = "/join"
# The REST twin of that page.
ACCEPT_LINK_PATH = "/api/invites/accept"


def invite_link(request: web.Request, secret: str) -> str:
    return f"{public_url(request)}{JOIN_PATH}?code={quote(secret, safe='')}"


def login_command(request: web.Request) -> str:
    """How the CLI logs in to this server (the token goes in PULUMI_ACCESS_TOKEN or the
    prompt, never on the command line)."""
    return f"pulumi login {public_url(request)}"


def invitation_mail(request: web.Request, invite: identity_pb2.Invite, link: str) -> Mail:
    role = ROLE_LABELS.get(common_pb2.Role.ValueType(invite.role), "member")
    body = (
        f"{invite.invited_by} invited you to join the organization '{invite.organization}' "
        f"as {role} on {public_url(request)}.\n\n"
        f"Open this link to choose your login and get your access token:\n\n{link}\n\n"
        f"The link works once and expires in {request.app[SETTINGS].invite_ttl_hours} hours. "
        "If you did not expect this invitation, ignore this message.\n"
    )
    return Mail(to=invite.email, subject=f"Join {invite.organization} on Cairn", body=body)


async def send_invitations(
    request: web.Request, invites: list[tuple[identity_pb2.Invite, str]]
) -> None:
    """Mail each new link to its address; failures are logged, never raised."""
    mailer = request.app[MAILER]
    if not mailer.is_configured:
        return
    for invite, link in invites:
        await mailer.send(invitation_mail(request, invite, link))
