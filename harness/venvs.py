"""A venv of its own, built once under ~/.cache and reused, for what cannot share the project's environment
(vLLM's CPU build; the agent frameworks' protobuf). Safe to call from several processes at once (a file lock);
a half-built venv is removed and built again; a venv built for other versions is rebuilt."""

from __future__ import annotations

import fcntl
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

_MARKER = ".avatar-engine-ready"


def tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def ensure_venv(venv: Path, spec: tuple[str, ...], steps: Callable[[Path], list[list[str]]],
                failure: Callable[[str], Exception], what: str, timeout_s: float) -> Path:
    """The venv's python, running `steps(python)` first (each a command; the first usually makes the venv) if
    the venv is missing or was built for another `spec`. A failing step raises failure(message with the log)."""
    python = venv / "bin" / "python"
    marker = venv / _MARKER
    wanted = " ".join(spec)

    def ready() -> bool:
        return marker.exists() and marker.read_text().strip() == wanted and python.exists()

    if ready():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / (venv.name + ".install.log")
    with open(venv.parent / (venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if ready():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        deadline = time.monotonic() + timeout_s
        with open(log, "w") as out:
            for cmd in steps(python):
                left = deadline - time.monotonic()
                try:
                    rc: int | str = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT,
                                                   timeout=max(1.0, left)).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
                if rc != 0:
                    out.flush()
                    raise failure(f"building the {what} failed at {' '.join(cmd[-3:])!r} ({rc}); log {log}:\n"
                                  f"{tail(log)}")
        marker.write_text(wanted + "\n")
    return python
