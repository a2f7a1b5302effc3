"""The one rule for checking an access token against a stack, for REST routes and for
service methods called with a token alike."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import grpc

from protos.cairn.v1 import common_pb2, identity_pb2, stacks_pb2

if TYPE_CHECKING:
    from protos.cairn.v1.identity_pb2_grpc import IdentityServiceAsyncStub
    from protos.cairn.v1.stacks_pb2_grpc import StacksServiceAsyncStub


async def authorize_stack(
    identity: IdentityServiceAsyncStub,
    stacks: StacksServiceAsyncStub,
    lookup: stacks_pb2.GetStackRequest,
    *,
    token: str,
    permission: identity_pb2.StackPermission.ValueType,
    manages_access: bool,
    options: dict[str, Any],
) -> tuple[stacks_pb2.Stack, identity_pb2.AuthorizeResponse]:
    """Resolve the stack, then check the token's permission on it; raises the peers' errors.

    Grants are kept per stable stack id, so the stack is looked up first. When a lookup by
    path fails, the caller's organization check runs and its failure wins: an outsider gets
    the same 404 whether or not the stack exists.
    """
    try:
        stack = await stacks.GetStack(lookup, **options)
    except grpc.aio.AioRpcError:
        if lookup.HasField("ref"):
            await identity.Authorize(
                identity_pb2.AuthorizeRequest(
                    token=token,
                    organization=lookup.ref.organization,
                    minimum_role=common_pb2.ROLE_VIEWER,
                ),
                **options,
            )
        raise
    authorized: identity_pb2.AuthorizeResponse = await identity.Authorize(
        identity_pb2.AuthorizeRequest(
            token=token,
            organization=stack.ref.organization,
            stack_id=stack.id,
            minimum_stack_permission=permission,
            stack_owner_login=stack.owner_login,
            manages_access=manages_access,
        ),
        **options,
    )
    return stack, authorized
