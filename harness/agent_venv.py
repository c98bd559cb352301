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

import os
import subprocess
import sys
import time
from pathlib import Path

from harness.venvs import ensure_venv

AGENT_SPEC = ("pipecat-ai==1.14.0", "livekit-agents==1.8.9", "protobuf==6.33.6")
AGENT_VENV = Path(os.environ.get("AVATAR_ENGINE_AGENT_VENV", "~/.cache/avatar-engine/agents-venv")).expanduser()


class AgentVenvUnavailable(RuntimeError):
    """The venv could not be built; the message says why (with the install log's tail)."""


def ensure_agent_venv(venv: Path = AGENT_VENV, timeout_s: float = 600.0) -> Path:
    """The venv's python, building the venv first if it is missing or was built for other versions."""
    def steps(python: Path) -> list[list[str]]:
        return [
            [sys.executable, "-m", "venv", "--system-site-packages", str(venv)],
            # pip warns that mediapipe asks for protobuf<5 and installs anyway: that is the point of this venv.
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q", *AGENT_SPEC],
            [str(python), "-c", "import pipecat, livekit.agents, livekit.rtc, mediapipe, google.protobuf as p; "
                                "print('protobuf', p.__version__)"],
        ]

    return ensure_venv(venv, AGENT_SPEC, steps, AgentVenvUnavailable, "agent-framework venv", timeout_s)


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
