"""gRPC edge of the webhooks (hosted by the stacks process): protobuf <-> records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from protos.cairn.v1 import hooks_pb2, hooks_pb2_grpc, secrets_pb2
from services.common.auth import Caller
from services.common.clock import Clock
from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.hook_events import Outbox, OutboxDispatcher, hook_event
from services.common.service import Database
from services.stacks.domain import StackRecord
from services.stacks.hooks.delivery import DeliveryPolicy, Sender, parse_networks
from services.stacks.hooks.domain import (
    Delivery,
    DeploymentOutcome,
    DriftOutcome,
    HookEvent,
    HookRecord,
    HookScope,
    HookSpec,
    StackNames,
    UpdateOutcome,
)
from services.stacks.hooks.service import Hooks, SecretBox, StackById, StackByPath
from services.stacks.hooks.store import HookStore
from services.stacks.models import HOOK_OUTBOX

if TYPE_CHECKING:
    from protos.cairn.v1.secrets_pb2_grpc import SecretsServiceAsyncStub

HOOK_SERVICE_NAME = hooks_pb2.DESCRIPTOR.services_by_name["HookService"].full_name
Context = grpc.aio.ServicerContext[Any, Any]
# Hook secrets are kept under a secrets-service key of their own per hook.
KEY_PREFIX = "hook-"


class SecretsServiceBox:
    """Hook secrets encrypted by the secrets service (its master key wraps every key)."""

    def __init__(self, stub: SecretsServiceAsyncStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def encrypt(self, hook_id: str, plaintext: bytes) -> bytes:
        reply = await self._stub.Encrypt(
            secrets_pb2.EncryptRequest(stack_id=KEY_PREFIX + hook_id, plaintext=plaintext),
            timeout=self._timeout,
        )
        return reply.ciphertext

    async def decrypt(self, hook_id: str, ciphertext: bytes) -> bytes:
        reply = await self._stub.Decrypt(
            secrets_pb2.DecryptRequest(stack_id=KEY_PREFIX + hook_id, ciphertext=ciphertext),
            timeout=self._timeout,
        )
        return reply.plaintext

    async def forget(self, hook_id: str) -> None:
        await self._stub.DeleteStackKey(
            secrets_pb2.DeleteStackKeyRequest(stack_id=KEY_PREFIX + hook_id),
            timeout=self._timeout,
        )


class HookEventIntake:
    """The stacks process's webhook outbox: events of its own stack changes (written in their
    transactions, see StackStore) and those other services publish; its dispatcher hands
    each to `Hooks.dispatch`."""

    def __init__(self, outbox: Outbox, dispatcher: OutboxDispatcher, clock: Clock) -> None:
        self.outbox = outbox
        self.dispatcher = dispatcher
        self._clock = clock

    async def publish(self, request: hooks_pb2.PublishEventRequest) -> None:
        await self.outbox.publish(request)
        self.dispatcher.wake()

    def event(
        self, stack: StackRecord, action: str, user_login: str
    ) -> hooks_pb2.PublishEventRequest:
        """A stack's created, deleted, renamed or transferred event, names as it leaves it."""
        return hook_event(
            stack.id,
            f"stack_{action}",
            at=self._clock.now(),
            user_login=user_login,
            organization=stack.path.organization,
            project=stack.path.project,
            stack_name=stack.path.stack,
        )

    def written(self) -> None:
        self.dispatcher.wake()


class PurgeStackHooks:
    """The purge step of a deleted stack's own webhooks (kept while it may be restored)."""

    name = "webhooks"

    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

    async def __call__(self, stack: StackRecord, caller: Caller) -> None:
        await self._hooks.purge_stack(stack.id)


