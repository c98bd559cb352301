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


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_the_interior_laid_over_where_its_alpha_reaches_is_the_whole_boxs_blend(stride: int) -> None:
    """kernels.warp_cv2.over blends only the samples whose alpha is not 0 and one beyond each side: the same bytes
    as blending the whole box, whatever the stride its samples are given at (an opening at the box's edge too)."""
    import numpy as np

    from kernels.warp_cv2 import over, upsample

    rng = np.random.default_rng(stride)
    h, w = 31 * stride, 47 * stride
    for rows, cols in ((slice(9, 14), slice(12, 30)), (slice(0, 4), slice(40, 47)), (slice(5, 6), slice(3, 4))):
        region = rng.integers(0, 256, (h, w, 3), np.uint8)
        overlay = rng.random((31, 47, 3), np.float32)
        alpha = np.zeros((31, 47), np.float32)
        alpha[rows, cols] = rng.random((rows.stop - rows.start, cols.stop - cols.start), np.float32)
        a = upsample(alpha, stride, h, w)[..., None]
        below = region.astype(np.float32)
        want = (below + (upsample(overlay, stride, h, w) * 255.0 - below) * a + 0.5).astype(np.uint8)
        over(region, overlay, alpha, stride)
        assert np.array_equal(region, want), f"{rows}, {cols}: {np.count_nonzero(region != want)} bytes differ"


def test_the_mirrored_layer_reads_as_the_map_folded_back_at_the_pictures_edges() -> None:
    """engine.generator.warp.mirrored: OpenCV's remap of the padded layer, through the map shifted by its place,
    equals the remap of the layer through the map folded back (`fold`) at the sides that are the picture's edges
    and clamped at the others."""
    import cv2
    import numpy as np

    from engine.generator.warp import fold, mirrored

    rng = np.random.default_rng(0)
    h, w = 40, 60
    layer = rng.integers(0, 256, (h, w, 4), np.uint8)
    ys, xs = np.meshgrid(np.arange(h, dtype=np.float32), np.arange(w, dtype=np.float32), indexing="ij")
    mx = xs + 9.0 * np.sin(ys / 6.0) + rng.normal(0, 0.3, xs.shape).astype(np.float32)
    my = ys + 7.0 * np.cos(xs / 8.0) + rng.normal(0, 0.3, ys.shape).astype(np.float32)
    for at_edge in (((True, False), (True, False)), ((False, True), (False, True)), ((True, True), (True, True))):
        (left, right), (top, bottom) = at_edge
        fx = fold(mx, 0.0 if left else None, w - 1.0 if right else None)
        fy = fold(my, 0.0 if top else None, h - 1.0 if bottom else None)
        want = cv2.remap(layer, fx, fy, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        padded, (px, py) = mirrored(layer, at_edge, 12)
        got = cv2.remap(padded, mx + px, my + py, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        # (measured 0 here; on larger pictures a shifted coordinate may round to the next of the map's 1/32-pixel
        # steps: a level or two. Left unmirrored, 216-221 levels.)
        diff = np.abs(got.astype(int) - want)
        assert diff.max() <= 2, f"{at_edge}: max {diff.max()}"
