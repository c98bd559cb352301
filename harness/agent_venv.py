"""A venv with the two agent frameworks (pipecat-ai, livekit-agents) over this project's packages, for their tests.

Why a venv of its own: mediapipe 0.10.21 (pinned: the face-mesh model is inside its wheel) declares
protobuf<5, while pipecat-ai 1.x needs protobuf>=5.29,<7 and livekit-agents >=5. pip's resolver therefore
cannot install either beside this project in one environment without going back to pipecat-ai 0.0.49 and
downgrading aiohttp, pydantic and pillow. mediapipe gives the same answers with protobuf 6 all the same
(face mesh and selfie segmentation: tests/test_agent_frameworks.py compares them), but not with protobuf 7,
where its face mesh fails (FieldDescriptor.label is gone), which livekit-agents alone would install. So the
venv is made with --system-site-packages and gets the frameworks and protobuf 6 on top: the project's own
packages come from the parent environment, only what the frameworks add or need newer shadows them.

Built once under ~/.cache/avatar-engine/agents-venv (~20 s and ~390 MB here), reused while the pinned
versions match; safe to call from several processes at once (a file lock).

    python -m harness.agent_venv          # build it (what .ci/run does), print its python
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

AGENT_SPEC = ("pipecat-ai==1.14.0", "livekit-agents==1.8.9", "protobuf==6.33.6")
AGENT_VENV = Path(os.environ.get("AVATAR_ENGINE_AGENT_VENV", "~/.cache/avatar-engine/agents-venv")).expanduser()
_MARKER = ".avatar-engine-ready"


class AgentVenvUnavailable(RuntimeError):
    """The venv could not be built; the message says why (with the install log's tail)."""


def _tail(path: Path, n: int = 3000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def ensure_agent_venv(venv: Path = AGENT_VENV, timeout_s: float = 600.0) -> Path:
    """The venv's python, building the venv first if it is missing or was built for other versions."""
    python = venv / "bin" / "python"
    marker = venv / _MARKER
    spec = " ".join(AGENT_SPEC)
    if marker.exists() and marker.read_text().strip() == spec and python.exists():
        return python
    venv.parent.mkdir(parents=True, exist_ok=True)
    log = venv.parent / (venv.name + ".install.log")
    with open(venv.parent / (venv.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if marker.exists() and marker.read_text().strip() == spec and python.exists():
            return python
        shutil.rmtree(venv, ignore_errors=True)
        deadline = time.monotonic() + timeout_s
        steps = [
            [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
            # pip warns that mediapipe asks for protobuf<5 and installs anyway: that is the point of this venv.
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *AGENT_SPEC],
            [str(python), "-c", "import pipecat, livekit.agents, livekit.rtc, mediapipe, google.protobuf as p; "
                                "print('protobuf', p.__version__)"],
        ]
        with open(log, "w") as out:
            for cmd in steps:
                left = deadline - time.monotonic()
                try:
                    rc = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=max(1.0, left)).returncode
                except subprocess.TimeoutExpired:
                    rc = "timeout"
                if rc != 0:
                    out.flush()
                    raise AgentVenvUnavailable(f"building the agent-framework venv failed at {' '.join(cmd[-3:])!r} "
                                               f"({rc}); log {log}:\n{_tail(log)}")
        marker.write_text(spec + "\n")
    return python


def run_in_agent_venv(module: str, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """`python -m module args` in the venv, from the repository root (so this checkout's code is imported)."""
    python = ensure_agent_venv()
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(python), "-m", module, *args], cwd=root, env=env, capture_output=True, text=True,
                          timeout=timeout_s)


if __name__ == "__main__":
    t0 = time.monotonic()
    print(ensure_agent_venv(), f"({time.monotonic() - t0:.1f} s)")
