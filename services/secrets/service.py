"""The secrets service's use cases: per-stack data keys created on first use, unwrapped on
demand, cached, and every decryption audited."""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import Callable
from datetime import UTC, datetime

from services.common.clock import Clock
from services.common.db import Sessions
from services.common.errors import FailedPrecondition, InvalidArgument
from services.secrets import crypto, store
from services.secrets.domain import (
    KIND_BATCH_DECRYPT,
    KIND_DECRYPT,
    KIND_LOG_DECRYPTION,
    LOGGED_KINDS,
    DecryptionEvent,
    NewDecryptionEvent,
    StackKey,
    require_stack_id,
)

# Batches larger than this are encrypted or decrypted off the event loop.
THREAD_THRESHOLD = 64
DEFAULT_CACHE_SIZE = 1024

FOREIGN_MASTER_KEY = "Conflict: this stack's key was wrapped by a different master key"


class Keyring:
    """Envelope encryption for every stack, backed by the key table and an LRU of open keys."""

    def __init__(
        self,
        *,
        master_key: bytes,
        sessions: Sessions,
        clock: Clock,
        cache_size: int = DEFAULT_CACHE_SIZE,
    ) -> None:
        self._master_key = master_key
        self._master_key_id = crypto.master_key_id(master_key)
        self._sessions = sessions
        self._clock = clock
        self._cache_size = cache_size
        # stack id -> (wrapped key the cipher came from, cipher)
        self._cache: OrderedDict[str, tuple[bytes, crypto.StackCipher]] = OrderedDict()

    async def encrypt(self, stack_id: str, plaintexts: list[bytes]) -> list[bytes]:
        """Ciphertexts in request order; the stack's key is created if it has none yet."""
        require_stack_id(stack_id)
        async with self._sessions.begin() as session:
            key = await store.get_stack_key(session, stack_id)
            if key is None:
                key = await store.insert_stack_key(session, self._new_stack_key(stack_id))
            cipher = self._cipher(key)
        return await _run(cipher.encrypt_all, plaintexts)

    async def decrypt(
        self, stack_id: str, ciphertexts: list[bytes], *, user_login: str, is_batch: bool
    ) -> list[bytes]:
        """Plaintexts in request order, recorded as one audit event only if all decrypt."""
        require_stack_id(stack_id)
        async with self._sessions.begin() as session:
            # The key is read on every call rather than trusted from the cache, so a key
            # deleted or replaced through another replica is never used here.
            key = await store.get_stack_key(session, stack_id)
            if key is None:
                raise InvalidArgument(crypto.INVALID_CIPHERTEXT)
            plaintexts = await _run(self._cipher(key).decrypt_all, ciphertexts)
            await store.add_decryption_event(
                session,
                NewDecryptionEvent(
                    stack_id=stack_id,
                    kind=KIND_BATCH_DECRYPT if is_batch else KIND_DECRYPT,
                    user_login=user_login,
                    value_count=len(ciphertexts),
                    created_at=self._now(),
                ),
            )
        return plaintexts

    async def log_decryption(
        self, stack_id: str, kind: str, *, user_login: str, secret_name: str, command_name: str
    ) -> None:
        """Record a decryption a client made itself with a third-party secrets provider."""
        require_stack_id(stack_id)
        if kind not in LOGGED_KINDS:
            raise InvalidArgument("Bad Request: unknown decryption kind")
        async with self._sessions.begin() as session:
            await store.add_decryption_event(
                session,
                NewDecryptionEvent(
                    stack_id=stack_id,
                    kind=kind,
                    user_login=user_login,
                    # A logged batch does not say how many values the client decrypted.
                    value_count=1 if kind == KIND_LOG_DECRYPTION else 0,
                    created_at=self._now(),
                    secret_name=secret_name,
                    command_name=command_name,
                ),
            )

    async def list_decryption_events(self, stack_id: str) -> list[DecryptionEvent]:
        require_stack_id(stack_id)
        async with self._sessions.begin() as session:
            return await store.list_decryption_events(session, stack_id)

    async def delete_stack_key(self, stack_id: str) -> None:
        """Forget a stack's key (idempotent); its audit history stays."""
        require_stack_id(stack_id)
        async with self._sessions.begin() as session:
            await store.delete_stack_key(session, stack_id)
        self._cache.pop(stack_id, None)

    def _new_stack_key(self, stack_id: str) -> StackKey:
        wrapped = crypto.wrap_data_key(self._master_key, stack_id, crypto.new_data_key())
        return StackKey(
            stack_id=stack_id,
            wrapped_key=wrapped,
            master_key_id=self._master_key_id,
            created_at=self._now(),
        )

    def _cipher(self, key: StackKey) -> crypto.StackCipher:
        if key.master_key_id != self._master_key_id:
            raise FailedPrecondition(FOREIGN_MASTER_KEY)
        cached = self._cache.get(key.stack_id)
        if cached is not None and cached[0] == key.wrapped_key:
            self._cache.move_to_end(key.stack_id)
            return cached[1]
        data_key = crypto.unwrap_data_key(self._master_key, key.stack_id, key.wrapped_key)
        cipher = crypto.StackCipher(data_key, key.stack_id)
        self._cache[key.stack_id] = (key.wrapped_key, cipher)
        self._cache.move_to_end(key.stack_id)
        while len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return cipher

    def _now(self) -> datetime:
        return datetime.fromtimestamp(self._clock.now(), UTC)


async def _run(work: Callable[[list[bytes]], list[bytes]], values: list[bytes]) -> list[bytes]:
    if len(values) > THREAD_THRESHOLD:
        return await asyncio.to_thread(work, values)
    return work(values)
