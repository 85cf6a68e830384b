"""What the app-driving scripts (soak, load_locust, bench_app) share: a free loopback port, the
app process's resident memory and CPU time from /proc, and stopping it."""
from __future__ import annotations

import os
import socket
import subprocess
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mib(pid: int) -> float:
    """Resident memory of process ``pid`` in MiB (nan when /proc does not say)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` (all its threads), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK  # fields 14 and 15 of proc(5), counted after the name


def stop(app: subprocess.Popen, timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL when the app has not exited within ``timeout`` seconds."""
    app.terminate()
    try:
        app.wait(timeout)
    except subprocess.TimeoutExpired:
        app.kill()
