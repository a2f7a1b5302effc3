"""The one place that reads the environment."""

from __future__ import annotations

from ipaddress import ip_network
from pathlib import Path
from typing import Literal

from limits import parse
from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

SERVICE_NAMES: tuple[str, ...] = (
    "identity",
    "stacks",
    "secrets",
    "updates",
    "agent_pools",
    "copilot",
)
"""Services `cairn up` runs, in start order. Later issues append theirs."""

DEFAULT_SERVICE_PORTS: dict[str, int] = {
    "identity": 50051,
    "stacks": 50052,
    "secrets": 50053,
    "updates": 50054,
    "agent_pools": 50055,
    "copilot": 50056,
}


# On/off spellings of a setting that also takes named values.
_SWITCHES = {
    "true": "requests",
    "1": "requests",
    "yes": "requests",
    "on": "requests",
    "false": "off",
    "0": "off",
    "no": "off",
}


# Loopback and private ranges (RFC 1918, carrier-grade NAT, IPv6 unique local): denied to
# webhook deliveries unless CAIRN_WEBHOOK_ALLOW_PRIVATE is set.
WEBHOOK_PRIVATE_NETWORKS = (
    "127.0.0.0/8,::1/128,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,100.64.0.0/10,fc00::/7"
)


class Settings(BaseSettings):
    """Configuration for every process; built once in `__main__` and passed down."""

    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore")

    data_dir: Path = Path(".cairn")
    database_url: str | None = None
    redis_url: str | None = None
    master_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    # Signs the caller of every call between Cairn's own processes (base64 of 32 bytes); every
    # process and replica of one deployment needs the same key. Unset: generated once into the
    # data dir (`internal.key`), which is enough when every process shares that directory.
    internal_key: SecretStr | None = None
    # Mutual TLS between Cairn's processes (`services/common/tls.py`): this process's
    # certificate chain and private key, and the CA that signs every Cairn process's
    # certificate, all PEM files. The three go together; unset, gRPC travels in plaintext.
    tls_cert_file: Path | None = None
    tls_key_file: Path | None = None
    tls_ca_file: Path | None = None
    # Whether a service demands a client certificate signed by that CA (`require`: a team's
    # own tool then needs one too, besides its access token) or asks for none (`none`).
    tls_client_auth: Literal["require", "none"] = "require"
    # The name channels expect in a service's certificate instead of the host they dial.
    tls_server_name: str = ""
    # gRPC server reflection on every service, answered to authenticated callers only.
    grpc_reflection: bool = True
    # Calls to a service running in the same process (`cairn up`) skip the socket: same
    # handlers, interceptor, signing and limits (services/common/local_calls.py). False: every
    # call goes through the socket, as between processes.
    local_calls: bool = True
    # Seals the web console's session cookies; every gateway replica needs the same one. Unset:
    # derived from master_key when this process has it, else drawn per gateway process.
    console_session_key: SecretStr | None = None
    host: str = "127.0.0.1"
    port: int = 8080
    # Address (host:port, comma-separated for replicas) of each service, for the gateway and
    # for services calling each other; `cairn up` fills these in itself.
    identity_address: str = ""
    stacks_address: str = ""
    secrets_address: str = ""
    updates_address: str = ""
    agent_pools_address: str = ""
    copilot_address: str = ""
    # Port `cairn serve <service>` listens on; 0 means the service's default port.
    grpc_port: int = 0
    grpc_host: str = "127.0.0.1"
    # Port on grpc_host where `cairn serve <service>` serves Prometheus `/metrics`; 0 turns it
    # off. `cairn up` and the gateway serve every metric on the gateway's `/metrics` instead.
    metrics_port: int = 0
    # Largest request body the gateway accepts, after gzip inflation (which stops right there).
    max_body_bytes: int = Field(default=64 * 1024 * 1024, gt=0)
    # Largest gRPC message; must stay above max_body_bytes.
    max_message_bytes: int = 80 * 1024 * 1024
    grpc_timeout_seconds: float = 30.0
    database_timeout_seconds: float = 30.0
    # Connections each service process keeps to the database, the extra ones it may open under
    # load, and how long a call waits for a free one before answering 503. On PostgreSQL every
    # service process (replicas included) can hold pool_size + max_overflow connections, all
    # counted against the server's max_connections.
    database_pool_size: int = Field(default=10, ge=1)
    database_max_overflow: int = Field(default=10, ge=0)
    database_pool_timeout_seconds: float = Field(default=10.0, gt=0)
    # Readiness: how long a service waits for its database (and Redis) to answer a probe, and
    # how long it reuses the answer, so frequent health checks stay cheap.
    dependency_probe_timeout_seconds: float = Field(default=1.0, gt=0)
    dependency_probe_cache_seconds: float = Field(default=1.5, ge=0)
    redis_timeout_seconds: float = 2.0
    # Advertised to the CLI: below this size it uploads whole checkpoints, above it deltas.
    checkpoint_cutoff_bytes: int = 32 * 1024
    log_format: Literal["console", "json"] = "console"
    log_level: str = "info"
    # The gateway's access log (aiohttp's, at info level): `off`, `requests` (every request
    # but health probes and metrics scrapes: /healthz, /readyz, /metrics) or `all`. `true`
    # and `false` read as `requests` and `off`.
    access_log: Literal["off", "requests", "all"] = "off"
    # The event loop of every process: uvloop (libuv) spends less CPU per request than
    # asyncio's own; `asyncio` is the fallback.
    event_loop: Literal["uvloop", "asyncio"] = "uvloop"
    # Public URL of the gateway, written into service secrets-provider state by the CLI.
    public_url: str = ""
    # Copilot: console URL prefixes a `url` context may start with besides Cairn's own
    # (comma-separated; default the hosted console's), and an optional OpenAI-compatible
    # chat model that rephrases answers.
    copilot_url_prefixes: str = ""
    copilot_model_url: str = ""
    copilot_model_name: str = ""
    copilot_model_api_key: SecretStr | None = None
    copilot_model_timeout_seconds: float = 30.0
    # A queued deployment's job gets an access token of the user who queued it, revoked when
    # the deployment ends and expiring after this many seconds at the latest.
    deployment_token_ttl_seconds: int = Field(default=2 * 60 * 60, ge=60)
    # How often agent_pools gives up silent agents' jobs and revokes ended jobs' tokens when no
    # agent calls in (every agent call that can end a job does it too).
    deployment_token_sweep_seconds: float = Field(default=15.0, gt=0)
    # How often each agent_pools replica looks for due schedules (firings are claimed in the
    # database, so replicas never fire the same due time twice) and follows up on the
    # deployments they queued (drift results, TTL stack deletion).
    schedule_interval_seconds: float = Field(default=10.0, gt=0)
    # Failed authentications (401s) one client address may make in a moving window before the
    # gateway answers 429 with Retry-After, without asking the identity service: "20/minute",
    # "100/hour", "5 per 10 seconds" (the `limits` package's notation).
    auth_failure_limit: str = "20/minute"
    # Reverse proxies (addresses or networks, comma-separated) whose X-Forwarded-For names the
    # client; from anyone else the header is ignored and the peer address counts.
    trusted_proxies: str = ""
    # Audit entries older than this many days are pruned by the identity service (0: never).
    audit_retention_days: int = 365
    # A deleted stack stays restorable (its history, secrets key, deployments and grants kept
    # under its id) for this many days, then the stacks service purges it for good (0: purged
    # at once, nothing to restore). The sweep runs every `deleted_stack_sweep_seconds`.
    deleted_stack_retention_days: float = Field(default=14, ge=0)
    deleted_stack_sweep_seconds: float = Field(default=3600.0, gt=0)
    # Webhooks: each attempt's timeout, attempts per event and hook (first one included), and
    # the delay before the second attempt (doubling after that; each wait is taken at random
    # in the upper half of its delay). Updates never wait for webhooks (see hook_events).
    webhook_timeout_seconds: float = Field(default=5.0, gt=0, le=60)
    webhook_attempts: int = Field(default=3, ge=1, le=10)
    webhook_backoff_seconds: float = Field(default=1.0, ge=0, le=300)
    # How often each process's outbox dispatcher looks for webhook events nobody woke it for
    # (a stopped process's or another replica's, whose claim ran out).
    webhook_poll_seconds: float = Field(default=1.0, gt=0, le=60)
    # Addresses webhook deliveries never connect to (networks, comma-separated), whatever a
    # payload URL's host resolves to: link-local (cloud metadata services such as
    # 169.254.169.254) and unspecified addresses, and, unless webhook_allow_private is set,
    # loopback and private ranges (WEBHOOK_PRIVATE_NETWORKS) too.
    webhook_denied_networks: str = "169.254.0.0/16,fe80::/10,0.0.0.0/8,::/128"
    # Lets deliveries reach loopback and private addresses (on-premises receivers, tests).
    webhook_allow_private: bool = False
    # Which organizations creating a stack may bring into being: `own` only the caller's own
    # organization (named after their login), `any` every unused name, `none` never.
    allow_organization_autocreate: Literal["any", "own", "none"] = "own"
    # Refused calls are audited at site level (under no organization) when nobody was
    # verified for the organization (no token, a bad token, a refused update token) or the
    # route names none: at most this many per client address per minute and this many in
    # all per minute (per gateway process); the rest are counted and dropped.
    audit_site_refusals_per_address_per_minute: int = Field(default=30, ge=0)
    audit_site_refusals_per_minute: int = Field(default=1000, ge=0)
    # CI logins without long-lived tokens (OIDC token exchange at /api/oauth/token): an
    # exchanged access token lives at most this long, whatever the request asks.
    oidc_token_max_ttl_seconds: int = Field(default=2 * 60 * 60, ge=60)
    # Discovery documents and key sets of registered issuers are kept this long; a token
    # signed by a key not in the kept set makes one refetch at once (rotated keys).
    oidc_jwks_cache_seconds: float = Field(default=300.0, ge=0)
    # Each fetch from an issuer gives up after this long and past this many bytes.
    oidc_fetch_timeout_seconds: float = Field(default=5.0, gt=0)
    oidc_max_document_bytes: int = Field(default=256 * 1024, gt=0)
    # Clock skew allowed on a token's exp, nbf and iat.
    oidc_clock_skew_seconds: int = Field(default=60, ge=0)
    # Issuers must be https; this allows http:// issuers on loopback addresses (tests and
    # local development only).
    oidc_allow_http_loopback_issuers: bool = False
    # Console single sign-on with an OpenID Connect provider (off unless issuer and client id
    # are set): the button's name (default the issuer's host), the email domains allowed to
    # sign in (comma-separated; empty: any), the claim listing the user's groups, and what
    # each group grants: a JSON object `{"group": {"organization": "acme", "role": "admin",
    # "teams": ["ops"]}}` (or a list of such objects per group).
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr | None = None
    oidc_display_name: str = ""
    oidc_allowed_domains: str = ""
    oidc_groups_claim: str = "groups"
    oidc_group_mapping: str = ""
    # How long an invitation link (an email invitation of someone without an account) works.
    invite_ttl_hours: int = Field(default=72, ge=1, le=24 * 365)
    # Outgoing mail for invitation links; nothing is sent while smtp_host is empty. STARTTLS
    # upgrades the connection before logging in (with smtp_username and smtp_password).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr | None = None
    smtp_from: str = ""
    smtp_starttls: bool = True
    smtp_timeout_seconds: float = Field(default=10.0, gt=0)
    # Where stack state versions live (`services/common/blobs.py`): empty for files under the
    # data dir (`blobs/`), `file:///path` for another directory, or `s3://bucket/prefix` for
    # S3-compatible object storage with the endpoint (e.g. http://minio:9000; empty: AWS),
    # region and credentials below (unset credentials: the client's usual environment, such as
    # AWS_ACCESS_KEY_ID or an instance role). Every replica of the updates service needs the same.
    blob_url: str = ""
    blob_s3_endpoint: str = ""
    blob_s3_region: str = ""
    blob_s3_access_key_id: str = ""
    blob_s3_secret_access_key: SecretStr | None = None
    # Path-style requests (http://endpoint/bucket/key), which MinIO and most S3-compatible
    # servers expect; off for virtual-hosted style (http://bucket.endpoint/key).
    blob_s3_force_path_style: bool = True
    # Google Cloud Storage (`gs://bucket/prefix`): a service account key (its JSON) or the path
    # of its file; neither: the client's environment (GOOGLE_APPLICATION_CREDENTIALS, workload
    # identity).
    blob_gcs_service_account_key: SecretStr | None = None
    blob_gcs_service_account_path: str = ""
    # Azure Blob Storage (`az://container/prefix` or `azure://container/prefix`): the storage
    # account, its access key, and another endpoint (Azurite, sovereign clouds; http:// allowed).
    blob_azure_account: str = ""
    blob_azure_access_key: SecretStr | None = None
    blob_azure_endpoint: str = ""
    blob_timeout_seconds: float = Field(default=60.0, gt=0)
    # The blob garbage collector: how often each updates replica runs it (0: never), and how
    # long a blob no row names is kept before it is removed (covers blobs written for rows
    # still being committed, on every replica).
    blob_gc_interval_seconds: float = Field(default=6 * 60 * 60, ge=0)
    blob_gc_grace_seconds: float = Field(default=60 * 60, ge=0)
    # Scheduled backups (`cairn/scheduled.py`): where archives go (a directory, or a URL of the
    # object stores above: s3://, gs://, az://; empty: no scheduled backups), when (a 5-field
    # cron expression in UTC) and how many complete archives are kept.
    backup_to: str = ""
    backup_schedule: str = "0 3 * * *"
    backup_keep: int = Field(default=7, ge=1)

    @field_validator("auth_failure_limit")
    @classmethod
    def _is_rate_limit(cls, value: str) -> str:
        try:
            parse(value)
        except ValueError:
            raise ValueError(f"not a rate limit like '20/minute': {value!r}") from None
        return value

    @field_validator("backup_schedule")
    @classmethod
    def _is_cron(cls, value: str) -> str:
        from croniter import croniter

        if len(value.split()) != 5 or not croniter.is_valid(value):
            raise ValueError(f"not a 5-field cron expression like '0 3 * * *': {value!r}")
        return value

    @field_validator("access_log", mode="before")
    @classmethod
    def _access_log_switch(cls, value: object) -> object:
        if isinstance(value, bool):
            return "requests" if value else "off"
        if isinstance(value, str) and value.lower() in _SWITCHES:
            return _SWITCHES[value.lower()]
        return value

    @field_validator("trusted_proxies", "webhook_denied_networks")
    @classmethod
    def _are_networks(cls, value: str) -> str:
        for part in value.split(","):
            if part.strip():
                ip_network(part.strip(), strict=False)
        return value

    def webhook_denied(self) -> str:
        """Every network webhook deliveries may not reach, comma-separated."""
        if self.webhook_allow_private:
            return self.webhook_denied_networks
        return f"{self.webhook_denied_networks},{WEBHOOK_PRIVATE_NETWORKS}"

    def resolved_database_url(self) -> str:
        """SQLAlchemy URL: the configured one, else a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cairn.db').resolve()}"

    def service_address(self, service: str) -> str:
        """The configured address list of one service ('' when unset)."""
        value: str = getattr(self, f"{service}_address")
        return value