def event_of(request: hooks_pb2.PublishEventRequest) -> HookEvent:
    update = None
    if request.HasField("update"):
        outcome = request.update
        update = UpdateOutcome(
            update_id=outcome.update_id,
            kind=outcome.kind,
            result=outcome.result,
            version=outcome.version,
            resource_changes=dict(outcome.resource_changes),
            duration_seconds=outcome.duration_seconds,
        )
    deployment = None
    if request.HasField("deployment"):
        deployment = DeploymentOutcome(
            deployment_id=request.deployment.deployment_id,
            version=request.deployment.version,
            operation=request.deployment.operation,
            status=request.deployment.status,
        )
    drift = None
    if request.HasField("drift"):
        found = request.drift
        drift = DriftOutcome(
            drift_run_id=found.drift_run_id,
            drift_detected=found.drift_detected,
            resource_changes=dict(found.resource_changes),
            deployment_id=found.deployment_id,
            deployment_version=found.deployment_version,
            remediation_deployment_id=found.remediation_deployment_id,
        )
    names = None
    if request.organization:
        names = StackNames(request.organization, request.project, request.stack_name)
    return HookEvent(
        stack_id=request.stack_id,
        event=request.event,
        user_login=request.user_login,
        names=names,
        update=update,
        deployment=deployment,
        drift=drift,
        timestamp=request.timestamp,
        occurred_at_us=request.occurred_at_us,
    )


class HookServicer(hooks_pb2_grpc.HookServiceServicer):
    def __init__(self, hooks: Hooks, intake: HookEventIntake) -> None:
        self._hooks = hooks
        self._intake = intake

    async def CreateHook(
        self, request: hooks_pb2.CreateHookRequest, context: Context
    ) -> hooks_pb2.Hook:
        scope = _scope(request.scope)
        return _hook(scope, await self._hooks.create(scope, _spec(request.spec)))

    async def ListHooks(
        self, request: hooks_pb2.ListHooksRequest, context: Context
    ) -> hooks_pb2.ListHooksResponse:
        scope = _scope(request.scope)
        hooks = await self._hooks.list_hooks(scope)
        return hooks_pb2.ListHooksResponse(hooks=[_hook(scope, hook) for hook in hooks])

    async def GetHook(self, request: hooks_pb2.GetHookRequest, context: Context) -> hooks_pb2.Hook:
        scope = _scope(request.scope)
        return _hook(scope, await self._hooks.get(scope, request.name))

    async def UpdateHook(
        self, request: hooks_pb2.UpdateHookRequest, context: Context
    ) -> hooks_pb2.Hook:
        scope = _scope(request.scope)
        return _hook(scope, await self._hooks.update(scope, request.name, _spec(request.spec)))

    async def DeleteHook(
        self, request: hooks_pb2.DeleteHookRequest, context: Context
    ) -> hooks_pb2.DeleteHookResponse:
        await self._hooks.delete(_scope(request.scope), request.name)
        return hooks_pb2.DeleteHookResponse()

    async def ListHookDeliveries(
        self, request: hooks_pb2.ListHookDeliveriesRequest, context: Context
    ) -> hooks_pb2.ListHookDeliveriesResponse:
        deliveries = await self._hooks.deliveries(_scope(request.scope), request.name)
        return hooks_pb2.ListHookDeliveriesResponse(deliveries=[_delivery(d) for d in deliveries])

    async def PingHook(
        self, request: hooks_pb2.PingHookRequest, context: Context
    ) -> hooks_pb2.HookDelivery:
        return _delivery(await self._hooks.ping(_scope(request.scope), request.name))

    async def RedeliverHookEvent(
        self, request: hooks_pb2.RedeliverHookEventRequest, context: Context
    ) -> hooks_pb2.HookDelivery:
        delivery = await self._hooks.redeliver(
            _scope(request.scope), request.name, request.delivery_id
        )
        return _delivery(delivery)

    async def PublishEvent(
        self, request: hooks_pb2.PublishEventRequest, context: Context
    ) -> hooks_pb2.PublishEventResponse:
        if not request.stack_id or not request.event:
            raise InvalidArgument("Bad Request: an event needs a stack id and a kind")
        await self._intake.publish(request)
        return hooks_pb2.PublishEventResponse(accepted=True)


