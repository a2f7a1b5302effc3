"""The console's pages: path, handler, and the access rule each one shares with the REST API.

A page that shows what a REST route returns is authorised by that route's own `Route`
(`ROUTES_BY_OPERATION[...]`), through the same `authorize` the API middleware calls, so the
two cannot drift apart. Pages without a REST twin state their rule here.
"""

from __future__ import annotations

from dataclasses import dataclass

from gateway.console import admin, deployments, handlers, hooks, people, schedules, sso
from gateway.route import Access, Handler, Route
from gateway.routes import ROUTES_BY_OPERATION
from services.common.call_access import VIEWER

STACK = "/orgs/{orgName}/{projectName}/{stackName}"
VERSION = r"{version:\d+}"


class Guard:
    """Who may open a page besides those a `Route` admits."""

    PUBLIC = "public"  # anyone; no session needed
    SESSION = "session"  # a session (not checked with the identity service: sign-out)


@dataclass(frozen=True)
class Page:
    method: str
    path: str
    handler: Handler
    # The rule the page is authorised by, or a Guard for pages that authorise nothing.
    requires: Route | str
    # The fallback for unknown paths stays unnamed, so metrics count it as unmatched.
    is_fallback: bool = False

    @property
    def name(self) -> str | None:
        return None if self.is_fallback else f"console_{self.handler.__name__}"


def api(operation_id: str) -> Route:
    """The access rule of the REST route a page mirrors."""
    return ROUTES_BY_OPERATION[operation_id]


# An organization's stacks: like `GET /api/user/stacks?organization=`, but an outsider gets a
# 404 for the organization rather than an empty list.
ORGANIZATION = Route("GET", "/orgs/{orgName}", handlers.stacks, Access.ORG, VIEWER)

PAGES: tuple[Page, ...] = (
    Page("GET", "/", handlers.organizations, api("get_current_user")),
    Page("GET", "/signin", handlers.sign_in_form, Guard.PUBLIC),
    Page("POST", "/signin", handlers.sign_in, Guard.PUBLIC),
    Page("GET", "/signin/oidc", sso.sign_in_with_oidc, Guard.PUBLIC),
    Page("GET", "/signin/oidc/callback", sso.oidc_callback, Guard.PUBLIC),
    Page("POST", "/signout", handlers.sign_out, Guard.SESSION),
    Page("GET", "/static/{name}", handlers.static, Guard.PUBLIC),
    Page("GET", "/copilot", handlers.copilot, api("copilot_skill")),
    Page("POST", "/copilot", handlers.copilot_chat, api("copilot_skill")),
    Page("GET", "/orgs/{orgName}", handlers.stacks, ORGANIZATION),
    Page("GET", "/orgs/{orgName}/agent-pools", handlers.agent_pools, api("list_org_agent_pool")),
    Page(
        "GET",
        "/orgs/{orgName}/deployments",
        deployments.org_deployments,
        api("list_org_deployments"),
    ),
    Page("GET", "/orgs/{orgName}/hooks", hooks.org_hooks, api("list_organization_webhooks")),
    # POST only: no stack page answers a POST at `/orgs/o/p/s/ping`.
    Page(
        "POST",
        "/orgs/{orgName}/hooks/{hookName}/ping",
        hooks.ping_org_hook,
        api("ping_organization_webhook"),
    ),
    Page("GET", "/orgs/{orgName}/people", people.people, api("list_org_invites")),
    Page(
        "POST",
        "/orgs/{orgName}/people/invite",
        people.invite,
        api("batch_create_org_invite_email"),
    ),
    Page("POST", "/orgs/{orgName}/people/cancel", people.cancel_invite, api("cancel_org_invite")),
    Page("GET", "/users", people.users, api("list_users")),
    Page("POST", "/users", people.create_user, api("create_user")),
    Page("POST", "/users/{login}/disable", people.disable_user, api("disable_user")),
    Page("POST", "/users/{login}/enable", people.enable_user, api("enable_user")),
    Page("POST", "/users/{login}/token", people.reissue_token, api("enable_user")),
    # Public: the link's code is the credential; the page never needs a session.
    Page("GET", "/join", people.join_form, Guard.PUBLIC),
    Page("POST", "/join", people.join, Guard.PUBLIC),
    Page("GET", "/orgs/{orgName}/audit", admin.audit_log, api("list_audit_log_events_handler_v1")),
    # Two segments, so no stack path (`/orgs/o/p/s`) is ever shadowed.
    Page(
        "GET",
        "/orgs/{orgName}/audit.{format:csv|json}",
        admin.audit_export,
        api("export_audit_log_events_handler_v1"),
    ),
    Page("GET", STACK, handlers.stack, api("get_stack")),
    Page("GET", f"{STACK}/updates", handlers.updates, api("get_stack_updates")),
    Page("GET", f"{STACK}/updates/{VERSION}", handlers.update, api("get_update_events")),
    Page("GET", f"{STACK}/updates/{VERSION}/live", handlers.update_live, api("get_update_events")),
    Page("GET", f"{STACK}/resource", handlers.resource, api("export_stack")),
    Page(
        "GET",
        f"{STACK}/deployments",
        deployments.stack_deployments,
        api("list_stack_deployments_handler_v2"),
    ),
    Page("GET", f"{STACK}/hooks", hooks.stack_hooks, api("list_stack_webhooks")),
    Page(
        "POST", f"{STACK}/hooks/{{hookName}}/ping", hooks.ping_stack_hook, api("ping_stack_webhook")
    ),
    Page(
        "GET",
        f"{STACK}/deployments/schedules",
        schedules.schedules,
        api("list_scheduled_deployment"),
    ),
    Page(
        "POST",
        f"{STACK}/deployments/schedules/{{scheduleID}}/pause",
        schedules.pause_schedule,
        api("pause_scheduled_deployment"),
    ),
    Page(
        "POST",
        f"{STACK}/deployments/schedules/{{scheduleID}}/resume",
        schedules.resume_schedule,
        api("resume_scheduled_deployment"),
    ),
    # The `consoleUrl` a created deployment answers with.
    Page("GET", f"{STACK}/deployments/{VERSION}", deployments.deployment, api("get_deployment")),
    Page(
        "GET",
        f"{STACK}/deployments/{VERSION}/live",
        deployments.deployment_live,
        api("get_deployment_logs"),
    ),
    Page(
        "POST",
        f"{STACK}/deployments/{VERSION}/cancel",
        deployments.cancel,
        api("cancel_deployment"),
    ),
    # Last: every other path outside /api/ gets the console's 404 page.
    Page("GET", r"/{path:(?!api/).*}", handlers.not_found, Guard.PUBLIC, is_fallback=True),
)
