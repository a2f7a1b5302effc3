"""The agent_pools service's use cases: pools and their tokens, settings, queued deployments.

Secret values in deployment settings are encrypted with the stack's key in the secrets
service before they are stored, and decrypted only when an agent claims the work.

A claimed job gets a short-lived personal access token of the user who queued it, minted by
the identity service (which stores only its hash). The deployment keeps the token's id; once
the deployment ended, was cancelled, was given up or was requeued, a sweep revokes the token
and forgets the id. A sweep runs after every call that can end a job and periodically, and a
revocation that fails is tried again by the next one.

No secret reaches a deployment's logs: the claim names the settings' secret values for the
agent to mask, and every line (and finish message) an agent sends is masked again here with
the job's secret values, decrypted from its stored settings, and the shape of Cairn tokens
(which covers the job's token, whose value is never stored). When those values cannot be
read (the secrets service is away), nothing unmasked is stored: the lines and the message are
replaced by a note saying so, and the job goes on and can still finish.
"""

from __future__ import annotations

import base64
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from services.agent_pools.agent_store import AgentStore
from services.agent_pools.domain import (
    BY_API,
    HEARTBEAT_SECONDS,
    MAX_TOKEN_LOOKUP,
    TOKEN_SWEEP_BATCH,
    AgentMetadata,
    AgentRecord,
    ClaimedJob,
    DeploymentLink,
    DeploymentPage,
    DeploymentRecord,
    LogLine,
    MintedToken,
    PoolRecord,
    StackName,
    StoredSettings,
    TokenToRevoke,
    check_log_line_count,
    check_log_lines,
    is_secret_value,
    log_count,
    merge_settings,
    needs_access_token,
    page_window,
    secret_ciphertexts,
    settings_pool_id,
    token_description,
    token_expiry,
    validate_finish_status,
    validate_operation,
    validate_pool_fields,
    withheld_lines,
    withheld_message,
)
from services.agent_pools.store import AgentPoolStore
from services.common.auth import hash_token, new_token
from services.common.clock import Clock
from services.common.errors import (
    DomainError,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutOfRange,
    PermissionDenied,
    Unauthenticated,
)
from services.common.logging import get_logger
from services.common.masking import SecretMask

log = get_logger("cairn.agent_pools")

POOL_TOKEN_PREFIX = "pul-"
# Where a settings object keeps the operation's environment variables.
ENVIRONMENT_PATH = ("operationContext", "environmentVariables")

REQUESTER_GONE = "the user who queued this deployment no longer exists"
# What identity answers when minting can never succeed for a job (anything else may pass).
REFUSALS = (InvalidArgument, OutOfRange, FailedPrecondition, PermissionDenied, Unauthenticated)

Encrypt = Callable[[str, bytes], Awaitable[bytes]]
Decrypt = Callable[[str, bytes], Awaitable[bytes]]


class DeploymentTokens(Protocol):
    """Personal access tokens in the identity service, made for jobs and revoked after them."""

    async def mint(self, user_login: str, description: str, expires_at: int) -> MintedToken:
        """A new token of the user; NotFound when there is no such user."""
        ...

    async def revoke(self, user_login: str, token_id: str) -> None:
        """NotFound when the token no longer works anyway (revoked, or its user gone)."""
        ...


