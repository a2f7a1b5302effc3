"""The figures of a set of updates and the table printed at the end."""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

from scripts.bench.update import JOURNAL_BATCH_SIZE, MODES, UpdateResult


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def latency_figures(results: Iterable[UpdateResult]) -> dict[str, Any]:
    runs = list(results)
    samples = [s for r in runs for s in r.write_latencies_s]
    return {
        "resources": runs[0].resources,
        "runs": len(runs),
        "writes": len(samples),
        "verbatim_writes": sum(r.verbatim_writes for r in runs),
        "delta_writes": sum(r.delta_writes for r in runs),
        "journal_entries": sum(r.journal_entries for r in runs),
        "complete_ms": _ms(max(r.complete_s for r in runs)),
        "p50_ms": _ms(percentile(samples, 0.50)),
        "p99_ms": _ms(percentile(samples, 0.99)),
        "total_s": round(sum(r.total_s for r in runs) / len(runs), 3),
    }


def table(report: dict[str, Any]) -> str:
    lines = [f"Cairn update benchmark (scale {report['scale']})", ""]
    for backend, figures in report["backends"].items():
        title = "PostgreSQL + Redis" if backend == "postgres" else "SQLite"
        if figures["status"] == "skipped":
            lines += [f"{title}: skipped: {figures['reason']}", ""]
            continue
        if "up" not in figures:
            lines += [f"{title}: FAILED: {figures.get('reason', '')}"]
            lines += [f"  server error: {e}" for e in figures.get("server_errors", [])]
            lines.append("")
            continue
        up = figures["up"]
        lines.append(f"{title}  (checkpoint cutoff {figures['checkpoint_cutoff_bytes']} bytes)")
        lines.append(
            f"  {'':34}{'total s':>10}{'writes':>8}{'p50 ms':>10}{'p99 ms':>10}"
            f"{'complete ms':>13}  kind of writes"
        )
        for mode in MODES:
            f = up[mode]
            label = f"{f['resources']}-resource up, {mode}"
            kinds = (
                f"{f['journal_entries']} entries in batches of <= {JOURNAL_BATCH_SIZE}"
                if mode == "journal"
                else f"{f['verbatim_writes']} verbatim + {f['delta_writes']} delta"
            )
            lines.append(
                f"  {label:34}"
                f"{f['total_s']:>10.2f}{f['writes']:>8}{f['p50_ms']:>10.2f}{f['p99_ms']:>10.2f}"
                f"{f['complete_ms']:>13.1f}  {kinds}"
            )
        lines.append("")
        lines.append(
            f"  {'per-write p50 (ms)':34}{'small':>10}{'large':>10}{'ratio':>8}  (target ≤ 1.5)"
        )
        for mode in MODES:
            s = figures["scaling"][mode]
            label = f"{mode}: {s['small_resources']} vs {s['large_resources']}"
            lines.append(
                f"  {label:34}{s['p50_small_ms']:>10.2f}{s['p50_large_ms']:>10.2f}"
                f"{s['ratio']:>8.2f}"
            )
        for mode in MODES:
            s = figures["scaling"][mode]
            lines.append(
                f"  {s['large_resources']}-resource up, {mode}: total {s['total_large_s']:.2f} s, "
                f"{s['writes_large']} writes, p99 {s['p99_large_ms']:.2f} ms"
            )
        c = figures["concurrent"]
        lines += [
            "",
            f"  complete of the {figures['scaling']['journal']['large_resources']}-resource "
            f"journal update: {figures['complete_10k_journal_s']:.3f} s",
            f"  {c['stacks']} stacks x {c['resources_per_stack']} resources, {c['clients']} "
            f"clients (journal): wall {c['wall_s']:.2f} s (target < 10 s), "
            f"p50 {c['p50_ms']:.2f} ms, p99 {c['p99_ms']:.2f} ms",
            f"  peak RSS during the large runs: {figures['peak_rss_10k_mb']:.1f} MB "
            f"(VmHWM {figures['vmhwm_mb']:.1f} MB; target < 500 MB)",
        ]
        if figures.get("server_errors"):
            lines.append(f"  FAILED: {figures.get('reason', '')}")
            lines += [f"  server error: {e}" for e in figures["server_errors"]]
        lines.append("")
    return "\n".join(lines)
