"""`python -m gateway`: run the gateway alone against configured service addresses."""

from __future__ import annotations

import asyncio
import signal

from gateway.app import create_app
from gateway.serving import serving
from services.common.config import Settings
from services.common.logging import configure_logging
from services.common.loop import run_process


async def _serve(settings: Settings) -> None:
    """Serve until SIGINT or SIGTERM, then let in-flight requests finish."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    async with serving(create_app(settings), settings.host, settings.port):
        await stop.wait()


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    run_process(_serve(settings), settings)


if __name__ == "__main__":
    main()
