"""Generator variants: the ONNX export matches the torch module; missing GPU pieces are named."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from engine.generator import make_generator, prepare_avatar
from engine.types import N_CONTROLS, Control, MotionWindow
from tests.conftest import REPO


def varied_controls(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c = np.zeros((n, N_CONTROLS), np.float32)
    c[:, Control.JAW_OPEN] = rng.uniform(0, 1, n)
    c[:, Control.BLINK_LEFT] = c[:, Control.BLINK_RIGHT] = rng.uniform(0, 1, n)
    c[:, Control.SMILE] = rng.uniform(0, 1, n)
    c[:, Control.GAZE_X] = rng.uniform(-1, 1, n)
    c[:, Control.HEAD_ROLL] = rng.uniform(-4, 4, n)
    c[:, Control.HEAD_YAW] = rng.uniform(-4, 4, n)
    return c


@pytest.mark.parametrize("portrait", [None, REPO / "tests/data/portraits/hopper.jpg"], ids=["stride1", "stride2"])
def test_onnx_export_matches_torch_within_one_level(portrait, tmp_path: Path, monkeypatch) -> None:
    from engine.generator import variants

    monkeypatch.setattr(variants, "CACHE_DIR", tmp_path)
    avatar = prepare_avatar(portrait)
    onnx_gen = variants.OnnxGenerator(avatar, cache_dir=tmp_path / "onnx")
    torch_gen = make_generator("torch", avatar)
    for n, seed in ((8, 0), (3, 1)):  # a whole window and a short last one: the window length is dynamic
        c = varied_controls(n, seed)
        got = onnx_gen._frames(c).astype(np.int16)
        want = torch_gen._frames(c).astype(np.int16)
        assert got.shape == want.shape == (n, *avatar.rgb.shape)
        assert np.abs(got - want).mean() < 1.0, "mean absolute error must stay under 1/255 of full scale"
    # The export is cached next to a key of the avatar: the next start loads it.
    assert onnx_gen.onnx_path.is_file() and onnx_gen.onnx_path.parent == tmp_path / "onnx"


def test_the_exported_graphs_cache_key_follows_the_prepared_data_and_the_renderers_code(monkeypatch) -> None:
    from engine.generator import variants

    avatar = prepare_avatar()
    key = variants.model_key(avatar)
    assert variants.model_key(avatar) == key  # the same avatar and code: the cached export is reused
    monkeypatch.setattr(variants, "PREP_VERSION", variants.PREP_VERSION + 1)
    assert variants.model_key(avatar) != key, "a new PREP_VERSION would load a stale export"
    monkeypatch.undo()
    monkeypatch.setattr(variants, "source_digest", lambda: b"edited renderer")
    assert variants.model_key(avatar) != key, "an edited renderer would load a stale export"


def test_variants_render_windows_through_the_generator_protocol() -> None:
    gen = make_generator("torch", prepare_avatar())
    window, cond = gen.render(MotionWindow(0, varied_controls(4, 2), np.zeros(4000, np.float32)), gen.first_frame())
    assert window.frames_rgb.shape[0] == 4 and window.frames_i420 is not None and cond.frame_index == 3
    assert window.alpha_frames is None  # nothing asked for the person's alpha: none is made
    gen.emit_alpha = True  # a keyed background (streaming/keying.py) asks any variant for it
    window, _ = gen.render(MotionWindow(4, varied_controls(4, 3), np.zeros(4000, np.float32)), cond)
    assert window.alpha_frames is not None and window.alpha_frames.shape == window.frames_rgb.shape[:3]
    assert window.alpha_frames.max() > window.alpha_frames.min(), "a flat alpha: the person is not in it"


def test_missing_gpu_pieces_are_named() -> None:
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA: the message for a missing GPU cannot be shown here")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        make_generator("tensorrt", prepare_avatar())
    with pytest.raises(ValueError, match="unknown generator 'wrap'"):
        make_generator("wrap", prepare_avatar())


def test_compiled_module_matches_torch(caplog: pytest.LogCaptureFixture) -> None:
    """torch.compile on CPU (inductor, gcc), then exact to a level, as one graph that serves every window length: a
    graph break or a recompile for a new length would stall a live stream whose windows change length (17 s each
    on this machine). The suite's slowest test: 159-183 s alone with inductor's caches empty (was 235-246 s with
    22 graphs, and again for the short window)."""
    from torch._dynamo.utils import counters

    avatar = prepare_avatar()
    compiled, reference = make_generator("compile", avatar), make_generator("torch", avatar)
    counters.clear()
    caplog.set_level(logging.INFO, logger="engine.generator.variants")
    for n, seed in ((6, 0), (3, 1)):  # a whole window and a short last one (dynamic=True)
        c = varied_controls(n, seed)
        assert np.abs(compiled._frames(c).astype(np.int16) - reference._frames(c).astype(np.int16)).max() <= 1
    assert not counters["graph_break"], dict(counters["graph_break"])
    assert counters["stats"]["unique_graphs"] == 1, dict(counters["stats"])
    # The minutes of the first window are announced, and their end, once.
    said = [r.getMessage() for r in caplog.records if r.name == "engine.generator.variants"]
    assert len(said) == 2, said
    assert said[0].startswith("torch.compile: compiling the renderer for this avatar on cpu (once; "), said
    assert said[1].startswith("torch.compile: compiled and rendered the first window in "), said


@pytest.mark.skipif(not torch.cuda.is_available(), reason="TensorRT needs a CUDA GPU")
def test_tensorrt_engine_matches_torch_within_one_level(tmp_path: Path) -> None:
    pytest.importorskip("tensorrt")
    from engine.generator import variants

    avatar = prepare_avatar()
    trt_gen = variants.TensorRTGenerator(avatar, cache_dir=tmp_path)
    reference = make_generator("torch", avatar)
    for n, seed in ((8, 0), (1, 1), (20, 2)):  # inside the profile, its minimum, and split in two
        c = varied_controls(n, seed)
        got, want = trt_gen._frames(c).astype(np.int16), reference._frames(c).astype(np.int16)
        assert got.shape == want.shape
        assert np.abs(got - want).mean() < 1.0
    assert trt_gen.plan_path.is_file()  # cached: the next start loads it instead of building


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_torch_variant_on_cuda_matches_the_cpu_module() -> None:
    from engine.generator.variants import TorchGenerator

    avatar = prepare_avatar()
    gpu, cpu = TorchGenerator(avatar), TorchGenerator(avatar, device="cpu")
    assert gpu.renderer.roi_src.is_cuda  # so the renderer takes the Triton warp + composite
    c = varied_controls(8, 3)
    assert np.abs(gpu._frames(c).astype(np.int16) - cpu._frames(c).astype(np.int16)).mean() < 1.0
