"""Smoke test of scripts/bench_updates.py: a tiny run of every shape on SQLite works end to end.

No timing is asserted: only that every figure is there and positive and that the counts of
writes are the protocol's (the script itself fails when the server refuses a write or an export
differs from what the client sent).
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from scripts.bench_updates import parse_args

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "bench_updates.py"
TIMEOUT_S = 240
MODES = ("sequential", "journal", "delta")
# (stacks, resources per stack, clients) of every shape at --scale 0.01.
SHAPES = {
    **{f"1x10x1-{mode}": (1, 10, 1) for mode in MODES},
    **{f"5x1x1-{mode}": (5, 1, 1) for mode in MODES},
    **{f"16x2x8-{mode}": (16, 2, 8) for mode in ("sequential", "journal")},
    **{f"64x1x32-{mode}": (64, 1, 32) for mode in ("sequential", "journal")},
    **{f"1x100x1-{mode}": (1, 100, 1) for mode in MODES},
}


def _positive(figures: dict[str, Any], *keys: str) -> None:
    for key in keys:
        value = figures[key]
        assert isinstance(value, int | float) and not isinstance(value, bool), (key, value)
        assert value > 0, (key, value)


def _writes_per_update(mode: str, resources: int) -> int:
    # Steps: the stack, the provider and the pets, each a begin and an end.
    entries = 2 * (resources + 2) + 2  # + the secrets-manager entry and the stack's outputs
    if mode == "sequential":
        return entries  # one entry per write
    if mode == "journal":
        return math.ceil(entries / 100)
    return 2 * (resources + 2) + 1  # delta: after every begin and end, then the outputs


@pytest.mark.timeout(TIMEOUT_S + 30)
def test_bench_runs_every_shape_at_small_scale() -> None:
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
    assert sqlite["topology"] == "embedded"
    assert sqlite["processes"] == {"cairn up": 1}

    assert set(sqlite["shapes"]) == set(SHAPES)
    for key, (stacks, resources, clients) in SHAPES.items():
        shape = sqlite["shapes"][key]
        mode = key.rsplit("-", 1)[1]
        assert (shape["mode"], shape["stacks"], shape["resources_per_stack"]) == (
            mode,
            stacks,
            resources,
        ), key
        assert shape["clients"] == clients, key
        assert shape["runs"] == stacks, key
        assert shape["writes"] == stacks * _writes_per_update(mode, resources), key
        _positive(
            shape,
            "total_s",
            "p50_ms",
            "p99_ms",
            "max_ms",
            "writes_per_s",
            "complete_ms",
            "cpu_ms_per_write_all",
            "peak_rss_mb",
        )
        assert shape["p50_ms"] <= shape["p99_ms"] <= shape["max_ms"], key
        assert set(shape["cpu_ms_per_write"]) == {"cairn up"}, key
        _positive(shape["cpu_ms_per_write"], "cairn up")

    for mode in MODES:
        _positive(
            sqlite["scaling"][mode],
            "small_resources",
            "large_resources",
            "p50_small_ms",
            "p50_large_ms",
            "cpu_ms_per_write_small",
            "cpu_ms_per_write_large",
            "ratio",
        )
    _positive(sqlite, "complete_10k_journal_s", "peak_rss_mb", "vmhwm_mb")
    assert "SQLite" in stderr  # the readable table goes to stderr with --json


def test_settings_given_to_the_benchmark_reach_every_server_and_bad_ones_are_refused() -> None:
    args = parse_args(["--setting", "CAIRN_LOCAL_CALLS=false", "--setting", "CAIRN_LOG_LEVEL=info"])
    assert args.setting == {"CAIRN_LOCAL_CALLS": "false", "CAIRN_LOG_LEVEL": "info"}
    assert parse_args([]).setting == {}
    for bad in ("LOCAL_CALLS=false", "CAIRN_LOCAL_CALLS", "cairn_local_calls=false"):
        with pytest.raises(SystemExit):
            parse_args(["--setting", bad])