def hook_service(
    settings: Settings,
    database: Database,
    clock: Clock,
    secrets: SecretsServiceAsyncStub,
    *,
    stack_by_id: StackById,
    stack_by_path: StackByPath,
) -> tuple[HookServicer, Hooks, HookEventIntake]:
    """The servicer, the hooks it serves and the outbox intake (both closed by the process
    at shutdown; the intake's dispatcher is started once the server runs)."""
    store = HookStore(database.sessions)
    box = SecretsServiceBox(secrets, settings.grpc_timeout_seconds)
    policy = DeliveryPolicy(
        timeout_seconds=settings.webhook_timeout_seconds,
        attempts=settings.webhook_attempts,
        backoff_seconds=settings.webhook_backoff_seconds,
        denied_networks=parse_networks(settings.webhook_denied()),
    )

    def sender(store: HookStore, box: SecretBox) -> Sender:
        async def secret_of(hook: HookRecord) -> bytes | None:
            if hook.secret_ciphertext is None:
                return None
            return await box.decrypt(hook.id, hook.secret_ciphertext)

        return Sender(policy, secret_of, store.add_delivery)

    hooks = Hooks(
        store,
        box,
        stack_by_id=stack_by_id,
        stack_by_path=stack_by_path,
        sender_factory=sender,
        clock=clock,
        public_url=settings.public_url,
    )

    async def dispatch(request: hooks_pb2.PublishEventRequest) -> None:
        await hooks.dispatch(event_of(request))

    outbox = Outbox(database.sessions, database.reads, HOOK_OUTBOX, database.engine.dialect.name)
    dispatcher = OutboxDispatcher(
        outbox,
        dispatch,
        lease_seconds=delivery_lease(policy),
        poll_seconds=settings.webhook_poll_seconds,
        name="stacks",
    )
    intake = HookEventIntake(outbox, dispatcher, clock)
    return HookServicer(hooks, intake), hooks, intake


def delivery_lease(policy: DeliveryPolicy) -> float:
    """A claim outlives every attempt of one event with its backoff (its hooks are sent to at
    once), plus room for the database and secrets calls around them."""
    backoff = policy.backoff_seconds * 2.0 ** max(0, policy.attempts - 1)
    return policy.attempts * policy.timeout_seconds + backoff + policy.timeout_seconds + 5.0


def _scope(message: hooks_pb2.HookScope) -> HookScope:
    return HookScope(
        organization=message.organization, project=message.project, stack=message.stack
    )


def _spec(message: hooks_pb2.HookSpec) -> HookSpec:
    return HookSpec(
        name=message.name,
        display_name=message.display_name,
        payload_url=message.payload_url,
        active=message.active,
        format=message.format,
        filters=tuple(message.filters),
        groups=tuple(message.groups),
        secret=message.secret if message.has_secret else None,
    )


def _hook(scope: HookScope, hook: HookRecord) -> hooks_pb2.Hook:
    return hooks_pb2.Hook(
        scope=hooks_pb2.HookScope(
            organization=scope.organization, project=scope.project, stack=scope.stack
        ),
        name=hook.name,
        display_name=hook.display_name,
        payload_url=hook.payload_url,
        active=hook.active,
        format=hook.format,
        filters=list(hook.filters),
        groups=list(hook.groups),
        has_secret=hook.has_secret,
    )


def _delivery(delivery: Delivery) -> hooks_pb2.HookDelivery:
    return hooks_pb2.HookDelivery(
        id=delivery.id,
        kind=delivery.kind,
        payload=delivery.payload,
        timestamp=delivery.timestamp,
        duration_ms=delivery.duration_ms,
        request_url=delivery.request_url,
        request_headers=delivery.request_headers,
        response_code=delivery.response_code,
        response_headers=delivery.response_headers,
        response_body=delivery.response_body,
    )
