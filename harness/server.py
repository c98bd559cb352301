"""The real server as a child process on a free port of 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import psutil
from aiohttp import web

from harness import REPO


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProcess:
    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, *extra: str, startup_timeout_s: float = 90.0) -> ServerProcess:
    """server.py with `extra` arguments, its output logged under tmp; returns once /health answers."""
    port = free_port()
    log_path = tmp / f"server-{port}.log"
    log = log_path.open("wb")
    proc = subprocess.Popen(
        [sys.executable, str(REPO / "server.py"), "--host", "127.0.0.1", "--port", str(port), *extra],
        cwd=REPO, stdout=log, stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + startup_timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            with urllib.request.urlopen(url + "/health", timeout=1) as r:
                if r.status == 200:
                    return ServerProcess(url, proc, log_path)
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"server did not answer /health in {startup_timeout_s}s:\n{log_path.read_text()}")


def stop_server(server: ServerProcess) -> None:
    server.proc.terminate()
    try:
        server.proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        server.proc.kill()
        server.proc.wait(timeout=5)


@contextlib.asynccontextmanager
async def running(app: web.Application) -> AsyncIterator[str]:
    """An app served in this process on a free port of 127.0.0.1: its base URL until the block ends."""
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


def busy_s(pid: int) -> float:
    """CPU seconds (user + system) of a process and its children: the server renders in processes of its own
    (engine/render_process.py), whose CPU its own counters leave out."""
    root = psutil.Process(pid)
    total = 0.0
    for proc in (root, *root.children(recursive=True)):
        with contextlib.suppress(psutil.Error):  # a child that ended between the listing and the reading
            times = proc.cpu_times()
            total += times.user + times.system
    return total


class CpuMeter:
    """The server's CPU (its render processes included), in percent of one core, between calls to percent()."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self._last = (busy_s(pid), time.monotonic())

    def percent(self) -> float:
        busy, now = busy_s(self.pid), time.monotonic()
        pct = 100.0 * max(0.0, busy - self._last[0]) / max(1e-6, now - self._last[1])
        self._last = (busy, now)
        return pct
