"""The one masking rule deployment logs and process logs share."""

from __future__ import annotations

import secrets

from hypothesis import given
from hypothesis import strategies as st

from services.common.auth import new_token
from services.common.masking import (
    MASK,
    MIN_SECRET_LENGTH,
    SecretMask,
    mask_credentials,
    mask_lines,
    secret_pieces,
)


def test_a_secret_value_is_masked_wherever_it_appears() -> None:
    mask = SecretMask(["s3cr3t-pw"])
    assert mask.lines(["secret=s3cr3t-pw", "again s3cr3t-pw and s3cr3t-pw", "plain"]) == [
        f"secret={MASK}",
        f"again {MASK} and {MASK}",
        "plain",
    ]
    assert mask.text("failed: s3cr3t-pw\nnext") == f"failed: {MASK}\nnext"


def test_the_longest_value_wins_and_a_marker_is_not_masked_again() -> None:
    mask = SecretMask(["abcd", "abcdefgh", "secret", "[secret]"])
    assert mask.text("x abcdefgh y abcd z") == f"x {MASK} y {MASK} z"
    assert mask.text("secret") == MASK
    assert mask.text("[secret]") == MASK


def test_short_values_are_not_masked_into_noise() -> None:
    short = "x" * (MIN_SECRET_LENGTH - 1)
    mask = SecretMask(["1", "ab", short])
    assert mask.text(f"1 ab {short} 1234") == f"1 ab {short} 1234"
    assert secret_pieces(["1", "ab", short, "  padded\n"]) == ("padded",)


def test_a_multi_line_secret_is_masked_line_by_line() -> None:
    key = "-----BEGIN KEY-----\nMIIEpAIBAAKCAQEA1\nqwertyuiop\n-----END KEY-----\n"
    mask = SecretMask([key])
    printed = key.splitlines()
    assert mask.lines(printed) == [MASK] * len(printed)
    assert mask.lines(["key: MIIEpAIBAAKCAQEA1 end"]) == [f"key: {MASK} end"]


def test_a_value_printed_across_two_lines_is_masked_on_both() -> None:
    mask = SecretMask(["s3cr3t-pw"])
    assert mask.lines(["password is s3cr", "3t-pw and more", "done"]) == [
        f"password is {MASK}",
        f"{MASK} and more",
        "done",
    ]
    # A value that fills a whole middle line of three.
    mask = SecretMask(["0123456789"])
    assert mask.lines(["a 01", "2345", "6789 b"]) == [f"a {MASK}", MASK, f"{MASK} b"]
    # Unrelated line ends and starts stay as they are.
    assert mask.lines(["ends with 012", "999 starts"]) == ["ends with 012", "999 starts"]


def test_the_line_sent_before_counts_for_a_value_that_goes_on() -> None:
    mask = SecretMask(["s3cr3t-pw"])
    assert mask.lines(["3t-pw rest"], previous="it is s3cr") == [f"{MASK} rest"]
    assert mask.lines(["3t-pw rest"]) == ["3t-pw rest"]


def test_cairn_tokens_are_masked_in_deployment_logs_whatever_the_settings() -> None:
    token = new_token()
    assert mask_lines([], [f"PULUMI_ACCESS_TOKEN={token}"]) == [f"PULUMI_ACCESS_TOKEN={MASK}"]
    # A next line starting with hex digits is not part of the token.
    assert SecretMask(["s3cr3t-pw"]).lines([f"pool={token}", "cafe 1"]) == [
        f"pool={MASK}",
        "cafe 1",
    ]
    # Cut by a length limit, a token still counts.
    assert MASK in mask_lines([], [f"tok {token[:16]}"])[0]


def test_credentials_are_masked_in_any_text() -> None:
    access = new_token()
    lease = secrets.token_urlsafe(32)
    text = f"Authorization: token {access}\x01; update-token {lease}; stack acme/web/dev"
    masked = mask_credentials(text)
    assert access not in masked
    assert lease not in masked
    assert masked.count(MASK) == 2
    assert masked.endswith("stack acme/web/dev")


def test_ordinary_identifiers_are_not_taken_for_lease_tokens() -> None:
    names = [
        "a" * 43,  # one case only
        "550e8400-e29b-41d4-a716-446655440000",  # a UUID
        "0" * 64,  # a SHA-256
        "organization-with-a-very-long-name/and-a-project/stack",
    ]
    for name in names:
        assert mask_credentials(name) == name


def test_fresh_lease_and_access_tokens_are_always_masked() -> None:
    for _ in range(500):
        lease, access = secrets.token_urlsafe(32), new_token()
        masked = mask_credentials(f"lease={lease}. Authorization: token {access}")
        assert lease not in masked and access not in masked


@given(
    value=st.text(
        alphabet=st.characters(exclude_categories=("Cs", "Zl", "Zp", "Cc")),
        min_size=MIN_SECRET_LENGTH,
        max_size=30,
    ).filter(lambda text: text == text.strip()),
    before=st.text(max_size=20),
    after=st.text(max_size=20),
    cut=st.integers(min_value=1, max_value=29),
)
def test_no_masked_output_holds_the_value(value: str, before: str, after: str, cut: int) -> None:
    mask = SecretMask([value])
    assert value not in mask.text(before + value + after)
    # Printed across a line break at any point, neither line keeps the value.
    cut = min(cut, len(value) - 1)
    first, second = before + value[:cut], value[cut:] + after
    lines = mask.lines([first, second])
    assert value not in "".join(lines)
    assert all(value not in line for line in lines)
