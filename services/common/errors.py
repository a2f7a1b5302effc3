"""Domain exceptions and the one table that maps them to gRPC status codes."""

from __future__ import annotations

import grpc


class DomainError(Exception):
    """Base class; `message` is public and reaches the API caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(DomainError):
    code = grpc.StatusCode.INVALID_ARGUMENT


class OutOfRange(DomainError):
    code = grpc.StatusCode.OUT_OF_RANGE


class Unauthenticated(DomainError):
    code = grpc.StatusCode.UNAUTHENTICATED


class PermissionDenied(DomainError):
    code = grpc.StatusCode.PERMISSION_DENIED


class NotFound(DomainError):
    code = grpc.StatusCode.NOT_FOUND


class AlreadyExists(DomainError):
    code = grpc.StatusCode.ALREADY_EXISTS


class Aborted(DomainError):
    """A lost race: stale lease token or version."""

    code = grpc.StatusCode.ABORTED


class FailedPrecondition(DomainError):
    """The target is in the wrong state (update finished, another update active, ...)."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class ResourceExhausted(DomainError):
    code = grpc.StatusCode.RESOURCE_EXHAUSTED


class Unavailable(DomainError):
    """A dependency (database, Redis, another service) cannot be reached."""

    code = grpc.StatusCode.UNAVAILABLE


class Gone(DomainError):
    """What was asked for existed and was let go on purpose (a version's state pruned by
    retention): HTTP 410. gRPC has no such code, so the message's prefix carries it."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    PREFIX = "Gone: "

    def __init__(self, message: str) -> None:
        super().__init__(message if message.startswith(self.PREFIX) else self.PREFIX + message)


def is_gone(code: grpc.StatusCode, details: str) -> bool:
    """Whether a status a service sent is a `Gone`."""
    return code == grpc.StatusCode.FAILED_PRECONDITION and details.startswith(Gone.PREFIX)


# gRPC status -> HTTP status. The gateway's only translation table (see STYLE.md).
HTTP_STATUS: dict[grpc.StatusCode, int] = {
    grpc.StatusCode.OK: 200,
    grpc.StatusCode.INVALID_ARGUMENT: 400,
    grpc.StatusCode.OUT_OF_RANGE: 400,
    grpc.StatusCode.UNAUTHENTICATED: 401,
    grpc.StatusCode.PERMISSION_DENIED: 403,
    grpc.StatusCode.NOT_FOUND: 404,
    grpc.StatusCode.ALREADY_EXISTS: 409,
    grpc.StatusCode.ABORTED: 409,
    grpc.StatusCode.FAILED_PRECONDITION: 409,
    grpc.StatusCode.RESOURCE_EXHAUSTED: 429,
    grpc.StatusCode.CANCELLED: 499,
    grpc.StatusCode.UNIMPLEMENTED: 501,
    grpc.StatusCode.UNAVAILABLE: 503,
    grpc.StatusCode.DEADLINE_EXCEEDED: 504,
    grpc.StatusCode.INTERNAL: 500,
    grpc.StatusCode.UNKNOWN: 500,
    grpc.StatusCode.DATA_LOSS: 500,
}

_BY_CODE: dict[grpc.StatusCode, type[DomainError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        OutOfRange,
        Unauthenticated,
        PermissionDenied,
        NotFound,
        AlreadyExists,
        Aborted,
        FailedPrecondition,
        ResourceExhausted,
        Unavailable,
    )
}


def http_status(code: grpc.StatusCode) -> int:
    """HTTP status for a gRPC status code (500 for anything unknown)."""
    return HTTP_STATUS.get(code, 500)


def from_rpc_error(error: grpc.aio.AioRpcError) -> DomainError:
    """Rebuild the domain error a peer service raised, for services that call each other."""
    cls = _BY_CODE.get(error.code())
    if cls is None:
        if error.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
            return Unavailable("A backend service is unavailable.")
        return DomainError("Internal error.")
    return cls(error.details() or "")
