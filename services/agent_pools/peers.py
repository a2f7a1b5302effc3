"""What the agent_pools service asks of other services over gRPC: the stack's key in the
secrets service, job tokens in the identity service, and deleting a TTL stack in the stacks
service."""

from __future__ import annotations

import grpc

from protos.cairn.v1 import (
    identity_pb2,
    identity_pb2_grpc,
    secrets_pb2,
    secrets_pb2_grpc,
    stacks_pb2,
    stacks_pb2_grpc,
)
from services.agent_pools.domain import MintedToken
from services.common.errors import from_rpc_error


class SecretsPeer:
    """Encrypts and decrypts settings secrets with the stack's key in the secrets service."""

    def __init__(self, stub: secrets_pb2_grpc.SecretsServiceAsyncStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def encrypt(self, stack_id: str, plaintext: bytes) -> bytes:
        try:
            reply = await self._stub.Encrypt(
                secrets_pb2.EncryptRequest(stack_id=stack_id, plaintext=plaintext),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return reply.ciphertext

    async def decrypt(self, stack_id: str, ciphertext: bytes) -> bytes:
        try:
            reply = await self._stub.Decrypt(
                secrets_pb2.DecryptRequest(stack_id=stack_id, ciphertext=ciphertext),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return reply.plaintext


class IdentityPeer:
    """Mints and revokes the personal access tokens of deployments' jobs in identity."""

    def __init__(self, stub: identity_pb2_grpc.IdentityServiceAsyncStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def mint(self, user_login: str, description: str, expires_at: int) -> MintedToken:
        try:
            reply = await self._stub.CreateAccessToken(
                identity_pb2.CreateAccessTokenRequest(
                    user_login=user_login,
                    scope=_personal(user_login),
                    description=description,
                    expires_at=expires_at,
                ),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None
        return MintedToken(reply.token_id, reply.token)

    async def revoke(self, user_login: str, token_id: str) -> None:
        try:
            await self._stub.RevokeAccessToken(
                identity_pb2.TokenRequest(scope=_personal(user_login), token_id=token_id),
                timeout=self._timeout,
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


class StacksPeer:
    """Deletes a stack (found by its stable id) in the stacks service, which also forgets its
    deployments, schedules and update history."""

    def __init__(self, stub: stacks_pb2_grpc.StacksServiceAsyncStub, timeout: float) -> None:
        self._stub = stub
        self._timeout = timeout

    async def delete_stack(self, stack_id: str) -> None:
        try:
            stack = await self._stub.GetStack(
                stacks_pb2.GetStackRequest(stack_id=stack_id), timeout=self._timeout
            )
            await self._stub.DeleteStack(
                stacks_pb2.DeleteStackRequest(ref=stack.ref), timeout=self._timeout
            )
        except grpc.aio.AioRpcError as error:
            raise from_rpc_error(error) from None


def _personal(user_login: str) -> identity_pb2.TokenScope:
    return identity_pb2.TokenScope(kind=identity_pb2.TOKEN_KIND_PERSONAL, user_login=user_login)
