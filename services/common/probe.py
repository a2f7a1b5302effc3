"""A container health probe: `python -m services.common.probe grpc <host:port>` asks the
standard gRPC health service, `python -m services.common.probe http <url>` expects HTTP 200.

Exit status 0 means healthy, 1 anything else (Docker reserves 2), with one line on stderr
saying why, which `docker inspect` shows in the container's health log. With `CAIRN_TLS_*`
set, as in the service's own container, the gRPC probe speaks mutual TLS with the process's
certificate: the service's certificate must then name the host probed (or
`CAIRN_TLS_SERVER_NAME`).
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.common.config import Settings
from services.common.tls import Tls, TlsSettingsError, load_tls

TIMEOUT_SECONDS = 3.0
USAGE = "usage: python -m services.common.probe (grpc <host:port> | http <url>)"


@dataclass(frozen=True)
class ProbeResult:
    is_healthy: bool
    detail: str


def check_grpc(
    address: str, timeout: float = TIMEOUT_SECONDS, tls: Tls | None = None
) -> ProbeResult:
    """Ask the server at `address` for its overall health; healthy only when SERVING."""
    # A proxy from the container's environment must never sit between a probe and loopback.
    options: list[tuple[str, Any]] = [("grpc.enable_http_proxy", 0)]
    if tls is None:
        channel = grpc.insecure_channel(address, options=options)
    else:
        options.extend(tls.channel_options(address))
        channel = grpc.secure_channel(address, tls.channel_credentials(), options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            reply = stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=timeout)
        except grpc.RpcError as error:
            code = error.code() if isinstance(error, grpc.Call) else None
            return ProbeResult(False, f"grpc {address}: {code.name if code else 'error'}")
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)
    serving = reply.status == health_pb2.HealthCheckResponse.SERVING
    return ProbeResult(serving, f"grpc {address}: {status}")


def check_http(url: str, timeout: float = TIMEOUT_SECONDS) -> ProbeResult:
    """GET `url`; healthy only on HTTP 200."""
    if not url.startswith(("http://", "https://")):
        return ProbeResult(False, f"http {url}: not an http(s) URL")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as response:
            status = int(response.status)
    except urllib.error.HTTPError as error:
        status = error.code
        error.close()
    except (urllib.error.URLError, OSError, ValueError) as error:
        return ProbeResult(False, f"http {url}: {type(error).__name__}: {error}")
    return ProbeResult(status == 200, f"http {url}: {status}")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one probe from the command line; returns the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 2 or args[0] not in ("grpc", "http"):
        print(USAGE, file=sys.stderr)
        return 1
    kind, target = args
    if kind == "grpc":
        try:
            tls = load_tls(Settings())
        except TlsSettingsError as error:
            print(f"grpc {target}: {error}", file=sys.stderr)
            return 1
        result = check_grpc(target, tls=tls)
    else:
        result = check_http(target)
    print(result.detail, file=sys.stdout if result.is_healthy else sys.stderr)
    return 0 if result.is_healthy else 1


if __name__ == "__main__":
    sys.exit(main())
