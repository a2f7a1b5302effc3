"""gRPC edge of the webhooks (hosted by the stacks process): protobuf <-> records."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from protos.cairn.v1 import hooks_pb2, hooks_pb2_grpc, secrets_pb2
from services.common.clock import Clock
from services.common.config import Settings
from services.common.db import Sessions
from services.stacks.hooks.delivery import DeliveryPolicy, Sender, parse_networks
from services.stacks.hooks.domain import (
    Delivery,
    HookEvent,
    HookRecord,
    HookScope,
    HookSpec,
    UpdateOutcome,
)
from services.stacks.hooks.service import Hooks, SecretBox, StackById, StackByPath
from services.stacks.hooks.store import HookStore

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


class HookServicer(hooks_pb2_grpc.HookServiceServicer):
    def __init__(self, hooks: Hooks) -> None:
        self._hooks = hooks

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
        accepted = self._hooks.submit(
            HookEvent(
                stack_id=request.stack_id,
                event=request.event,
                user_login=request.user_login,
                update=update,
            )
        )
        return hooks_pb2.PublishEventResponse(accepted=accepted)


def hook_service(
    settings: Settings,
    sessions: Sessions,
    clock: Clock,
    secrets: SecretsServiceAsyncStub,
    *,
    stack_by_id: StackById,
    stack_by_path: StackByPath,
) -> tuple[HookServicer, Hooks]:
    """The servicer and the hooks it serves (closed by the process at shutdown)."""
    store = HookStore(sessions)
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
        queue_size=settings.webhook_queue_size,
    )
    return HookServicer(hooks), hooks


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
