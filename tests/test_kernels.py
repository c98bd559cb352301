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


@pytest.mark.parametrize("stride,interpolation", [(1, "linear"), (3, "linear"), (2, "cubic")])
def test_the_layer_warped_only_where_it_may_land_is_the_whole_boxs_bytes(stride: int, interpolation: str) -> None:
    """kernels.warp_cv2.layer_rects: a small layer (a head) in a large box, moved by a smooth map that carries it to
    the box's edges and past the source's: warping and compositing only its rectangles, the plate copied elsewhere,
    gives every byte of the whole box's composite; and the rectangles leave out much of the box (they would not if
    the layer's integral image were ignored: checked with a full one)."""
    import cv2
    import numpy as np

    from kernels.warp_cv2 import layer_rects, remap_composite, upsample

    rng = np.random.default_rng(stride)
    mode = cv2.INTER_LINEAR if interpolation == "linear" else cv2.INTER_CUBIC
    h, w = 150, 210
    src = np.zeros((h, w, 4), np.uint8)
    yy, xx = np.mgrid[0:h, 0:w]
    head = ((xx - 100) / 40.0) ** 2 + ((yy - 70) / 50.0) ** 2 < 1  # an ellipse, a soft rim
    src[..., 3] = np.where(head, 255, 0)
    src[70:75, 140:142, 3] = 1  # a lone faint wisp far from the head: its tile must be warped too
    src[..., :3] = (rng.integers(0, 256, (h, w, 3)) * (src[..., 3:] / 255.0)).astype(np.uint8)
    plate = rng.integers(0, 256, (h, w, 3), np.uint8)
    pad = 1 if stride > 1 else 0
    fh, fw = -(-h // stride) + 2 * pad, -(-w // stride) + 2 * pad
    gy, gx = np.mgrid[0:fh, 0:fw].astype(np.float32)
    gx, gy = (gx - pad) * stride + (stride - 1) / 2, (gy - pad) * stride + (stride - 1) / 2
    covered = cv2.integral((src[..., 3] > 0).astype(np.uint8))
    skipped = []
    for shift in ((0.0, 0.0), (31.7, -12.2), (-95.3, 40.1), (140.0, 10.0)):  # the last takes the wisp over the head
        q = np.stack([gx - shift[0] + 3.0 * np.sin(gy / 17.0), gy - shift[1] + 2.0 * np.cos(gx / 13.0)])
        q = q.astype(np.float32)
        xy = upsample(cv2.merge((q[0], q[1])), stride, h, w, pad * stride)
        overlay, alpha = np.zeros((4, 4, 3), np.float32), np.zeros((4, 4), np.float32)
        want = np.empty((h, w, 3), np.uint8)
        remap_composite(src, xy, None, overlay, alpha, (0, 0, 4, 4), want, plate, mode)
        rects = layer_rects(q, covered, stride, pad * stride, h, w, 5)
        got = np.empty((h, w, 3), np.uint8)
        remap_composite(src, xy, None, overlay, alpha, (0, 0, 4, 4), got, plate, mode, rects=rects)
        assert np.array_equal(got, want), f"{shift}: {np.count_nonzero(got != want)} bytes differ"
        skipped.append(1 - sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in rects) / (h * w))
        full = cv2.integral(np.ones((h, w), np.uint8))
        area = sum((r1 - r0) * (c1 - c0) for r0, r1, c0, c1 in layer_rects(q, full, stride, pad * stride, h, w, 5))
        assert area == h * w
    assert min(skipped) > 0.2, skipped


def test_the_box_converted_to_i420_alone_is_the_whole_frames_conversion() -> None:
    """kernels.warp_cv2.i420_in_box: frames that differ from the still only inside an odd-sided, odd-placed box,
    converted there alone over the still's conversion: the same bytes as converting each frame whole."""
    import cv2
    import numpy as np

    from kernels.warp_cv2 import i420_in_box

    rng = np.random.default_rng(1)
    h, w = 48, 64
    still = rng.integers(0, 256, (h, w, 3), np.uint8)
    for box in ((5, 7, 33, 41), (0, 0, 64, 48), (1, 3, 64, 47)):
        x0, y0, x1, y1 = box
        frames = np.repeat(still[None], 3, axis=0)
        frames[:, y0:y1, x0:x1] = rng.integers(0, 256, (3, y1 - y0, x1 - x0, 3), np.uint8)
        want = np.stack([cv2.cvtColor(f, cv2.COLOR_RGB2YUV_I420) for f in frames])
        got = i420_in_box(frames, cv2.cvtColor(still, cv2.COLOR_RGB2YUV_I420), box)
        assert np.array_equal(got, want), f"{box}: {np.count_nonzero(got != want)} bytes differ"
