"""Envelope encryption primitives: round trips, and every way a ciphertext must be refused."""

from __future__ import annotations

import base64
import os
import stat
import threading
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.common.errors import FailedPrecondition, InvalidArgument
from services.secrets import crypto

MASTER_KEY = bytes(range(32))
OTHER_MASTER_KEY = bytes(range(1, 33))
DATA_KEY = bytes(range(100, 132))
STACK_ID = "stack-1"

stack_ids = st.text(min_size=1, max_size=40)
payloads = st.binary(max_size=2048)


def cipher(stack_id: str = STACK_ID, data_key: bytes = DATA_KEY) -> crypto.StackCipher:
    return crypto.StackCipher(data_key, stack_id)


@given(plaintext=payloads, stack_id=stack_ids)
def test_any_bytes_round_trip(plaintext: bytes, stack_id: str) -> None:
    ciphertext = cipher(stack_id).encrypt(plaintext)
    assert ciphertext[0] == crypto.VALUE_VERSION
    assert len(ciphertext) == 1 + crypto.NONCE_BYTES + len(plaintext) + crypto.TAG_BYTES
    assert cipher(stack_id).decrypt(ciphertext) == plaintext


@given(plaintext=payloads)
def test_encryption_is_randomised(plaintext: bytes) -> None:
    assert cipher().encrypt(plaintext) != cipher().encrypt(plaintext)


@given(plaintext=payloads, data=st.data())
def test_tampering_any_byte_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    ciphertext = bytearray(cipher().encrypt(plaintext))
    index = data.draw(st.integers(0, len(ciphertext) - 1), label="index")
    flip = data.draw(st.integers(1, 255), label="flip")
    ciphertext[index] ^= flip
    with pytest.raises(InvalidArgument, match="invalid or was not produced for this stack"):
        cipher().decrypt(bytes(ciphertext))


@given(plaintext=payloads, data=st.data())
def test_truncation_is_refused(plaintext: bytes, data: st.DataObject) -> None:
    ciphertext = cipher().encrypt(plaintext)
    length = data.draw(st.integers(0, len(ciphertext) - 1), label="length")
    with pytest.raises(InvalidArgument):
        cipher().decrypt(ciphertext[:length])


@given(plaintext=payloads, other=stack_ids)
def test_other_stack_cannot_decrypt(plaintext: bytes, other: str) -> None:
    if other == STACK_ID:
        other += "x"
    with pytest.raises(InvalidArgument):
        cipher(other).decrypt(cipher().encrypt(plaintext))


@given(plaintext=payloads)
def test_other_data_key_cannot_decrypt(plaintext: bytes) -> None:
    with pytest.raises(InvalidArgument):
        cipher(data_key=bytes(32)).decrypt(cipher().encrypt(plaintext))


@given(garbage=st.binary(max_size=64))
def test_garbage_is_refused(garbage: bytes) -> None:
    with pytest.raises(InvalidArgument):
        cipher().decrypt(garbage)


@given(data_key=st.binary(min_size=32, max_size=32), stack_id=stack_ids)
def test_data_key_wrap_round_trip(data_key: bytes, stack_id: str) -> None:
    wrapped = crypto.wrap_data_key(MASTER_KEY, stack_id, data_key)
    assert data_key not in wrapped
    assert crypto.unwrap_data_key(MASTER_KEY, stack_id, wrapped) == data_key


def test_wrapped_key_is_bound_to_master_key_and_stack() -> None:
    wrapped = crypto.wrap_data_key(MASTER_KEY, STACK_ID, DATA_KEY)
    with pytest.raises(FailedPrecondition):
        crypto.unwrap_data_key(OTHER_MASTER_KEY, STACK_ID, wrapped)
    with pytest.raises(FailedPrecondition):
        crypto.unwrap_data_key(MASTER_KEY, "stack-2", wrapped)


@given(data=st.data())
def test_tampered_or_truncated_wrapped_key_is_refused(data: st.DataObject) -> None:
    wrapped = bytearray(crypto.wrap_data_key(MASTER_KEY, STACK_ID, DATA_KEY))
    index = data.draw(st.integers(0, len(wrapped) - 1), label="index")
    wrapped[index] ^= data.draw(st.integers(1, 255), label="flip")
    with pytest.raises(FailedPrecondition):
        crypto.unwrap_data_key(MASTER_KEY, STACK_ID, bytes(wrapped))
    with pytest.raises(FailedPrecondition):
        crypto.unwrap_data_key(MASTER_KEY, STACK_ID, bytes(wrapped[:index]))


def test_master_key_id_is_a_stable_short_fingerprint() -> None:
    key_id = crypto.master_key_id(MASTER_KEY)
    assert key_id == crypto.master_key_id(MASTER_KEY)
    assert len(key_id) == 16
    assert int(key_id, 16) >= 0
    assert key_id != crypto.master_key_id(OTHER_MASTER_KEY)
    assert MASTER_KEY.hex()[:16] != key_id


def test_configured_master_key_is_parsed(tmp_path: Path) -> None:
    encoded = base64.b64encode(MASTER_KEY).decode()
    assert crypto.load_master_key(encoded, tmp_path) == MASTER_KEY
    assert not (tmp_path / crypto.MASTER_KEY_FILE).exists()


@pytest.mark.parametrize(
    "encoded",
    [
        "",
        "not base64 at all!",
        base64.b64encode(bytes(16)).decode(),
        base64.b64encode(bytes(33)).decode(),
        base64.urlsafe_b64encode(b"\xff" * 32).decode(),
    ],
)
def test_bad_configured_master_key_is_refused_without_echoing_it(
    encoded: str, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="CAIRN_MASTER_KEY") as raised:
        crypto.load_master_key(encoded, tmp_path)
    if encoded:
        assert encoded not in str(raised.value)


def test_master_key_file_is_generated_once_and_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "missing" / "data"
    key = crypto.load_master_key(None, data_dir)
    path = data_dir / crypto.MASTER_KEY_FILE
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert crypto.load_master_key(None, data_dir) == key
    assert os.listdir(data_dir) == [crypto.MASTER_KEY_FILE]


def test_processes_starting_together_agree_on_one_master_key(tmp_path: Path) -> None:
    keys: list[bytes] = []
    barrier = threading.Barrier(8)

    def load() -> None:
        barrier.wait()
        keys.append(crypto.load_master_key(None, tmp_path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8
    assert len(set(keys)) == 1
    assert os.listdir(tmp_path) == [crypto.MASTER_KEY_FILE]


def test_corrupt_master_key_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / crypto.MASTER_KEY_FILE).write_text("short\n")
    with pytest.raises(ValueError, match=r"master\.key"):
        crypto.load_master_key(None, tmp_path)
