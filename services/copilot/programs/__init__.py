"""Offline Pulumi program generation for the copilot's "program" messages.

Templates are data (`templates/*.yaml`, read by `catalog`); each language has a small
renderer (`render_<language>`); `syntax` checks what they produce.
"""

from __future__ import annotations

from services.copilot.programs.generation import generate
from services.copilot.programs.intent import parse_request
from services.copilot.programs.spec import (
    CLOUDS,
    LANGUAGES,
    RESOURCES,
    GeneratedProgram,
    ProgramRequest,
)
from services.copilot.programs.syntax import check_syntax

__all__ = [
    "CLOUDS",
    "LANGUAGES",
    "RESOURCES",
    "GeneratedProgram",
    "ProgramRequest",
    "check_syntax",
    "generate",
    "parse_request",
]