class AgentPools:
    """Pools, agents, settings and deployments over the stores, the clock and the secrets."""

    def __init__(
        self,
        store: AgentPoolStore,
        agents: AgentStore,
        clock: Clock,
        encrypt: Encrypt,
        decrypt: Decrypt,
        tokens: DeploymentTokens,
        *,
        token_ttl_seconds: float,
        new_pool_token: Callable[[], str] = lambda: new_token(POOL_TOKEN_PREFIX),
    ) -> None:
        self._store = store
        self._agents = agents
        self._clock = clock
        self._encrypt = encrypt
        self._decrypt = decrypt
        self._tokens = tokens
        self._token_ttl_seconds = token_ttl_seconds
        self._new_pool_token = new_pool_token

    # -- pools -----------------------------------------------------------------------------

    async def list_pools(self, organization: str) -> list[PoolRecord]:
        return await self._store.list_pools(organization, self._clock.now())

    async def create_pool(
        self, organization: str, name: str, description: str
    ) -> tuple[PoolRecord, str]:
        """A new pool and its token, which is never shown again."""
        validate_pool_fields(name, description)
        token = self._new_pool_token()
        pool = await self._store.create_pool(
            organization, name.strip(), description, hash_token(token), self._clock.now()
        )
        return pool, token

    async def get_pool(
        self, organization: str, pool_id: str
    ) -> tuple[PoolRecord, list[AgentRecord]]:
        return await self._store.get_pool(organization, pool_id, self._clock.now())

    async def update_pool(
        self, organization: str, pool_id: str, name: str | None, description: str | None
    ) -> PoolRecord:
        validate_pool_fields(name, description)
        return await self._store.update_pool(
            organization,
            pool_id,
            name=None if name is None else name.strip(),
            description=description,
            now=self._clock.now(),
        )

    async def delete_pool(self, organization: str, pool_id: str, *, force: bool) -> None:
        await self._store.delete_pool(organization, pool_id, force=force, now=self._clock.now())
        await self.revoke_ended_tokens()

    # -- settings --------------------------------------------------------------------------

    async def get_settings(self, stack_id: str) -> StoredSettings:
        return await self._store.get_settings(stack_id)

    async def update_settings(
        self, stack_id: str, organization: str, patch: Mapping[str, Any], *, replace: bool
    ) -> StoredSettings:
        """Merge into (or replace) the stored settings; the pool must be the organization's."""
        current = {} if replace else (await self._store.get_settings(stack_id)).settings
        sealed = await self._seal(stack_id, patch)
        merged = merge_settings(current, sealed)
        pool_id = settings_pool_id(merged)
        if pool_id is not None and not await self._store.pool_exists(organization, pool_id):
            raise _unknown_pool(pool_id)
        return await self._store.put_settings(
            stack_id, organization, merged, pool_id, self._clock.now()
        )

    async def delete_settings(self, stack_id: str) -> bool:
        return await self._store.delete_settings(stack_id)

    async def encrypt_secret(self, stack_id: str, value: str) -> str:
        ciphertext = await self._encrypt(stack_id, value.encode())
        return base64.b64encode(ciphertext).decode("ascii")

    async def seal_settings(self, stack_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings as they are kept (secret values encrypted): for schedules' requests."""
        return await self._seal(stack_id, settings)

    async def _seal(self, stack_id: str, settings: Mapping[str, Any]) -> dict[str, Any]:
        """Settings as stored: every secret value encrypted with the stack's key.

        A SecretValue carrying `secret` (the plain text, as the SDK sends it) becomes
        `{"secret": "", "ciphertext": ...}`; one carrying only `ciphertext` (from the encrypt
        route) is kept; environment variables given as plain strings or `plaintext` stay
        readable as `{"secret": "", "plaintext": ...}`.
        """
        sealed: dict[str, Any] = await self._walk(stack_id, settings, self._seal_value)
        environment = _environment(sealed)
        if environment is not None:
            for name, value in environment.items():
                if isinstance(value, str):
                    environment[name] = {"secret": "", "plaintext": value}
                elif value is not None and not is_secret_value(value):
                    raise InvalidArgument(
                        f"Bad Request: environment variable '{name}' must be a string or a "
                        "secret value"
                    )
        return sealed

    async def _seal_value(self, stack_id: str, value: Mapping[str, Any]) -> dict[str, Any]:
        secret = value.get("secret")
        if isinstance(secret, str) and secret:
            return {"secret": "", "ciphertext": await self.encrypt_secret(stack_id, secret)}
        ciphertext = value.get("ciphertext")
        if isinstance(ciphertext, str) and ciphertext:
            return {"secret": "", "ciphertext": ciphertext}
        return {"secret": "", "plaintext": str(value.get("plaintext") or "")}

    async def _unseal(
        self, stack_id: str, settings: Mapping[str, Any]
    ) -> tuple[dict[str, Any], tuple[str, ...]]:
        """Settings for an agent (secret values decrypted, environment variables as strings)
        and the decrypted secret values."""
        secrets: list[str] = []

        async def unseal_value(stack_id: str, value: Mapping[str, Any]) -> dict[str, Any]:
            plain = await self._unseal_value(stack_id, value)
            if value.get("ciphertext"):
                secrets.append(plain["plaintext"])
            return plain

        plain: dict[str, Any] = await self._walk(stack_id, settings, unseal_value)
        environment = _environment(plain)
        if environment is not None:
            for name, value in environment.items():
                if isinstance(value, dict):
                    environment[name] = str(value.get("plaintext") or "")
        return plain, tuple(secrets)

    async def _secret_mask(self, deployment: DeploymentRecord) -> SecretMask | None:
        """Masks the job's secret values (decrypted from its stored settings) and tokens;
        None when the values cannot be read now."""
        values: list[str] = []
        try:
            for ciphertext in secret_ciphertexts(deployment.settings):
                raw = _ciphertext_bytes(ciphertext)
                plain = await self._decrypt(deployment.stack.stack_id, raw)
                values.append(plain.decode(errors="replace"))
        except DomainError as error:
            log.warning(
                "deployment_secrets_unreadable", deployment_id=deployment.id, error=error.message
            )
            return None
        return SecretMask(values)

    async def _unseal_value(self, stack_id: str, value: Mapping[str, Any]) -> dict[str, Any]:
        ciphertext = value.get("ciphertext")
        if not isinstance(ciphertext, str) or not ciphertext:
            return {"plaintext": str(value.get("plaintext") or "")}
        raw = _ciphertext_bytes(ciphertext)
        return {"plaintext": (await self._decrypt(stack_id, raw)).decode()}

    async def _walk(
        self,
        stack_id: str,
        value: Any,
        change: Callable[[str, Mapping[str, Any]], Awaitable[dict[str, Any]]],
    ) -> Any:
        """A copy of a JSON value with every SecretValue replaced by `change(...)`."""
        if is_secret_value(value):
            return await change(stack_id, value)
        if isinstance(value, dict):
            return {k: await self._walk(stack_id, v, change) for k, v in value.items()}
        if isinstance(value, list):
            return [await self._walk(stack_id, item, change) for item in value]
        return value

    # -- deployments -----------------------------------------------------------------------

    async def create_deployment(
        self,
        stack: StackName,
        operation: str,
        overrides: Mapping[str, Any],
        *,
        inherit_settings: bool,
        requested_by: str,
        requested_by_user_id: str,
        initiator: str = BY_API,
    ) -> DeploymentRecord:
        """Queue an operation for the pool the stack's settings name (or the default pool)."""
        validate_operation(operation)
        stored = await self._store.get_settings(stack.stack_id)
        base = stored.settings if inherit_settings else {}
        settings = merge_settings(base, await self._seal(stack.stack_id, overrides))
        pool_id = settings_pool_id(settings) or await self._store.default_pool(stack.organization)
        if pool_id is None:
            # The organization's state, not the request, stands in the way.
            raise FailedPrecondition(
                "Conflict: no agent pool can run this deployment: set agentPoolID in the "
                "stack's deployment settings or create an agent pool"
            )
        if not await self._store.pool_exists(stack.organization, pool_id):
            raise _unknown_pool(pool_id)
        return await self._store.create_deployment(
            stack,
            operation=operation,
            pool_id=pool_id,
            settings=settings,
            requested_by=requested_by,
            requested_by_user_id=requested_by_user_id,
            initiator=initiator,
            now=self._clock.now(),
        )

    async def list_deployments(
        self, organization: str, stack_id: str, page: int, page_size: int, *, ascending: bool
    ) -> DeploymentPage:
        limit, offset = page_window(page, page_size)
        return await self._store.list_deployments(
            organization,
            stack_id,
            limit=limit,
            offset=offset,
            ascending=ascending,
            now=self._clock.now(),
        )

    async def get_deployment(
        self, stack_id: str, deployment_id: str, version: int = 0
    ) -> DeploymentRecord:
        """By id, or without one by the stack's deployment version."""
        return await self._store.get_deployment(
            stack_id, deployment_id, self._clock.now(), version=version
        )

    async def deployments_for_tokens(
        self, stack_id: str, token_ids: Sequence[str]
    ) -> list[DeploymentLink]:
        """Which of the stack's deployments ran with these job tokens (at most 1000 ids)."""
        if len(token_ids) > MAX_TOKEN_LOOKUP:
            raise InvalidArgument(f"Bad Request: at most {MAX_TOKEN_LOOKUP} token ids")
        return await self._store.deployments_for_tokens(stack_id, [t for t in token_ids if t])

    async def latest_version(self, stack_id: str) -> int:
        return await self._store.latest_version(stack_id)

    async def logs(
        self, stack_id: str, deployment_id: str, offset: int, count: int
    ) -> tuple[list[LogLine], int]:
        """Lines from `offset`, and the next offset (-1 once it ended and all was read)."""
        if offset < 0:
            raise InvalidArgument("Bad Request: offset must be 0 or more")
        deployment = await self.get_deployment(stack_id, deployment_id)
        size = log_count(count)
        lines = await self._store.logs(deployment_id, offset, size)
        following = lines[-1].index + 1 if lines else offset
        ended = deployment.finished_at is not None and len(lines) < size
        return lines, -1 if ended else following

    async def cancel(self, stack_id: str, deployment_id: str) -> DeploymentRecord:
        """Cancel; a running job's token stops working at once, before its agent stops."""
        cancelled = await self._store.cancel(stack_id, deployment_id, self._clock.now())
        await self.revoke_ended_tokens()
        return cancelled

    async def purge(self, stack_id: str) -> None:
        for pending in await self._store.purge(stack_id):
            # The deployment is gone: a token that cannot be revoked now expires on its own.
            await self._revoke(pending)

    # -- agent protocol --------------------------------------------------------------------

    async def _pool_of(self, pool_token: str) -> str:
        """The pool an agent's token belongs to; 401 for any other token."""
        pool_id = await self._agents.pool_for_token(hash_token(pool_token))
        if pool_id is None:
            raise Unauthenticated("Unauthorized: the agent pool token is not valid")
        return pool_id

    async def register(self, pool_token: str, metadata: AgentMetadata) -> tuple[str, str, int]:
        pool_id = await self._pool_of(pool_token)
        agent_id = await self._agents.register_agent(pool_id, metadata, self._clock.now())
        return agent_id, pool_id, HEARTBEAT_SECONDS

    async def heartbeat(self, pool_token: str, agent_id: str) -> list[str]:
        pool_id = await self._pool_of(pool_token)
        cancelled = await self._agents.heartbeat(pool_id, agent_id, self._clock.now())
        await self.revoke_ended_tokens()
        return cancelled

    async def claim(self, pool_token: str, agent_id: str) -> ClaimedJob | None:
        pool_id = await self._pool_of(pool_token)
        # A job requeued from a silent agent is handed out again only once the token of its
        # previous run is revoked: give such jobs up and revoke first.
        await self._agents.recover_abandoned(self._clock.now(), pool_id)
        await self.revoke_ended_tokens()
        now = self._clock.now()
        deployment = await self._agents.claim(pool_id, agent_id, now)
        if deployment is None:
            return None
        settings, secrets = await self._unseal(deployment.stack.stack_id, deployment.settings)
        if not needs_access_token(deployment, _environment(settings)):
            return ClaimedJob(deployment, settings, secret_values=secrets)
        try:
            minted = await self._tokens.mint(
                deployment.requested_by,
                token_description(deployment.id),
                token_expiry(now, self._token_ttl_seconds),
            )
        except NotFound:
            await self._agents.fail_claim(deployment.id, agent_id, REQUESTER_GONE, now)
            return None
        except REFUSALS as error:
            # Asking again would not help: end the job instead of handing it out forever.
            message = f"no access token could be made for this deployment: {error.message}"
            await self._agents.fail_claim(deployment.id, agent_id, message[:4096], now)
            return None
        except BaseException:
            # The identity service is away: the job waits in the queue for the next claim.
            await self._agents.release_claim(deployment.id, agent_id, now)
            raise
        if not await self._agents.attach_token(deployment.id, agent_id, minted.token_id, now):
            # The deployment was deleted (or given up) meanwhile: nobody may use the token.
            await self._revoke(
                TokenToRevoke(deployment.id, deployment.requested_by, minted.token_id)
            )
            return None
        # Cancelled between the claim and now: the sweep revokes the token at once.
        await self.revoke_ended_tokens()
        return ClaimedJob(deployment, settings, minted.token, secrets)

    async def append_logs(
        self, pool_token: str, agent_id: str, deployment_id: str, lines: Sequence[str]
    ) -> bool:
        pool_id = await self._pool_of(pool_token)
        check_log_line_count(lines)
        job = await self._agents.running_job(pool_id, agent_id, deployment_id)
        mask = await self._secret_mask(job)
        masked = withheld_lines(len(lines)) if mask is None else mask.lines(lines)
        return await self._agents.append_logs(
            pool_id, agent_id, deployment_id, check_log_lines(masked), self._clock.now()
        )

    async def finish(
        self, pool_token: str, agent_id: str, deployment_id: str, status: str, message: str
    ) -> None:
        # The credential first: an outsider learns nothing about the arguments.
        pool_id = await self._pool_of(pool_token)
        validate_finish_status(status)
        job = await self._agents.running_job(pool_id, agent_id, deployment_id)
        mask = await self._secret_mask(job)
        masked = withheld_message(message) if mask is None else mask.text(message)
        await self._agents.finish(
            pool_id,
            agent_id,
            deployment_id,
            status=status,
            message=masked[:4096],
            now=self._clock.now(),
        )
        await self.revoke_ended_tokens()

    # -- job tokens ------------------------------------------------------------------------

    async def sweep(self) -> int:
        """Give up silent agents' jobs in every pool and revoke ended jobs' tokens."""
        await self._agents.recover_abandoned(self._clock.now())
        return await self.revoke_ended_tokens()

    async def revoke_ended_tokens(self) -> int:
        """Revoke the tokens of jobs that no longer run; returns how many were revoked.

        Stops at the first failure (the identity service is likely away): the tokens stay
        listed and the next sweep tries again.
        """
        revoked = 0
        for pending in await self._agents.tokens_to_revoke(TOKEN_SWEEP_BATCH):
            if not await self._revoke(pending):
                break
            await self._agents.forget_token(pending.deployment_id, pending.token_id)
            revoked += 1
        return revoked

    async def _revoke(self, pending: TokenToRevoke) -> bool:
        """Revoke one token; False when that could not be done now."""
        try:
            await self._tokens.revoke(pending.user_login, pending.token_id)
        except NotFound:
            return True  # revoked already, or its user is gone
        except DomainError as error:
            log.warning(
                "deployment_token_not_revoked",
                deployment_id=pending.deployment_id,
                token_id=pending.token_id,
                error=error.message,
            )
            return False
        log.info(
            "deployment_token_revoked",
            deployment_id=pending.deployment_id,
            token_id=pending.token_id,
        )
        return True


def _environment(settings: Mapping[str, Any]) -> dict[str, Any] | None:
    operation = settings.get(ENVIRONMENT_PATH[0])
    if operation is None:
        return None
    if not isinstance(operation, dict):
        raise InvalidArgument(f"Bad Request: '{ENVIRONMENT_PATH[0]}' must be an object")
    environment = operation.get(ENVIRONMENT_PATH[1])
    if environment is None:
        return None
    if not isinstance(environment, dict):
        raise InvalidArgument(
            f"Bad Request: '{ENVIRONMENT_PATH[0]}.{ENVIRONMENT_PATH[1]}' must be an object"
        )
    return environment


def _ciphertext_bytes(ciphertext: str) -> bytes:
    try:
        return base64.b64decode(ciphertext, validate=True)
    except ValueError:
        raise FailedPrecondition("Conflict: a stored secret cannot be decoded") from None


def _unknown_pool(pool_id: str) -> NotFound:
    """An `agentPoolID` naming no pool of the organization names nothing (404)."""
    return NotFound(f"Not Found: unknown agent pool '{pool_id}'")
