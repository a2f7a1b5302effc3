"""`cairn up` as a subprocess on a free loopback port, with its memory and CPU time read.

`embedded` runs the whole system in the one process; `distributed` runs `cairn up --topology
distributed`, every service and two gateways their own processes (children of `cairn up`),
so the CPU time of each can be told apart by its command line.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Final, Literal

import aiohttp

from scripts.bench.client import ADMIN_TOKEN, HOST, BenchError, log

HEALTH_TIMEOUT_S: Final = 120.0
STOP_TIMEOUT_S: Final = 20.0
RSS_POLL_S: Final = 0.05
TREE_REFRESH_S: Final = 1.0
PAGE_KB: Final = os.sysconf("SC_PAGE_SIZE") // 1024
CLOCK_TICKS: Final = os.sysconf("SC_CLK_TCK")
PORT_ATTEMPTS: Final = 32

Topology = Literal["embedded", "distributed"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        port: int = sock.getsockname()[1]
        return port


def free_port_pair() -> int:
    """A free port whose successor is free too (the distributed topology's two gateways)."""
    for _ in range(PORT_ATTEMPTS):
        port = free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            try:
                sock.bind((HOST, port + 1))
            except OSError:
                continue
        return port
    raise BenchError(f"no two consecutive free ports found in {PORT_ATTEMPTS} attempts")


def cairn_command() -> list[str]:
    beside = Path(sys.executable).parent / "cairn"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("cairn")
    if found:
        return [found]
    return [sys.executable, "-m", "cairn"]


def _status_kb(pid: int, key: str) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def _rss_kb(pid: int) -> int:
    """Resident set of a process from /proc/<pid>/statm (0 when it is gone)."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as statm:
            return int(statm.read().split()[1]) * PAGE_KB
    except (OSError, IndexError, ValueError):
        return 0


def _process_tree(pid: int) -> list[int]:
    """The process and its descendants (bounded walk of /proc/<pid>/task/*/children)."""
    pids = [pid]
    index = 0
    while index < len(pids) and len(pids) < 256:
        current = pids[index]
        index += 1
        tasks = Path(f"/proc/{current}/task")
        try:
            task_dirs = list(tasks.iterdir())
        except OSError:
            continue
        for task in task_dirs:
            try:
                children = (task / "children").read_text().split()
            except OSError:
                continue
            pids.extend(int(child) for child in children if int(child) not in pids)
    return pids


def _cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc/<pid>/stat (0 when it is gone)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    # The command name (field 2) may hold spaces: the fields after it follow the last ')'.
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def process_label(pid: int) -> str:
    """`gateway`, `updates`, ... for `cairn serve <name>`; `cairn up` for the runner itself."""
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return "gone"
    words = [word.decode(errors="replace") for word in argv if word]
    if "serve" in words and words.index("serve") + 1 < len(words):
        return words[words.index("serve") + 1]
    if "up" in words:
        return "cairn up"
    return Path(words[0]).name if words else "?"


class CairnServer:
    """`cairn up` as a subprocess, with an RSS poller; only this process is ever signalled."""

    def __init__(
        self, data_dir: Path, env: dict[str, str], topology: Topology = "embedded"
    ) -> None:
        self.topology = topology
        self.port = free_port_pair() if topology == "distributed" else free_port()
        self.base_url = f"http://{HOST}:{self.port}"
        self.data_dir = data_dir
        self.env = env
        self.log_path = data_dir / "cairn.log"
        self.process: asyncio.subprocess.Process | None = None
        self.peak_kb = 0
        self.window_peak_kb = 0
        self._poller: asyncio.Task[None] | None = None

    async def start(self, session: aiohttp.ClientSession) -> None:
        # Nothing CAIRN_* is inherited: the backend is exactly what this benchmark says.
        env = {k: v for k, v in os.environ.items() if not k.startswith("CAIRN_")}
        env.update(self.env)
        env.update(
            {
                "CAIRN_ADMIN_TOKEN": ADMIN_TOKEN,
                "CAIRN_LOG_LEVEL": "warning",
                "CAIRN_PUBLIC_URL": self.base_url,
            }
        )
        with self.log_path.open("ab") as log_file:
            self.process = await asyncio.create_subprocess_exec(
                *cairn_command(),
                "up",
                "--host",
                HOST,
                "--port",
                str(self.port),
                "--data-dir",
                str(self.data_dir / "data"),
                "--topology",
                self.topology,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log_file,
                stderr=log_file,
                env=env,
            )
        self._poller = asyncio.create_task(self._poll_rss())
        deadline = time.monotonic() + HEALTH_TIMEOUT_S
        last = "no answer"
        while time.monotonic() < deadline:
            if self.process.returncode is not None:
                raise BenchError(
                    f"cairn up exited with {self.process.returncode}:\n{self.log_tail()}"
                )
            try:
                async with session.get(
                    f"{self.base_url}/healthz", timeout=aiohttp.ClientTimeout(total=5)
                ) as response:
                    if response.status == 200:
                        return
                    last = f"HTTP {response.status}: {(await response.text())[:300]}"
            except (aiohttp.ClientError, TimeoutError) as error:
                last = repr(error)
            await asyncio.sleep(0.2)
        raise BenchError(
            f"cairn up not healthy after {HEALTH_TIMEOUT_S:.0f} s ({last}):\n{self.log_tail()}"
        )

    async def _poll_rss(self) -> None:
        """Sum the tree's RSS every `RSS_POLL_S`; the tree itself (a walk of every thread's
        children) only every `TREE_REFRESH_S`, so the poller costs the machine little CPU
        (the benchmark shares the cores with the server it measures)."""
        assert self.process is not None
        pid = self.process.pid
        tree: list[int] = []
        walked_at = float("-inf")
        while self.process.returncode is None:
            if time.monotonic() - walked_at >= TREE_REFRESH_S:
                tree, walked_at = _process_tree(pid), time.monotonic()
            total = sum(_rss_kb(p) for p in tree)
            self.peak_kb = max(self.peak_kb, total)
            self.window_peak_kb = max(self.window_peak_kb, total)
            await asyncio.sleep(RSS_POLL_S)

    @property
    def pid(self) -> int:
        return self.process.pid if self.process is not None else 0

    def reset_window(self) -> None:
        self.window_peak_kb = 0

    def high_water_kb(self) -> int:
        """The sum of every cairn process's VmHWM (lifetime peak RSS; an upper bound)."""
        if self.process is None or self.process.returncode is not None:
            return 0
        return sum(_status_kb(pid, "VmHWM") for pid in _process_tree(self.process.pid))

    def processes(self) -> dict[str, int]:
        """How many processes of each label the system runs."""
        if self.process is None:
            return {}
        return dict(Counter(process_label(pid) for pid in _process_tree(self.process.pid)))

    def cpu_seconds(self) -> dict[str, float]:
        """utime + stime so far, summed per label (the updates replicas together)."""
        totals: dict[str, float] = {}
        if self.process is None:
            return totals
        for pid in _process_tree(self.process.pid):
            label = process_label(pid)
            totals[label] = totals.get(label, 0.0) + _cpu_seconds(pid)
        return totals

    def log_tail(self, lines: int = 40) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def stop(self) -> None:
        process = self.process
        if process is not None and process.returncode is None:
            process.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
            except TimeoutError:
                log(
                    f"cairn (pid {process.pid}) ignored SIGTERM for {STOP_TIMEOUT_S:.0f} s: SIGKILL"
                )
                process.kill()
                await asyncio.wait_for(process.wait(), STOP_TIMEOUT_S)
        if self._poller is not None:
            self._poller.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._poller
