#!/usr/bin/env python3
"""Benchmark of the update protocol, driven over HTTP exactly as the Pulumi CLI drives it.

Starts `cairn up` as a subprocess on free loopback ports (SQLite in a temporary data dir, the
embedded topology; and, when 127.0.0.1:5432 and :6379 answer, PostgreSQL in a fresh database
plus Redis, `--topology distributed`: one process per service), then plays `pulumi up
--skip-preview` runs that create N `random:RandomPet` resources, in three shapes (protocol doc
§4):

- sequential: journal mode (`journalVersion: 1`) for a chain of dependent resources: one step
  at a time, its begin entry and then its end entry each its own `PATCH U/journalentries`,
  awaited before the next (≈ 2N+6 writes);
- journal: journal mode with 16 steps in flight, batches of up to 100 entries, one batch in
  flight at a time;
- delta: verbatim+delta mode (no `journalVersion`): one write after every step begin and end
  (≈ 2N+1 writes), `checkpointverbatim` while a text is below the advertised cutoff, else
  `checkpointdelta` with byte-offset edits and the SHA-256 of the new text.

Engine events go up concurrently (batches of 50, three workers) as the CLI does. Every update
is verified at the end: the stack's export must be exactly what the client holds.

Runs, every shape: one 1,000-resource stack; 5 x 100 and 1 x 10,000 resources (per-write cost
against the size of the stack); for sequential and journal, 16 stacks x 200 resources with 8
concurrent clients and 64 x 50 with 32. Per run: total seconds, p50/p99/max per write, writes
per second, peak RSS of the whole system, and CPU ms per write of each process (utime + stime
from /proc/<pid>/stat before and after, processes labelled by their command line).

Usage: bench_updates.py [--backend sqlite|postgres|all] [--scale F] [--topology T]
                        [--shapes single,scaling,many]
                        [--modes sequential,journal,delta]
                        [--setting CAIRN_NAME=VALUE ...] [--json]
The table goes to stdout; with --json the JSON object goes to stdout and the table to stderr.
Progress lines always go to stderr. Exit status 1 when anything failed (server error, wrong
export, a backend that could not run).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path

import orjson

if __name__ == "__main__":
    # Run as a file, only scripts/ is on the path: the checkout's root makes the bench package
    # import as `scripts.bench`, the name the tests import it by.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

# Re-exported: the CLI's wire vocabulary that tests/faults drives updates with.
from scripts.bench.client import CLI_HEADERS as CLI_HEADERS
from scripts.bench.report import percentile as percentile
from scripts.bench.report import table
from scripts.bench.resources import Names as Names
from scripts.bench.resources import manifest as manifest
from scripts.bench.resources import pet_state as pet_state
from scripts.bench.resources import provider_state as provider_state
from scripts.bench.resources import render as render
from scripts.bench.resources import secrets_provider as secrets_provider
from scripts.bench.resources import stack_state as stack_state
from scripts.bench.snapshot import SnapshotText as SnapshotText
from scripts.bench.update import MODES
from scripts.bench.workloads import GROUPS, Sizes, bench


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--backend", choices=("sqlite", "postgres", "all"), default="all")
    parser.add_argument(
        "--scale", type=float, default=1.0, help="multiplier for every resource count"
    )
    parser.add_argument(
        "--topology",
        choices=("auto", "embedded", "distributed"),
        default="auto",
        help="auto (default): embedded on SQLite, one process per service on PostgreSQL",
    )
    parser.add_argument(
        "--shapes",
        default=",".join(GROUPS),
        help="which runs, comma-separated: single (one stack), scaling (100 vs 10,000 "
        "resources), many (many stacks at once); default all",
    )
    parser.add_argument(
        "--modes",
        default=",".join(MODES),
        help="which update shapes, comma-separated: sequential, journal, delta; default all",
    )
    parser.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="CAIRN_NAME=VALUE",
        help="a setting every server of the run starts with (repeatable), e.g. "
        "CAIRN_LOCAL_CALLS=false to measure calls through the socket",
    )
    parser.add_argument("--json", action="store_true", help="also print a JSON object")
    args = parser.parse_args(argv)
    if not 0 < args.scale <= 10:
        parser.error("--scale must be in (0, 10]")
    args.shapes = [group.strip() for group in args.shapes.split(",") if group.strip()]
    unknown = sorted(set(args.shapes) - set(GROUPS))
    if unknown or not args.shapes:
        parser.error(f"--shapes takes some of {', '.join(GROUPS)} (got {unknown or 'none'})")
    args.modes = [mode.strip() for mode in args.modes.split(",") if mode.strip()]
    unknown = sorted(set(args.modes) - set(MODES))
    if unknown or not args.modes:
        parser.error(f"--modes takes some of {', '.join(MODES)} (got {unknown or 'none'})")
    settings: dict[str, str] = {}
    for setting in args.setting:
        name, equals, value = setting.partition("=")
        if not equals or not name.startswith("CAIRN_") or name != name.upper():
            parser.error(f"--setting takes CAIRN_NAME=VALUE (got {setting!r})")
        settings[name] = value
    args.setting = settings
    if args.topology == "distributed" and args.backend != "postgres":
        parser.error("--topology distributed needs --backend postgres (cairn refuses SQLite)")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    backends = ["sqlite", "postgres"] if args.backend == "all" else [args.backend]
    sizes = Sizes.for_scale(args.scale)
    results = asyncio.run(
        bench(backends, sizes, args.topology, args.shapes, args.modes, args.setting)
    )
    report = {
        "scale": args.scale,
        "settings": args.setting,
        "topology": args.topology,
        "shapes": args.shapes,
        "modes": args.modes,
        "backends": results,
    }
    rendered = table(report)
    if args.json:
        print(rendered, file=sys.stderr, flush=True)
        sys.stdout.write(orjson.dumps(report, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        print(rendered, flush=True)
    failed = [name for name, figures in results.items() if figures["status"] == "failed"]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
