"""`python -m gateway`: run the gateway alone against configured service addresses."""

from __future__ import annotations

from aiohttp import web

from gateway.app import create_app
from services.common.config import Settings
from services.common.logging import configure_logging


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    web.run_app(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        print=None,
        shutdown_timeout=10,
    )


if __name__ == "__main__":
    main()
