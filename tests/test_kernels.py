"""The Triton warp + composite kernel against its torch oracle: through Triton's interpreter on CPU,
and on CUDA when there is one."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

PARITY = """
import torch
from kernels.warp import warp_composite
from kernels.warp_triton import warp_composite_triton
torch.manual_seed(0)
device = "{device}"
n, h, w = 2, 37, 53
src = torch.rand(3, h, w, device=device)
ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
sx = xs + 3 * torch.sin(ys / 5) + torch.randn(n, h, w) * 0.7   # some samples land outside: border clamp
sy = ys + 2 * torch.cos(xs / 4) + torch.randn(n, h, w) * 0.7
grid = torch.stack([sx / (w - 1) * 2 - 1, sy / (h - 1) * 2 - 1], dim=-1).to(device)
box = (10, 8, 31, 25)
overlay = torch.rand(n, 3, box[3] - box[1], box[2] - box[0], device=device)
alpha = torch.rand(n, 1, box[3] - box[1], box[2] - box[0], device=device)
want = warp_composite(src, grid, overlay, alpha, box)
got = warp_composite_triton(src, grid, overlay, alpha, box)
err = (got - want).abs().max().item()
print("max abs error", err)
assert err < 1e-4, err
# The person layer: premultiplied (colour x alpha, alpha) over a still plate.
a = torch.rand(1, h, w, device=device)
layer = torch.cat([torch.rand(3, h, w, device=device) * a, a])
plate = torch.rand(3, h, w, device=device)
want = warp_composite(layer, grid, overlay, alpha, box, plate)
got = warp_composite_triton(layer, grid, overlay, alpha, box, plate)
err = (got - want).abs().max().item()
print("layer max abs error", err)
assert err < 1e-4, err
"""


def run_parity(device: str, interpret: bool) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    if interpret:
        env["TRITON_INTERPRET"] = "1"  # set before triton is imported, in a process of its own
    return subprocess.run([sys.executable, "-c", PARITY.format(device=device)], capture_output=True, text=True,
                          timeout=300, cwd=REPO, env=env)


def test_triton_kernel_matches_torch_in_the_interpreter() -> None:
    pytest.importorskip("triton", reason="triton is not installed (pip install triton): the kernel cannot be run")
    result = run_parity("cpu", interpret=True)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "layer max abs error" in result.stdout


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU on this machine")
def test_triton_kernel_matches_torch_on_cuda() -> None:
    result = run_parity("cuda", interpret=False)
    assert result.returncode == 0, result.stderr[-3000:]


def test_kernel_module_imports_and_explains_without_triton() -> None:
    code = ("import sys; sys.modules['triton'] = None\n"
            "from kernels.warp_triton import warp_composite_triton\n"
            "import torch\n"
            "try:\n"
            "    warp_composite_triton(torch.zeros(3, 2, 2), torch.zeros(1, 2, 2, 2), torch.zeros(1, 3, 1, 1),"
            " torch.zeros(1, 1, 1, 1), (0, 0, 1, 1))\n"
            "except RuntimeError as e:\n"
            "    print(e)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "pip install" in result.stdout, result.stderr
