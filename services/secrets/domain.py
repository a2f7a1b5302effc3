"""Frozen records the secrets service passes between its layers, and its small rules."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from services.common.errors import InvalidArgument

KIND_DECRYPT = "decrypt"
KIND_BATCH_DECRYPT = "batch-decrypt"
KIND_LOG_DECRYPTION = "log-decryption"
KIND_LOG_BATCH_DECRYPTION = "log-batch-decryption"
LOGGED_KINDS = (KIND_LOG_DECRYPTION, KIND_LOG_BATCH_DECRYPTION)

MAX_STACK_ID_LENGTH = 255


@dataclass(frozen=True)
class StackKey:
    stack_id: str
    wrapped_key: bytes
    master_key_id: str
    created_at: datetime


@dataclass(frozen=True)
class NewDecryptionEvent:
    """What an audit record says before the store gives it an id and a position."""

    stack_id: str
    kind: str
    user_login: str
    value_count: int
    created_at: datetime
    secret_name: str = ""
    command_name: str = ""


@dataclass(frozen=True)
class DecryptionEvent:
    id: int
    stack_id: str
    kind: str
    user_login: str
    secret_name: str
    command_name: str
    value_count: int
    created_at: datetime


def require_stack_id(stack_id: str) -> str:
    """Reject a missing or absurd stack id before it reaches the database."""
    if not stack_id:
        raise InvalidArgument("Bad Request: a stack id is required")
    if len(stack_id) > MAX_STACK_ID_LENGTH:
        raise InvalidArgument("Bad Request: the stack id is too long")
    return stack_id
