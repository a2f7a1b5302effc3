"""The service secrets provider: protocol doc §3.3 (encrypt, decrypt, batches, audit)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from gateway.context import BACKENDS, STACK, call_options
from gateway.convert import (
    b64decode,
    b64encode,
    json_response,
    no_content,
    optional_string,
    read_json_object,
    read_optional_json_object,
)
from gateway.errors import bad_request
from protos.cairn.v1 import secrets_pb2


def _b64_list(body: dict[str, Any], name: str) -> tuple[list[str], list[bytes]]:
    values = body.get(name)
    if not isinstance(values, list):
        raise bad_request(f"'{name}' must be an array of base64 strings")
    return values, [b64decode(value, name) for value in values]


async def encrypt_value(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    plaintext = b64decode(body.get("plaintext"), "plaintext")
    reply = await request.app[BACKENDS].secrets.Encrypt(
        secrets_pb2.EncryptRequest(stack_id=request[STACK].id, plaintext=plaintext),
        **call_options(request),
    )
    return json_response({"ciphertext": b64encode(reply.ciphertext)})


async def decrypt_value(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    ciphertext = b64decode(body.get("ciphertext"), "ciphertext")
    reply = await request.app[BACKENDS].secrets.Decrypt(
        secrets_pb2.DecryptRequest(stack_id=request[STACK].id, ciphertext=ciphertext),
        **call_options(request),
    )
    return json_response({"plaintext": b64encode(reply.plaintext)})


async def batch_encrypt_value(request: web.Request) -> web.Response:
    body = await read_json_object(request)
    _, plaintexts = _b64_list(body, "plaintexts")
    reply = await request.app[BACKENDS].secrets.BatchEncrypt(
        secrets_pb2.BatchEncryptRequest(stack_id=request[STACK].id, plaintexts=plaintexts),
        **call_options(request),
    )
    return json_response({"ciphertexts": [b64encode(c) for c in reply.ciphertexts]})


async def batch_decrypt_value(request: web.Request) -> web.Response:
    """Keys are the ciphertext strings exactly as sent: the CLI looks each one up."""
    body = await read_json_object(request)
    originals, ciphertexts = _b64_list(body, "ciphertexts")
    reply = await request.app[BACKENDS].secrets.BatchDecrypt(
        secrets_pb2.BatchDecryptRequest(stack_id=request[STACK].id, ciphertexts=ciphertexts),
        **call_options(request),
    )
    plaintexts = {
        original: b64encode(plaintext)
        for original, plaintext in zip(originals, reply.plaintexts, strict=True)
    }
    return json_response({"plaintexts": plaintexts})


async def _log(request: web.Request, kind: secrets_pb2.DecryptionKind.ValueType) -> web.Response:
    body = await read_optional_json_object(request)
    await request.app[BACKENDS].secrets.LogDecryption(
        secrets_pb2.LogDecryptionRequest(
            stack_id=request[STACK].id,
            kind=kind,
            secret_name=optional_string(body, "secretName"),
            command_name=optional_string(body, "commandName"),
        ),
        **call_options(request),
    )
    return no_content()


async def log_only_decrypt_value(request: web.Request) -> web.Response:
    return await _log(request, secrets_pb2.DECRYPTION_KIND_LOG_DECRYPTION)


async def log_only_batch_decrypt_value(request: web.Request) -> web.Response:
    return await _log(request, secrets_pb2.DECRYPTION_KIND_LOG_BATCH_DECRYPTION)
