"""SecretsService over real gRPC, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator, Awaitable
from typing import TYPE_CHECKING, Any

import grpc
import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.operations import Operations
from alembic.script import ScriptDirectory
from pydantic import SecretStr
from sqlalchemy import func, inspect, select
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine

from protos.cairn.v1 import secrets_pb2, secrets_pb2_grpc
from services.common.auth import Caller
from services.common.clock import ManualClock
from services.common.config import Settings
from services.common.db import create_engine
from services.common.migrations import version_table
from services.common.service import RunningService
from services.secrets import crypto
from services.secrets.models import Base, DecryptionEventRow, StackKeyRow
from services.secrets.server import MIGRATIONS, start
from services.secrets.service import THREAD_THRESHOLD
from tests.conftest import signed_channel

if TYPE_CHECKING:
    from protos.cairn.v1.secrets_pb2_grpc import SecretsServiceAsyncStub as Stub

ALICE = Caller(user_id="user-1", login="alice").metadata()
BOB = Caller(user_id="user-2", login="bob").metadata()
OTHER_MASTER_KEY = SecretStr(base64.b64encode(b"\x07" * 32).decode())


class Services:
    """Starts secrets services on port 0 and closes everything a test opened."""

    def __init__(self) -> None:
        self.clock = ManualClock()
        self._running: list[RunningService] = []
        self._channels: list[grpc.aio.Channel] = []

    async def start(self, settings: Settings) -> Stub:
        service = await start(settings, host="127.0.0.1", port=0, clock=self.clock)
        self._running.append(service)
        channel = signed_channel(settings, f"127.0.0.1:{service.port}")
        self._channels.append(channel)
        return secrets_pb2_grpc.SecretsServiceStub(channel)

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close(None)
        for service in self._running:
            await service.stop(0)


@pytest.fixture
async def services() -> AsyncIterator[Services]:
    running = Services()
    try:
        yield running
    finally:
        await running.close()


@pytest.fixture
async def stub(services: Services, any_settings: Settings) -> Stub:
    return await services.start(any_settings)


@pytest.fixture
async def engine(stub: Stub, any_settings: Settings) -> AsyncIterator[AsyncEngine]:
    """Direct access to the migrated database, to check what refused calls left behind."""
    engine = create_engine(any_settings.resolved_database_url())
    try:
        yield engine
    finally:
        await engine.dispose()


async def count_rows(
    engine: AsyncEngine, row: type[StackKeyRow] | type[DecryptionEventRow], stack_id: str
) -> int:
    async with engine.connect() as connection:
        count = await connection.scalar(
            select(func.count()).select_from(row).where(row.stack_id == stack_id)
        )
    return int(count or 0)


async def encrypt(stub: Stub, stack_id: str, plaintext: bytes) -> bytes:
    reply = await stub.Encrypt(
        secrets_pb2.EncryptRequest(stack_id=stack_id, plaintext=plaintext), metadata=ALICE
    )
    return reply.ciphertext


async def decrypt(stub: Stub, stack_id: str, ciphertext: bytes) -> bytes:
    reply = await stub.Decrypt(
        secrets_pb2.DecryptRequest(stack_id=stack_id, ciphertext=ciphertext), metadata=ALICE
    )
    return reply.plaintext


async def events(stub: Stub, stack_id: str) -> list[secrets_pb2.DecryptionEvent]:
    reply = await stub.ListDecryptionEvents(
        secrets_pb2.ListDecryptionEventsRequest(stack_id=stack_id), metadata=ALICE
    )
    return list(reply.events)


async def test_encrypt_decrypt_round_trip(stub: Stub) -> None:
    ciphertext = await encrypt(stub, "stack-a", b"hunter2")
    assert b"hunter2" not in ciphertext
    assert ciphertext[0] == crypto.VALUE_VERSION
    assert await decrypt(stub, "stack-a", ciphertext) == b"hunter2"
    assert await decrypt(stub, "stack-a", await encrypt(stub, "stack-a", b"")) == b""


@pytest.mark.parametrize("size", [0, 3, THREAD_THRESHOLD + 100])
async def test_batches_keep_order_and_length(stub: Stub, size: int) -> None:
    plaintexts = [f'"value {i}"'.encode() for i in range(size)]
    encrypted = await stub.BatchEncrypt(
        secrets_pb2.BatchEncryptRequest(stack_id="stack-a", plaintexts=plaintexts), metadata=ALICE
    )
    assert len(encrypted.ciphertexts) == size
    decrypted = await stub.BatchDecrypt(
        secrets_pb2.BatchDecryptRequest(stack_id="stack-a", ciphertexts=encrypted.ciphertexts),
        metadata=ALICE,
    )
    assert list(decrypted.plaintexts) == plaintexts
    # Single and batch calls share the stack's key.
    if size:
        assert await decrypt(stub, "stack-a", encrypted.ciphertexts[-1]) == plaintexts[-1]


async def test_ciphertext_does_not_decrypt_in_another_stack(
    stub: Stub, engine: AsyncEngine
) -> None:
    ciphertext = await encrypt(stub, "stack-a", b"secret")
    await encrypt(stub, "stack-b", b"give stack-b a key")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await decrypt(stub, "stack-b", ciphertext)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "not produced for this stack" in (raised.value.details() or "")
    assert await count_rows(engine, DecryptionEventRow, "stack-b") == 0


@pytest.mark.parametrize(
    "mangle",
    [
        pytest.param(lambda c: b"", id="empty"),
        pytest.param(lambda c: b"\x02" + c[1:], id="wrong-version"),
        pytest.param(lambda c: c[:20], id="too-short"),
        pytest.param(lambda c: c[:-1], id="truncated"),
        pytest.param(lambda c: c[:-1] + bytes([c[-1] ^ 1]), id="tampered-tag"),
        pytest.param(lambda c: c[:13] + bytes([c[13] ^ 1]) + c[14:], id="tampered-body"),
    ],
)
async def test_undecryptable_ciphertext_is_a_bad_request_and_not_audited(
    stub: Stub, engine: AsyncEngine, mangle: Any
) -> None:
    ciphertext = await encrypt(stub, "stack-a", b"a longer secret value")
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await decrypt(stub, "stack-a", mangle(ciphertext))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(engine, DecryptionEventRow, "stack-a") == 0


async def test_one_bad_value_fails_the_whole_batch_and_writes_nothing(
    stub: Stub, engine: AsyncEngine
) -> None:
    encrypted = await stub.BatchEncrypt(
        secrets_pb2.BatchEncryptRequest(stack_id="stack-a", plaintexts=[b"1", b"2", b"3"]),
        metadata=ALICE,
    )
    ciphertexts = [*encrypted.ciphertexts[:2], b"\x01garbage"]
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchDecrypt(
            secrets_pb2.BatchDecryptRequest(stack_id="stack-a", ciphertexts=ciphertexts),
            metadata=ALICE,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(engine, DecryptionEventRow, "stack-a") == 0


async def test_decrypting_for_a_stack_without_key_creates_nothing(
    stub: Stub, engine: AsyncEngine
) -> None:
    foreign = await encrypt(stub, "stack-a", b"secret")
    for ciphertext in (foreign, b"", b"\x01" + bytes(40)):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await decrypt(stub, "fresh-stack", ciphertext)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.BatchDecrypt(
            secrets_pb2.BatchDecryptRequest(stack_id="fresh-stack", ciphertexts=[foreign]),
            metadata=ALICE,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(engine, StackKeyRow, "fresh-stack") == 0
    assert await count_rows(engine, DecryptionEventRow, "fresh-stack") == 0


async def test_empty_stack_id_is_refused(stub: Stub) -> None:
    calls: list[Awaitable[object]] = [
        stub.Encrypt(secrets_pb2.EncryptRequest(plaintext=b"x")),
        stub.Decrypt(secrets_pb2.DecryptRequest(ciphertext=b"x")),
        stub.BatchEncrypt(secrets_pb2.BatchEncryptRequest(plaintexts=[b"x"])),
        stub.BatchDecrypt(secrets_pb2.BatchDecryptRequest(ciphertexts=[b"x"])),
        stub.LogDecryption(
            secrets_pb2.LogDecryptionRequest(kind=secrets_pb2.DECRYPTION_KIND_LOG_DECRYPTION)
        ),
        stub.ListDecryptionEvents(secrets_pb2.ListDecryptionEventsRequest()),
        stub.DeleteStackKey(secrets_pb2.DeleteStackKeyRequest()),
    ]
    for call in calls:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_decryptions_are_audited_oldest_first(stub: Stub, services: Services) -> None:
    ciphertext = await encrypt(stub, "stack-a", b"secret")
    assert await events(stub, "stack-a") == []

    await decrypt(stub, "stack-a", ciphertext)
    services.clock.advance(10)
    await stub.BatchDecrypt(
        secrets_pb2.BatchDecryptRequest(stack_id="stack-a", ciphertexts=[ciphertext] * 3),
        metadata=BOB,
    )
    services.clock.advance(10)
    await stub.LogDecryption(
        secrets_pb2.LogDecryptionRequest(
            stack_id="stack-a",
            kind=secrets_pb2.DECRYPTION_KIND_LOG_DECRYPTION,
            secret_name="web:password",
        ),
        metadata=ALICE,
    )
    # Same instant as the previous event: insertion order breaks the tie.
    await stub.LogDecryption(
        secrets_pb2.LogDecryptionRequest(
            stack_id="stack-a",
            kind=secrets_pb2.DECRYPTION_KIND_LOG_BATCH_DECRYPTION,
            command_name="pulumi up",
        ),
        metadata=BOB,
    )

    listed = await events(stub, "stack-a")
    assert [(e.kind, e.user_login, e.value_count) for e in listed] == [
        (secrets_pb2.DECRYPTION_KIND_DECRYPT, "alice", 1),
        (secrets_pb2.DECRYPTION_KIND_BATCH_DECRYPT, "bob", 3),
        (secrets_pb2.DECRYPTION_KIND_LOG_DECRYPTION, "alice", 1),
        (secrets_pb2.DECRYPTION_KIND_LOG_BATCH_DECRYPTION, "bob", 0),
    ]
    start_time = int(services.clock.now()) - 20
    assert [e.created_at for e in listed] == [start_time, start_time + 10] + [start_time + 20] * 2
    assert listed[2].secret_name == "web:password"
    assert listed[3].command_name == "pulumi up"
    assert all(e.stack_id == "stack-a" and e.id for e in listed)
    assert len({e.id for e in listed}) == 4
    assert await events(stub, "stack-b") == []


@pytest.mark.parametrize(
    "kind",
    [
        secrets_pb2.DECRYPTION_KIND_UNSPECIFIED,
        secrets_pb2.DECRYPTION_KIND_DECRYPT,
        secrets_pb2.DECRYPTION_KIND_BATCH_DECRYPT,
        99,
    ],
)
async def test_log_decryption_refuses_kinds_clients_cannot_log(
    stub: Stub, engine: AsyncEngine, kind: int
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.LogDecryption(
            secrets_pb2.LogDecryptionRequest(stack_id="stack-a", kind=kind, secret_name="x"),  # type: ignore[arg-type]
            metadata=ALICE,
        )
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert await count_rows(engine, DecryptionEventRow, "stack-a") == 0


async def test_concurrent_first_encrypts_agree_on_one_key(
    services: Services, stub: Stub, any_settings: Settings, engine: AsyncEngine
) -> None:
    replica = await services.start(any_settings)
    stubs = [stub, replica] * 8
    ciphertexts = await asyncio.gather(
        *(encrypt(s, "new-stack", f"value {i}".encode()) for i, s in enumerate(stubs))
    )
    for i, ciphertext in enumerate(ciphertexts):
        assert await decrypt(stub, "new-stack", ciphertext) == f"value {i}".encode()
        assert await decrypt(replica, "new-stack", ciphertext) == f"value {i}".encode()
    assert await count_rows(engine, StackKeyRow, "new-stack") == 1


async def test_second_instance_with_same_data_dir_decrypts(
    services: Services, stub: Stub, any_settings: Settings
) -> None:
    assert any_settings.master_key is None
    ciphertext = await encrypt(stub, "stack-a", b"shared")
    replica = await services.start(any_settings)
    assert await decrypt(replica, "stack-a", ciphertext) == b"shared"


async def test_other_master_key_cannot_use_the_stack_key(
    services: Services, stub: Stub, any_settings: Settings, engine: AsyncEngine
) -> None:
    ciphertext = await encrypt(stub, "stack-a", b"shared")
    other = await services.start(any_settings.model_copy(update={"master_key": OTHER_MASTER_KEY}))
    for call in (
        other.Decrypt(secrets_pb2.DecryptRequest(stack_id="stack-a", ciphertext=ciphertext)),
        other.Encrypt(secrets_pb2.EncryptRequest(stack_id="stack-a", plaintext=b"x")),
    ):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION
        assert "different master key" in (raised.value.details() or "")
    assert await count_rows(engine, DecryptionEventRow, "stack-a") == 0
    # The other key still serves stacks it created itself.
    own = await encrypt(other, "stack-b", b"mine")
    assert await decrypt(other, "stack-b", own) == b"mine"


async def test_delete_stack_key_forgets_key_and_keeps_audit(
    services: Services, stub: Stub, any_settings: Settings, engine: AsyncEngine
) -> None:
    replica = await services.start(any_settings)
    ciphertext = await encrypt(stub, "stack-a", b"old")
    # Both instances have the key cached before it is deleted through one of them.
    assert await decrypt(stub, "stack-a", ciphertext) == b"old"
    assert await decrypt(replica, "stack-a", ciphertext) == b"old"

    await replica.DeleteStackKey(secrets_pb2.DeleteStackKeyRequest(stack_id="stack-a"))
    await replica.DeleteStackKey(secrets_pb2.DeleteStackKeyRequest(stack_id="stack-a"))
    await stub.DeleteStackKey(secrets_pb2.DeleteStackKeyRequest(stack_id="never-had-one"))
    assert await count_rows(engine, StackKeyRow, "stack-a") == 0

    for instance in (stub, replica):
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await decrypt(instance, "stack-a", ciphertext)
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(await events(stub, "stack-a")) == 2

    # A new key is created on the next encrypt; old ciphertexts stay unreadable.
    fresh = await encrypt(stub, "stack-a", b"new")
    assert await decrypt(replica, "stack-a", fresh) == b"new"
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await decrypt(stub, "stack-a", ciphertext)
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_configured_master_key_is_used_and_no_key_file_written(
    services: Services, any_settings: Settings
) -> None:
    settings = any_settings.model_copy(update={"master_key": OTHER_MASTER_KEY})
    configured = await services.start(settings)
    ciphertext = await encrypt(configured, "stack-a", b"x")
    assert not (any_settings.data_dir / crypto.MASTER_KEY_FILE).exists()
    generated = await services.start(any_settings)
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await decrypt(generated, "stack-a", ciphertext)
    assert raised.value.code() == grpc.StatusCode.FAILED_PRECONDITION


async def test_invalid_master_key_refuses_to_start(any_settings: Settings) -> None:
    secret = base64.b64encode(b"sixteen byte key").decode()
    settings = any_settings.model_copy(update={"master_key": SecretStr(secret)})
    with pytest.raises(ValueError, match="CAIRN_MASTER_KEY") as raised:
        await start(settings, host="127.0.0.1", port=0)
    assert secret not in str(raised.value)


def _schema_differences(connection: Connection) -> list[Any]:
    context = MigrationContext.configure(
        connection, opts={"version_table": version_table("secrets")}
    )
    return list(compare_metadata(context, Base.metadata))


def _service_tables(connection: Connection) -> set[str]:
    return {name for name in inspect(connection).get_table_names() if "secrets" in name}


def _downgrade_to_base(connection: Connection) -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    revision = ScriptDirectory.from_config(config).get_revision("secrets_0001")
    assert revision is not None and revision.down_revision is None
    with Operations.context(MigrationContext.configure(connection)):
        revision.module.downgrade()


@pytest.mark.empty_database
async def test_migrated_schema_matches_models(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        assert await connection.run_sync(_schema_differences) == []
        assert await connection.run_sync(_service_tables) == {
            "secrets_stack_keys",
            "secrets_decryption_events",
            version_table("secrets"),
        }


@pytest.mark.empty_database
async def test_migration_downgrades_cleanly(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        await connection.run_sync(_downgrade_to_base)
    async with engine.connect() as connection:
        assert await connection.run_sync(_service_tables) == {version_table("secrets")}
