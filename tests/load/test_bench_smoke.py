"""Smoke test of scripts/bench_updates.py: a tiny run on SQLite must work end to end.

No timing is asserted: only that every figure is there and positive (the script itself fails
when the server refuses a write or an export differs from what the client sent).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_updates.py"
TIMEOUT_S = 300


def _positive(figures: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_bench_runs_at_small_scale() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--backend", "sqlite", "--scale", "0.01", "--json"],
        capture_output=True,
        timeout=TIMEOUT_S,
        check=False,
        stdin=subprocess.DEVNULL,
    )
    stderr = done.stderr.decode(errors="replace")
    assert done.returncode == 0, stderr[-4000:]
    report = orjson.loads(done.stdout)
    assert report["scale"] == 0.01
    assert set(report["backends"]) == {"sqlite"}
    sqlite = report["backends"]["sqlite"]
    assert sqlite["status"] == "ok", sqlite
    assert sqlite["server_errors"] == []

    for mode in ("journal", "delta"):
        _positive(sqlite["up"][mode], "resources", "writes", "p50_ms", "p99_ms", "total_s")
        _positive(
            sqlite["scaling"][mode],
            "small_resources",
            "large_resources",
            "p50_small_ms",
            "p50_large_ms",
            "ratio",
        )
    # Delta mode writes after every step begin and end: 2 x (pets + stack + provider) + 1.
    delta = sqlite["up"]["delta"]
    assert delta["writes"] == 2 * (delta["resources"] + 2) + 1
    _positive(sqlite, "complete_10k_journal_s", "peak_rss_10k_mb", "vmhwm_mb")
    _positive(sqlite["concurrent"], "stacks", "resources_per_stack", "clients", "wall_s", "p50_ms")
    assert "SQLite" in stderr  # the readable table goes to stderr with --json
