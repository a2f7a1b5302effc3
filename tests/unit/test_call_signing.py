"""Signed principals between Cairn's processes: reused by the signer while enough of their
life is left, remembered by the verifier, and still held to their method and expiry."""

from __future__ import annotations

import pytest

from services.common.auth import PRINCIPAL_KEY, SIGNATURE_KEY, Caller
from services.common.clock import ManualClock
from services.common.errors import Unauthenticated
from services.common.signing import (
    SIGNATURE_REUSE_MARGIN_SECONDS,
    SIGNATURE_TTL_SECONDS,
    CallSigner,
)
from services.common.verification import CallAuthenticator

KEY = bytes(range(32))
METHOD = "/cairn.v1.UpdatesService/AppendJournalEntries"
OTHER_METHOD = "/cairn.v1.SecretsService/Decrypt"


def principal(metadata: list[tuple[str, str | bytes]]) -> tuple[str, str]:
    values = dict(metadata)
    return str(values[PRINCIPAL_KEY]), str(values[SIGNATURE_KEY])


def test_a_principal_is_reused_while_half_its_life_is_left() -> None:
    clock = ManualClock()
    signer = CallSigner(KEY, clock)
    first = principal(signer.sign(METHOD, Caller(request_id="a").metadata()))
    # The request id is not part of the principal; it still travels as it came.
    again = signer.sign(METHOD, Caller(request_id="b").metadata())
    assert principal(again) == first
    assert ("x-request-id", "b") in again
    assert principal(signer.sign(OTHER_METHOD, Caller().metadata())) != first
    assert principal(signer.sign(METHOD, Caller(login="alice").metadata())) != first
    clock.advance(SIGNATURE_TTL_SECONDS - SIGNATURE_REUSE_MARGIN_SECONDS + 1)
    assert principal(signer.sign(METHOD, Caller().metadata())) != first


def test_a_remembered_principal_is_still_checked_on_every_call() -> None:
    clock = ManualClock()
    signer = CallSigner(KEY, clock)
    verifier = CallAuthenticator(KEY, None, clock)
    encoded, signed = principal(signer.sign(METHOD, Caller(login="alice").metadata()))
    values = {PRINCIPAL_KEY: encoded, SIGNATURE_KEY: signed}
    for _ in range(2):  # verified, then remembered
        caller = verifier.verify_signed(METHOD, values)
        assert caller is not None and caller.login == "alice"
    # Another signature for the same principal, another method, or past its expiry: refused.
    tampered = {PRINCIPAL_KEY: encoded, SIGNATURE_KEY: "0" * len(signed)}
    with pytest.raises(Unauthenticated):
        verifier.verify_signed(METHOD, tampered)
    with pytest.raises(Unauthenticated):
        verifier.verify_signed(OTHER_METHOD, values)
    clock.advance(SIGNATURE_TTL_SECONDS + 1)
    with pytest.raises(Unauthenticated):
        verifier.verify_signed(METHOD, values)


def test_a_principal_signed_with_another_key_is_never_remembered() -> None:
    clock = ManualClock()
    forged = CallSigner(bytes(32), clock)
    verifier = CallAuthenticator(KEY, None, clock)
    encoded, signed = principal(forged.sign(METHOD, Caller(login="admin").metadata()))
    for _ in range(2):
        with pytest.raises(Unauthenticated):
            verifier.verify_signed(METHOD, {PRINCIPAL_KEY: encoded, SIGNATURE_KEY: signed})
