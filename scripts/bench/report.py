"""The figures of a set of updates and the table printed at the end."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Final

from scripts.bench.update import MODES, UpdateResult

# Columns of the CPU figures: the request path first, the idle services and the runner last.
PROCESS_ORDER: Final = ("cairn up", "gateway", "updates", "identity", "stacks", "secrets")


def percentile(samples: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile."""
    if not samples:
        return 0.0
    ordered = sorted(samples)
    rank = max(1, math.ceil(fraction * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def _ms(seconds: float) -> float:
    return round(seconds * 1000.0, 3)


def shape_figures(
    results: Iterable[UpdateResult],
    wall_s: float,
    cpu_s: Mapping[str, float],
    peak_rss_kb: int,
) -> dict[str, Any]:
    """Latency, throughput and CPU per write of one shape's updates (run `wall_s` in all).

    `cpu_s` is the CPU time (user + system) each process label spent during the shape.
    """
    runs = list(results)
    samples = [s for r in runs for s in r.write_latencies_s]
    writes = len(samples)
    per_write = {
        label: round(seconds * 1000.0 / writes, 4) if writes else 0.0
        for label, seconds in sorted(cpu_s.items())
    }
    return {
        "runs": len(runs),
        "writes": writes,
        "verbatim_writes": sum(r.verbatim_writes for r in runs),
        "delta_writes": sum(r.delta_writes for r in runs),
        "journal_entries": sum(r.journal_entries for r in runs),
        "total_s": round(wall_s, 3),
        "p50_ms": _ms(percentile(samples, 0.50)),
        "p99_ms": _ms(percentile(samples, 0.99)),
        "max_ms": _ms(max(samples, default=0.0)),
        "writes_per_s": round(writes / wall_s, 1) if wall_s > 0 else 0.0,
        "complete_ms": _ms(max((r.complete_s for r in runs), default=0.0)),
        "cpu_ms_per_write": per_write,
        "cpu_ms_per_write_all": round(sum(per_write.values()), 4),
        "peak_rss_mb": round(peak_rss_kb / 1024, 1),
    }


def shape_label(shape: Mapping[str, Any]) -> str:
    if shape["stacks"] == 1:
        return f"{shape['resources_per_stack']}-resource up, {shape['mode']}"
    if shape["clients"] == 1:
        return f"{shape['stacks']} x {shape['resources_per_stack']}-resource up, {shape['mode']}"
    return (
        f"{shape['stacks']} x {shape['resources_per_stack']}, {shape['clients']} clients, "
        f"{shape['mode']}"
    )


def _backend_lines(backend: str, figures: dict[str, Any]) -> list[str]:
    title = "PostgreSQL + Redis" if backend == "postgres" else "SQLite"
    if figures["status"] == "skipped":
        return [f"{title}: skipped: {figures['reason']}", ""]
    if "shapes" not in figures:
        lines = [f"{title}: FAILED: {figures.get('reason', '')}"]
        lines += [f"  server error: {e}" for e in figures.get("server_errors", [])]
        return [*lines, ""]
    labels = sorted(
        figures["processes"],
        key=lambda label: (
            PROCESS_ORDER.index(label) if label in PROCESS_ORDER else len(PROCESS_ORDER),
            label,
        ),
    )
    processes = ", ".join(f"{label} x{count}" for label, count in figures["processes"].items())
    lines = [
        f"{title}, {figures['topology']} topology ({processes}); "
        f"checkpoint cutoff {figures['checkpoint_cutoff_bytes']} bytes",
        "",
        f"  {'':42}{'total s':>9}{'writes':>8}{'p50 ms':>9}{'p99 ms':>9}{'max ms':>9}"
        f"{'writes/s':>10}{'RSS MB':>8}   CPU ms per write: {'all':>7}"
        + "".join(f"{label[:10]:>11}" for label in labels),
    ]
    for shape in figures["shapes"].values():
        cpu = shape["cpu_ms_per_write"]
        lines.append(
            f"  {shape_label(shape):42}{shape['total_s']:>9.2f}{shape['writes']:>8}"
            f"{shape['p50_ms']:>9.2f}{shape['p99_ms']:>9.2f}{shape['max_ms']:>9.1f}"
            f"{shape['writes_per_s']:>10.1f}{shape['peak_rss_mb']:>8.0f}"
            f"   {'':18}{shape['cpu_ms_per_write_all']:>7.3f}"
            + "".join(f"{cpu.get(label, 0.0):>11.3f}" for label in labels)
        )
    if "scaling" in figures:
        lines += ["", f"  {'per-write p50 (ms)':42}{'small':>9}{'large':>9}{'ratio':>8}"]
        for mode in MODES:
            s = figures["scaling"][mode]
            label = f"{mode}: {s['small_resources']} vs {s['large_resources']} resources"
            lines.append(
                f"  {label:42}{s['p50_small_ms']:>9.2f}{s['p50_large_ms']:>9.2f}{s['ratio']:>8.2f}"
            )
        lines += [
            "",
            f"  complete of the {figures['scaling']['journal']['large_resources']}-resource "
            f"journal update: {figures['complete_10k_journal_s']:.3f} s",
        ]
    lines += [
        "",
        f"  peak RSS of the whole system: {figures['peak_rss_mb']:.1f} MB "
        f"(sum of every process's VmHWM {figures['vmhwm_mb']:.1f} MB)",
    ]
    if figures.get("server_errors"):
        lines.append(f"  FAILED: {figures.get('reason', '')}")
        lines += [f"  server error: {e}" for e in figures["server_errors"]]
    return [*lines, ""]


def table(report: dict[str, Any]) -> str:
    lines = [f"Cairn update benchmark (scale {report['scale']})"]
    settings = report.get("settings") or {}
    if settings:
        lines.append("settings: " + " ".join(f"{k}={v}" for k, v in sorted(settings.items())))
    lines.append("")
    for backend, figures in report["backends"].items():
        lines += _backend_lines(backend, figures)
    return "\n".join(lines)
