"""Mutual TLS between Cairn's processes, when the `CAIRN_TLS_*` settings name certificate files.

Every server then listens with TLS and, by default, demands a client certificate signed by the
configured CA; every channel presents this process's certificate and trusts that CA only. TLS
tells which machine calls, not on whose behalf: signed principals and access tokens are
required on top, exactly as without it. With no TLS settings, servers and channels are
plaintext.

A channel checks that a service's certificate names the host it dials (the host of its
`CAIRN_*_ADDRESS`), or `CAIRN_TLS_SERVER_NAME` when set. Replicas listed as several addresses
on one host are checked against that host; on several hosts, they need the server name.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from services.common.config import SERVICE_NAMES, Settings

FILE_SETTINGS = ("tls_cert_file", "tls_key_file", "tls_ca_file")
CERTIFICATE_MARKER = b"-----BEGIN CERTIFICATE-----"
PRIVATE_KEY_MARKER = b"PRIVATE KEY-----"
TARGET_NAME_OPTION = "grpc.ssl_target_name_override"


class TlsSettingsError(Exception):
    """The `CAIRN_TLS_*` settings are incomplete, or do not fit the files or addresses."""


@dataclass(frozen=True)
class Tls:
    """This process's certificate and key, the CA every Cairn process trusts, and the rules."""

    certificate_chain: bytes = field(repr=False)
    private_key: bytes = field(repr=False)
    ca_certificates: bytes = field(repr=False)
    is_client_certificate_required: bool = True
    server_name: str = ""

    def server_credentials(self) -> grpc.ServerCredentials:
        """What a server listens with: its certificate, and the CA client certificates need."""
        return grpc.ssl_server_credentials(
            [(self.private_key, self.certificate_chain)],
            root_certificates=self.ca_certificates,
            require_client_auth=self.is_client_certificate_required,
        )

    def channel_credentials(self) -> grpc.ChannelCredentials:
        """What a channel dials with: trusts the CA only, presents this process's certificate."""
        return grpc.ssl_channel_credentials(
            root_certificates=self.ca_certificates,
            private_key=self.private_key,
            certificate_chain=self.certificate_chain,
        )

    def channel_options(self, addresses: str) -> list[tuple[str, Any]]:
        """The name to check in the certificates at `addresses`, when not the host dialled.

        gRPC checks a multi-address target (`ipv4:a:1,b:2`) against the whole list, which no
        certificate names: such a target gets its one host, or the configured server name.
        """
        if self.server_name:
            return [(TARGET_NAME_OPTION, self.server_name)]
        parts = [part.strip() for part in addresses.split(",") if part.strip()]
        if len(parts) <= 1:
            return []
        hosts = {part.rpartition(":")[0] for part in parts}
        if len(hosts) > 1:
            raise TlsSettingsError(
                f"replicas on several hosts ({addresses}) need CAIRN_TLS_SERVER_NAME: the one "
                "name every replica's certificate holds"
            )
        return [(TARGET_NAME_OPTION, hosts.pop())]


def load_tls(settings: Settings) -> Tls | None:
    """This process's TLS material, or None when TLS is off.

    Raises `TlsSettingsError` when only some of the three files are set, when a TLS option is
    set without them, when a file cannot be read or holds no PEM, or when a service's replicas
    need a server name that is not set.
    """
    paths: dict[str, Path | None] = {name: getattr(settings, name) for name in FILE_SETTINGS}
    missing = [name for name, path in paths.items() if path is None]
    if len(missing) == len(FILE_SETTINGS):
        stray = [
            name
            for name, is_set in (
                ("tls_client_auth", settings.tls_client_auth != "require"),
                ("tls_server_name", bool(settings.tls_server_name)),
            )
            if is_set
        ]
        if stray:
            raise TlsSettingsError(
                f"{_variables(stray)} {'applies' if len(stray) == 1 else 'apply'} only with "
                f"TLS: set {_variables(FILE_SETTINGS)} too"
            )
        return None
    if missing:
        raise TlsSettingsError(
            f"TLS needs {_variables(FILE_SETTINGS)} together: {_variables(missing)} "
            f"{'is' if len(missing) == 1 else 'are'} not set"
        )
    cert_file, key_file, ca_file = (path for path in paths.values() if path is not None)
    chain, key, ca = _read_files(cert_file, key_file, ca_file)
    tls = Tls(
        certificate_chain=chain,
        private_key=key,
        ca_certificates=ca,
        is_client_certificate_required=settings.tls_client_auth == "require",
        server_name=settings.tls_server_name,
    )
    # At start-up rather than when a channel is first opened (some are opened on demand).
    for service in SERVICE_NAMES:
        tls.channel_options(settings.service_address(service))
    return tls


# Read once per process: the first server or channel built at start-up reads the files, and
# channels opened later (to check an access token) reuse the bytes. A renewed certificate is
# picked up by a restart, like every other setting.
@functools.lru_cache(maxsize=8)
def _read_files(cert_file: Path, key_file: Path, ca_file: Path) -> tuple[bytes, bytes, bytes]:
    return (
        _read_pem(cert_file, "tls_cert_file", CERTIFICATE_MARKER, "certificate"),
        _read_pem(key_file, "tls_key_file", PRIVATE_KEY_MARKER, "private key"),
        _read_pem(ca_file, "tls_ca_file", CERTIFICATE_MARKER, "certificate"),
    )


def _read_pem(path: Path, setting: str, marker: bytes, kind: str) -> bytes:
    try:
        content = path.read_bytes()
    except OSError as error:
        raise TlsSettingsError(
            f"{_variables([setting])}: cannot read {path}: {error.strerror or error}"
        ) from None
    if marker not in content:
        raise TlsSettingsError(f"{_variables([setting])}: {path} holds no PEM {kind}")
    return content


def _variables(names: tuple[str, ...] | list[str]) -> str:
    variables = [f"CAIRN_{name.upper()}" for name in names]
    if len(variables) == 1:
        return variables[0]
    return ", ".join(variables[:-1]) + " and " + variables[-1]
