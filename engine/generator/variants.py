"""Compiled variants of the warp generator, chosen by name (config `generator`).

- torch     the nn.Module's own forward (float pipeline; CPU or CUDA)
- compile   the same module through torch.compile
- onnx      the module exported to ONNX (dynamic window length), run by onnxruntime (CUDA if present)
- tensorrt  an engine built from that ONNX export, cached per GPU and shape (needs CUDA and TensorRT;
            written against TensorRT 10, not yet run: no GPU with TensorRT was available)

The default `warp` (engine.generator.warp.WarpGenerator) is the CPU fast path; all of them share the
renderer and its parity: ONNX is tested against torch within 1/255 (tests/test_variants.py).
"""

from __future__ import annotations

import hashlib
import logging
import os
import time
from pathlib import Path

import numpy as np
import torch

from engine.generator.avatar import PREP_VERSION, PreparedAvatar, source_digest
from engine.generator.warp import WarpGenerator
from engine.types import N_CONTROLS

log = logging.getLogger(__name__)
CACHE_DIR = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "avatar-engine"


class TorchGenerator(WarpGenerator):
    """The module's float forward: the reference every other path is checked against. On a CUDA
    machine it runs on the GPU (warp + composite through the Triton kernel), else on the CPU."""

    name = "torch"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1, device: str | None = None) -> None:
        super().__init__(avatar, threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.renderer.to(self.device)

    def _frames(self, controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        if alphas is not None:  # a keyed background wants each frame's person alpha: the byte path makes both
            return super()._frames(controls, alphas)
        with torch.inference_mode():
            return self.renderer(torch.from_numpy(controls).to(self.device)).cpu().numpy()


class CompiledGenerator(TorchGenerator):
    name = "compile"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1) -> None:
        super().__init__(avatar, threads)
        # dynamic=True: the last window of an offline render is shorter; one graph serves all lengths.
        self._compiled = torch.compile(self.renderer, dynamic=True)
        self._compiled_once = False

    def _frames(self, controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        if alphas is not None:  # a keyed background wants each frame's person alpha: the byte path makes both
            return super()._frames(controls, alphas)
        t0 = time.monotonic()
        if not self._compiled_once:  # (a silent wait of minutes reads as a hang)
            log.info("torch.compile: compiling the renderer for this avatar on %s (once; ~3 min on 2 CPU cores)",
                     self.device)
        # The rig's measures are Python floats on the module: dynamic=True would trace them as symbols, then restart
        # its whole analysis to make them constants again (a third of the compile); they are constants per avatar.
        with torch.inference_mode(), torch._dynamo.config.patch(specialize_float=True):
            frames = self._compiled(torch.from_numpy(controls).to(self.device)).cpu().numpy()
        if not self._compiled_once:
            log.info("torch.compile: compiled and rendered the first window in %.0f s", time.monotonic() - t0)
            self._compiled_once = True
        return frames


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
    h = hashlib.sha256(f"v{PREP_VERSION}:".encode())
    h.update(avatar.rgb.tobytes())
    h.update(avatar.landmarks.tobytes())
    h.update(torch.__version__.encode())
    h.update(source_digest())  # the renderer's code: an exported graph bakes in what it computed
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

    def _frames(self, controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        if alphas is not None:  # a keyed background wants each frame's person alpha: the byte path makes both
            return super()._frames(controls, alphas)
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
    return TensorRTGenerator(avatar, threads)


TRT_MAX_WINDOW = 16  # the engine's optimisation profile covers windows of 1..16 frames; longer ones are split


def engine_path(cache_dir: Path, avatar: PreparedAvatar, trt_version: str) -> Path:
    """An engine is only valid for the GPU model and TensorRT version that built it, and its shapes."""
    major, minor = torch.cuda.get_device_capability()
    gpu = "".join(c if c.isalnum() else "-" for c in torch.cuda.get_device_name()).strip("-")
    return cache_dir / f"warp-{model_key(avatar)}-{gpu}-sm{major}{minor}-trt{trt_version}-n1-{TRT_MAX_WINDOW}.plan"


def build_engine(onnx_path: Path, plan_path: Path) -> None:
    """Parse the ONNX export and build a serialized engine for windows of 1..TRT_MAX_WINDOW frames."""
    import tensorrt as trt

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Explicit batch is the only mode in TensorRT 10 (the flag is accepted and ignored there) and
    # must be asked for in 8.x.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    profile.set_shape("controls", (1, N_CONTROLS), (4, N_CONTROLS), (TRT_MAX_WINDOW, N_CONTROLS))
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ValueError(f"TensorRT could not build an engine from {onnx_path} (see its log above)")
    plan_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = plan_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    tmp.replace(plan_path)  # atomic: a concurrent start never loads half an engine


class TensorRTGenerator(WarpGenerator):
    """The ONNX export built into a TensorRT engine (cached per avatar, GPU, TensorRT version and
    shape range), run on torch's current CUDA stream. Written against TensorRT 10's tensor API."""

    name = "tensorrt"

    def __init__(self, avatar: PreparedAvatar, threads: int = 1, cache_dir: Path = CACHE_DIR) -> None:
        super().__init__(avatar, threads)
        import tensorrt as trt

        onnx_path = cache_dir / "onnx" / f"warp-{model_key(avatar)}.onnx"
        if not onnx_path.is_file():
            export_onnx(self, onnx_path)
        self.plan_path = engine_path(cache_dir / "tensorrt", avatar, trt.__version__)
        if not self.plan_path.is_file():
            log.info("building a TensorRT engine for this avatar and GPU (once; minutes): %s", self.plan_path)
            build_engine(onnx_path, self.plan_path)
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(self.plan_path.read_bytes())
        if self._engine is None:
            raise ValueError(f"TensorRT cannot load {self.plan_path}: delete it to rebuild")
        self._context = self._engine.create_execution_context()
        dtypes = {trt.float32: torch.float32, trt.float16: torch.float16, trt.int32: torch.int32,
                  trt.uint8: torch.uint8}
        self._out_dtype = dtypes[self._engine.get_tensor_dtype("frames")]

    def _frames(self, controls: np.ndarray, alphas: np.ndarray | None = None) -> np.ndarray:
        if alphas is not None:  # a keyed background wants each frame's person alpha: the byte path makes both
            return super()._frames(controls, alphas)
        parts = [self._run(controls[i : i + TRT_MAX_WINDOW]) for i in range(0, len(controls), TRT_MAX_WINDOW)]
        return np.concatenate(parts)

    def _run(self, controls: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(np.ascontiguousarray(controls, np.float32)).cuda()
        ctx = self._context
        ctx.set_input_shape("controls", tuple(x.shape))
        out = torch.empty(tuple(ctx.get_tensor_shape("frames")), dtype=self._out_dtype, device="cuda")
        ctx.set_tensor_address("controls", x.data_ptr())
        ctx.set_tensor_address("frames", out.data_ptr())
        stream = torch.cuda.current_stream()
        if not ctx.execute_async_v3(stream.cuda_stream):
            raise RuntimeError("TensorRT failed to run the engine")
        stream.synchronize()
        return out.cpu().numpy()
