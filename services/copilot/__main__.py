"""`python -m services.copilot`: run the copilot service alone until SIGINT/SIGTERM."""

from __future__ import annotations

from services.common.config import DEFAULT_SERVICE_PORTS, Settings
from services.common.logging import configure_logging
from services.common.loop import run_process
from services.common.service import serve_until_signal
from services.copilot.server import start


def main() -> None:
    settings = Settings()
    configure_logging(settings.log_format, settings.log_level)
    run_process(serve_until_signal(start, settings, DEFAULT_SERVICE_PORTS["copilot"]), settings)


if __name__ == "__main__":
    main()
