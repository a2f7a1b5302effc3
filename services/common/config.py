"""The one place that reads the environment."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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


class Settings(BaseSettings):
    """Configuration for every process; built once in `__main__` and passed down."""

    model_config = SettingsConfigDict(env_prefix="CAIRN_", extra="ignore")

    data_dir: Path = Path(".cairn")
    database_url: str | None = None
    redis_url: str | None = None
    master_key: SecretStr | None = None
    admin_token: SecretStr | None = None
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
    # Largest request body the gateway accepts, after gzip inflation.
    max_body_bytes: int = 64 * 1024 * 1024
    # Largest gRPC message; must stay above max_body_bytes.
    max_message_bytes: int = 80 * 1024 * 1024
    grpc_timeout_seconds: float = 30.0
    database_timeout_seconds: float = 30.0
    redis_timeout_seconds: float = 2.0
    # Advertised to the CLI: below this size it uploads whole checkpoints, above it deltas.
    checkpoint_cutoff_bytes: int = 32 * 1024
    log_format: Literal["console", "json"] = "console"
    log_level: str = "info"
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
    # Audit entries older than this many days are pruned by the identity service (0: never).
    audit_retention_days: int = 365
    # Which organizations creating a stack may bring into being: `own` only the caller's own
    # organization (named after their login), `any` every unused name, `none` never.
    allow_organization_autocreate: Literal["any", "own", "none"] = "own"

    def resolved_database_url(self) -> str:
        """SQLAlchemy URL: the configured one, else a SQLite file in the data dir."""
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.data_dir / 'cairn.db').resolve()}"

    def service_address(self, service: str) -> str:
        """The configured address list of one service ('' when unset)."""
        value: str = getattr(self, f"{service}_address")
        return value
