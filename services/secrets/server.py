"""gRPC edge of the secrets service: protobuf in, Keyring calls, protobuf out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import grpc

from protos.cairn.v1 import secrets_pb2, secrets_pb2_grpc
from services.common.auth import caller_from_context
from services.common.clock import Clock, SystemClock
from services.common.config import Settings
from services.common.errors import InvalidArgument
from services.common.readiness import database_dependency
from services.common.service import RunningService, open_database, serve_service
from services.secrets import crypto
from services.secrets.domain import (
    KIND_BATCH_DECRYPT,
    KIND_DECRYPT,
    KIND_LOG_BATCH_DECRYPTION,
    KIND_LOG_DECRYPTION,
    DecryptionEvent,
)
from services.secrets.models import Base
from services.secrets.service import Keyring

SERVICE_NAME = secrets_pb2.DESCRIPTOR.services_by_name["SecretsService"].full_name
MIGRATIONS = Path(__file__).parent / "migrations"

Context = grpc.aio.ServicerContext[Any, Any]

_KIND_BY_ENUM: dict[secrets_pb2.DecryptionKind.ValueType, str] = {
    secrets_pb2.DECRYPTION_KIND_DECRYPT: KIND_DECRYPT,
    secrets_pb2.DECRYPTION_KIND_BATCH_DECRYPT: KIND_BATCH_DECRYPT,
    secrets_pb2.DECRYPTION_KIND_LOG_DECRYPTION: KIND_LOG_DECRYPTION,
    secrets_pb2.DECRYPTION_KIND_LOG_BATCH_DECRYPTION: KIND_LOG_BATCH_DECRYPTION,
}
_ENUM_BY_KIND = {kind: value for value, kind in _KIND_BY_ENUM.items()}


class SecretsServicer(secrets_pb2_grpc.SecretsServiceServicer):
    def __init__(self, keyring: Keyring) -> None:
        self._keyring = keyring

    async def Encrypt(
        self, request: secrets_pb2.EncryptRequest, context: Context
    ) -> secrets_pb2.EncryptResponse:
        (ciphertext,) = await self._keyring.encrypt(request.stack_id, [request.plaintext])
        return secrets_pb2.EncryptResponse(ciphertext=ciphertext)

    async def Decrypt(
        self, request: secrets_pb2.DecryptRequest, context: Context
    ) -> secrets_pb2.DecryptResponse:
        (plaintext,) = await self._keyring.decrypt(
            request.stack_id,
            [request.ciphertext],
            user_login=caller_from_context(context).login,
            is_batch=False,
        )
        return secrets_pb2.DecryptResponse(plaintext=plaintext)

    async def BatchEncrypt(
        self, request: secrets_pb2.BatchEncryptRequest, context: Context
    ) -> secrets_pb2.BatchEncryptResponse:
        ciphertexts = await self._keyring.encrypt(request.stack_id, list(request.plaintexts))
        return secrets_pb2.BatchEncryptResponse(ciphertexts=ciphertexts)

    async def BatchDecrypt(
        self, request: secrets_pb2.BatchDecryptRequest, context: Context
    ) -> secrets_pb2.BatchDecryptResponse:
        plaintexts = await self._keyring.decrypt(
            request.stack_id,
            list(request.ciphertexts),
            user_login=caller_from_context(context).login,
            is_batch=True,
        )
        return secrets_pb2.BatchDecryptResponse(plaintexts=plaintexts)

    async def LogDecryption(
        self, request: secrets_pb2.LogDecryptionRequest, context: Context
    ) -> secrets_pb2.LogDecryptionResponse:
        kind = _KIND_BY_ENUM.get(request.kind)
        if kind is None:
            raise InvalidArgument("Bad Request: a decryption kind is required")
        await self._keyring.log_decryption(
            request.stack_id,
            kind,
            user_login=caller_from_context(context).login,
            secret_name=request.secret_name,
            command_name=request.command_name,
        )
        return secrets_pb2.LogDecryptionResponse()

    async def ListDecryptionEvents(
        self, request: secrets_pb2.ListDecryptionEventsRequest, context: Context
    ) -> secrets_pb2.ListDecryptionEventsResponse:
        events = await self._keyring.list_decryption_events(request.stack_id)
        return secrets_pb2.ListDecryptionEventsResponse(events=[_event(e) for e in events])

    async def DeleteStackKey(
        self, request: secrets_pb2.DeleteStackKeyRequest, context: Context
    ) -> secrets_pb2.DeleteStackKeyResponse:
        await self._keyring.delete_stack_key(request.stack_id)
        return secrets_pb2.DeleteStackKeyResponse()


def _event(event: DecryptionEvent) -> secrets_pb2.DecryptionEvent:
    return secrets_pb2.DecryptionEvent(
        id=str(event.id),
        stack_id=event.stack_id,
        kind=_ENUM_BY_KIND.get(event.kind, secrets_pb2.DECRYPTION_KIND_UNSPECIFIED),
        user_login=event.user_login,
        secret_name=event.secret_name,
        command_name=event.command_name,
        value_count=event.value_count,
        created_at=int(event.created_at.timestamp()),
    )


async def start(
    settings: Settings, *, host: str, port: int, clock: Clock | None = None
) -> RunningService:
    """Load the master key, migrate the tables and serve SecretsService."""
    # An empty CAIRN_MASTER_KEY is refused rather than read as unset, so a misconfigured
    # deployment never silently generates a key of its own.
    configured = None if settings.master_key is None else settings.master_key.get_secret_value()
    master_key = crypto.load_master_key(configured, settings.data_dir)
    database = await open_database(settings, "secrets", MIGRATIONS, Base.metadata)
    keyring = Keyring(
        master_key=master_key, sessions=database.sessions, clock=clock or SystemClock()
    )
    servicer = SecretsServicer(keyring)
    return await serve_service(
        name="secrets",
        settings=settings,
        host=host,
        port=port,
        register=lambda server: secrets_pb2_grpc.add_SecretsServiceServicer_to_server(
            servicer, server
        ),
        service_names=[SERVICE_NAME],
        closers=[database.engine.dispose],
        dependencies=[database_dependency(database.engine)],
    )
