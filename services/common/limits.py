"""Limits on names and free text that the services enforce and /openapi.json documents.

One definition for both: the services' validators compile these patterns and compare these
lengths, and the gateway's schemas (gateway/schemas/constraints.py) state them, so a request
the document calls valid is one the services accept. Patterns are written in the subset of
regular-expression syntax that Python and ECMA-262 (JSON Schema) read alike.
"""

from __future__ import annotations

# Organization names, user logins and team names (identity).
IDENTITY_NAME = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}"
MAX_IDENTITY_NAME_LENGTH = 100
# Project and stack names, as the Pulumi CLI restricts them (`.` and `..` are reserved).
STACK_NAME = r"[A-Za-z0-9_.-]{1,100}"
RESERVED_STACK_NAMES = (".", "..")
MAX_STACK_NAME_LENGTH = 100
# Stack tags: names and the length of values.
TAG_NAME = r"[A-Za-z0-9_.:-]{1,40}"
MAX_TAG_VALUE_LENGTH = 256
# White space as both dialects read `\s`: Python's counts U+0085 and ECMA-262's U+FEFF, so
# the pair is written out (with the C0 controls, which Python's `\s` partly covers).
_NOT_SPACE = r"\s\x00-\x1f\x85\ufeff"
# An email address: one '@' between a local part and a dotted domain, no spaces.
EMAIL = rf"[^@{_NOT_SPACE}]+@[^@{_NOT_SPACE}.]+(\.[^@{_NOT_SPACE}.]+)+"
# Free text is stored everywhere, so it never holds a NUL.
TEXT_WITHOUT_NUL = r"[^\x00]*"
MAX_DISPLAY_NAME_LENGTH = 255
MAX_EMAIL_LENGTH = 320
MAX_TOKEN_NAME_LENGTH = 255
MAX_DESCRIPTION_LENGTH = 1024
MAX_URL_LENGTH = 2048
# Page sizes of listings.
MAX_USER_PAGE_SIZE = 500
MAX_STACK_PAGE_SIZE = 1000
# An http(s) URL with a host (avatars); the scheme in any case.
HTTP_URL = rf"[Hh][Tt][Tt][Pp][Ss]?://[^{_NOT_SPACE}/?#]+([/?#][^{_NOT_SPACE}]*)?"
# Invitation links: secrets.token_urlsafe(32), 43 base64url characters.
LINK_SECRET = r"[A-Za-z0-9_-]{43}"
# Stack annotations: who wrote one, and the highest version number.
ANNOTATION_SOURCE = r"[A-Za-z0-9_.:/@-]{1,100}"
MAX_ANNOTATION_VERSION = 2**31 - 1
# A copilot question: some non-blank text.
MAX_COPILOT_QUERY_LENGTH = 8000
# Update history pages (0: the default size).
MAX_HISTORY_PAGE_SIZE = 1000
# The activity feed and preview lists: `page` 0 is every entry up to this many, and no page
# holds more (`pageSize` 0: the default size).
MAX_FEED_ITEMS = 1000
# Agent pools: a name with some non-blank text, and a description.
MAX_POOL_NAME_LENGTH = 255
MAX_POOL_DESCRIPTION_LENGTH = 4096
# The checkpoint (untyped deployment) versions the Pulumi CLI can load back.
MIN_DEPLOYMENT_VERSION = 1
MAX_DEPLOYMENT_VERSION = 4
# Deployment listings (0: the default size and the first page).
MAX_DEPLOYMENT_PAGE_SIZE = 500
# OIDC issuers: a name with some non-blank text, and certificate thumbprints (SHA-1
# fingerprints, in either case).
MAX_ISSUER_NAME_LENGTH = 100
CERTIFICATE_THUMBPRINT = r"[0-9a-fA-F]{40}"
# RFC 8693 token exchange: the grant and the subject token types Cairn takes.
TOKEN_EXCHANGE_GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
# The exchange's audience names the organization the token is for.
TOKEN_EXCHANGE_AUDIENCE_PREFIX = "urn:pulumi:org:"
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
)

# An OIDC issuer's authorization policy: rules per issuer, claim rules per rule, the claim
# names and the length of each expected claim value.
MAX_POLICY_RULES = 100
MAX_RULES_PER_POLICY = 20
CLAIM_NAME = r"[A-Za-z0-9_.:\-/]{1,100}"
MAX_RULE_VALUE_LENGTH = 512
