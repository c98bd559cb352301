"""Sub-clip generators: render windows of frames, each conditioned on the previous window's last frame."""

from __future__ import annotations

from engine.config import EngineConfig
from engine.generator.avatar import AvatarError, PreparedAvatar, prepare_avatar
from engine.generator.base import Generator
from engine.generator.warp import WarpGenerator

GENERATORS = ("warp", "torch", "compile", "onnx", "tensorrt")


def make_generator(name: str, avatar: PreparedAvatar, threads: int = 1) -> Generator:
    """warp: the CPU fast path (default); torch, compile, onnx, tensorrt: see engine.generator.variants."""
    if name == "warp":
        return WarpGenerator(avatar, threads=threads)
    from engine.generator import variants

    if name == "torch":
        return variants.TorchGenerator(avatar, threads)
    if name == "compile":
        return variants.CompiledGenerator(avatar, threads)
    if name == "onnx":
        return variants.OnnxGenerator(avatar, threads)
    if name == "tensorrt":
        return variants.tensorrt_generator(avatar, threads)
    raise ValueError(f"unknown generator {name!r}: choose one of {', '.join(GENERATORS)}")


def generator_for(config: EngineConfig, avatar: PreparedAvatar) -> Generator:
    """The generator a session of this configuration renders with."""
    return make_generator(config.generator, avatar, threads=config.render_threads)


__all__ = [
    "AvatarError", "Generator", "PreparedAvatar", "WarpGenerator", "generator_for", "make_generator", "prepare_avatar",
]
