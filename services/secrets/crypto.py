"""Envelope encryption: per-stack data keys wrapped by a master key, AES-256-GCM throughout.

Every AES-GCM call binds its output to the stable stack id through associated data, so a
ciphertext or a wrapped key copied to another stack never decrypts there, while a rename
(same id) changes nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from services.common.datadir import create_private_file_once, ensure_private_dir, tighten_file
from services.common.errors import FailedPrecondition, InvalidArgument

KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
VALUE_VERSION = 0x01
MASTER_KEY_FILE = "master.key"

_DATA_KEY_CONTEXT = b"cairn/data-key/v1:"
_VALUE_CONTEXT = b"cairn/value/v1:"
_MASTER_KEY_ID_CONTEXT = b"cairn/master-key-id:"

INVALID_CIPHERTEXT = "Bad Request: the ciphertext is invalid or was not produced for this stack"
UNREADABLE_STACK_KEY = "Conflict: this stack's key cannot be unwrapped with the master key"


def new_data_key() -> bytes:
    """A fresh random 256-bit data key."""
    return secrets.token_bytes(KEY_BYTES)


def master_key_id(master_key: bytes) -> str:
    """A short public fingerprint of a master key, stored beside every key it wraps."""
    return hashlib.sha256(_MASTER_KEY_ID_CONTEXT + master_key).hexdigest()[:16]


def wrap_data_key(master_key: bytes, stack_id: str, data_key: bytes) -> bytes:
    """Encrypt a data key under the master key, bound to its stack: nonce + ciphertext+tag."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    return nonce + AESGCM(master_key).encrypt(nonce, data_key, _DATA_KEY_CONTEXT + _id(stack_id))


def unwrap_data_key(master_key: bytes, stack_id: str, wrapped_key: bytes) -> bytes:
    """Recover a data key; a key that does not open is a state conflict, not a server bug."""
    nonce, sealed = wrapped_key[:NONCE_BYTES], wrapped_key[NONCE_BYTES:]
    if len(nonce) != NONCE_BYTES or len(sealed) != KEY_BYTES + TAG_BYTES:
        raise FailedPrecondition(UNREADABLE_STACK_KEY)
    try:
        return AESGCM(master_key).decrypt(nonce, sealed, _DATA_KEY_CONTEXT + _id(stack_id))
    except InvalidTag:
        raise FailedPrecondition(UNREADABLE_STACK_KEY) from None


class StackCipher:
    """Encrypts and decrypts values of one stack under its unwrapped data key."""

    __slots__ = ("_aead", "_associated_data")

    def __init__(self, data_key: bytes, stack_id: str) -> None:
        self._aead = AESGCM(data_key)
        self._associated_data = _VALUE_CONTEXT + _id(stack_id)

    def encrypt(self, plaintext: bytes) -> bytes:
        """Version byte + 96-bit random nonce + ciphertext and tag."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, plaintext, self._associated_data)
        return bytes((VALUE_VERSION,)) + nonce + sealed

    def decrypt(self, ciphertext: bytes) -> bytes:
        """The plaintext, or InvalidArgument for anything this stack did not produce intact."""
        if len(ciphertext) < 1 + NONCE_BYTES + TAG_BYTES or ciphertext[0] != VALUE_VERSION:
            raise InvalidArgument(INVALID_CIPHERTEXT)
        nonce = ciphertext[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, ciphertext[1 + NONCE_BYTES :], self._associated_data)
        except InvalidTag:
            raise InvalidArgument(INVALID_CIPHERTEXT) from None

    def encrypt_all(self, plaintexts: list[bytes]) -> list[bytes]:
        return [self.encrypt(plaintext) for plaintext in plaintexts]

    def decrypt_all(self, ciphertexts: list[bytes]) -> list[bytes]:
        return [self.decrypt(ciphertext) for ciphertext in ciphertexts]


def parse_master_key(encoded: str, *, source: str) -> bytes:
    """Decode a base64 master key; the error names the source but never echoes the value."""
    try:
        key = base64.b64decode(encoded.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ValueError(f"{source} is not valid base64 of a 32-byte key") from None
    if len(key) != KEY_BYTES:
        raise ValueError(f"{source} must decode to exactly {KEY_BYTES} bytes, not {len(key)}")
    return key


def load_master_key(configured: str | None, data_dir: Path) -> bytes:
    """The configured master key, else the one kept in the data dir (generated on first use)."""
    if configured is not None:
        return parse_master_key(configured, source="CAIRN_MASTER_KEY")
    return _load_or_create_key_file(data_dir / MASTER_KEY_FILE)


def _load_or_create_key_file(path: Path) -> bytes:
    ensure_private_dir(path.parent)
    if path.exists():
        tighten_file(path)
    else:
        create_private_file_once(path, base64.b64encode(new_data_key()) + b"\n")
    return parse_master_key(path.read_text(encoding="ascii"), source=str(path))


def _id(stack_id: str) -> bytes:
    return stack_id.encode("utf-8")
