"""Compiled variants of the warp generator, chosen by name (config `generator`).

- torch     the nn.Module's own forward (float pipeline; CPU or CUDA)
- compile   the same module through torch.compile
- onnx      the module exported to ONNX (dynamic window length), run by onnxruntime (CUDA if present)
- tensorrt  an engine built from that ONNX export, cached per GPU and shape (needs CUDA and TensorRT)

The default `warp` (engine.generator.warp.WarpGenerator) is the CPU fast path; all of them share the
renderer and its parity: ONNX is tested against torch within 1/255 (tests/test_variants.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import numpy as np
import torch

from engine.generator.avatar import PreparedAvatar
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS

log = logging.getLogger(__name__)
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avatar-engine"


class TorchGenerator(WarpGenerator):
    """The module's float forward: the reference every other path is checked against."""

    name = "torch"

    def _frames(self, controls: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self.renderer(torch.from_numpy(controls)).numpy()


class CompiledGenerator(TorchGenerator):
    name = "compile"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1) -> None:
        super().__init__(avatar, threads)
        # dynamic=True: the last window of an offline render is shorter; one graph serves all lengths.
        self._compiled = torch.compile(self.renderer, dynamic=True)

    def _frames(self, controls: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._compiled(torch.from_numpy(controls)).numpy()


def export_onnx(generator: WarpGenerator, path: Path) -> Path:
    """The renderer as ONNX with a dynamic window length (the TorchScript exporter: no extra packages)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    example = torch.zeros((4, N_CONTROLS), dtype=torch.float32)
    tmp = path.with_suffix(".tmp.onnx")
    torch.onnx.export(generator.renderer, (example,), str(tmp), dynamo=False, opset_version=17,
                      input_names=["controls"], output_names=["frames"],
                      dynamic_axes={"controls": {0: "n"}, "frames": {0: "n"}})
    tmp.replace(path)  # atomic: a concurrent start never loads half a file
    return path


def model_key(avatar: PreparedAvatar) -> str:
    h = hashlib.sha256(avatar.rgb.tobytes())
    h.update(avatar.landmarks.tobytes())
    h.update(torch.__version__.encode())
    return h.hexdigest()[:16]


class OnnxGenerator(WarpGenerator):
    name = "onnx"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1, cache_dir: Path = CACHE_DIR / "onnx") -> None:
        super().__init__(avatar, threads)
        import onnxruntime as ort

        path = cache_dir / f"warp-{model_key(avatar)}.onnx"
        if not path.is_file():
            log.info("exporting the renderer to %s", path)
            export_onnx(self, path)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        providers = [p for p in ("CUDAExecutionProvider", "CPUExecutionProvider") if p in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), sess_options=options, providers=providers)
        self.onnx_path = path

    def _frames(self, controls: np.ndarray) -> np.ndarray:
        return self.session.run(None, {"controls": np.ascontiguousarray(controls, np.float32)})[0]


def tensorrt_generator(avatar: PreparedAvatar, threads: int = 1) -> WarpGenerator:
    """TensorRT needs CUDA and the tensorrt package; say which is missing rather than fail later."""
    if not torch.cuda.is_available():
        raise ValueError("the tensorrt generator needs a CUDA GPU, and torch sees none; use 'warp' (CPU) or 'onnx'")
    try:
        import tensorrt  # noqa: F401
    except ImportError as e:
        raise ValueError("the tensorrt generator needs TensorRT: pip install tensorrt (CUDA 12), "
                         "or use 'onnx', which runs on onnxruntime's CUDA provider") from e
    raise ValueError("the tensorrt engine build is not written yet: use 'onnx' (onnxruntime, CUDA if present)")
