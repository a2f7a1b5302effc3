"""Offline Pulumi program generation for the copilot's "program" messages.

Templates are data (`templates/*.yaml`, read by `catalog`); each language has a small
renderer (`render_<language>`); `syntax` checks what they produce.
"""

from __future__ import annotations

from services.copilot.programs.generation import generate
from services.copilot.programs.intent import follow_up_request, parse_request
from services.copilot.programs.spec import (
    CLOUDS,
    LANGUAGE_NAMES,
    LANGUAGES,
    RESOURCES,
    GeneratedProgram,
    ProgramRequest,
)
from services.copilot.programs.syntax import check_syntax

__all__ = [
    "CLOUDS",
    "LANGUAGES",
    "LANGUAGE_NAMES",
    "RESOURCES",
    "GeneratedProgram",
    "ProgramRequest",
    "check_syntax",
    "follow_up_request",
    "generate",
    "parse_request",
]
