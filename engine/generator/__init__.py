"""Sub-clip generators: render windows of frames, each conditioned on the previous window's last frame.

Generators are registered by name with what they can do (engine.backends: warp, torch, compile, onnx,
tensorrt, and plugins). `generator_for` gives a session its generator, one per avatar shared by all
sessions where the generator allows it; `make_generator` always builds a new one.
"""

from __future__ import annotations

import hashlib
import threading

from engine.backends import GENERATORS, GeneratorCapabilities, register_generator
from engine.config import EngineConfig
from engine.generator.avatar import AvatarError, PreparedAvatar, prepare_avatar
from engine.generator.base import Generator
from engine.generator.warp import WarpGenerator


def make_generator(name: str, avatar: PreparedAvatar, threads: int = 1) -> Generator:
    """A new generator of the registered kind `name` (benchmarks build one per stream)."""
    generator = GENERATORS.get(name).factory(avatar, threads)
    if not isinstance(generator, Generator):
        raise TypeError(f"generator {name!r} built {generator!r}, which lacks the Generator protocol "
                        "(name, first_frame, render: engine/generator/base.py)")
    return generator


def avatar_identity(avatar: PreparedAvatar) -> tuple[str, tuple[int, int], str]:
    """Name, size and a digest of the pixels and landmarks: equal for the same portrait prepared twice."""
    digest = hashlib.blake2b(avatar.rgb.tobytes(), digest_size=16)
    digest.update(avatar.landmarks.tobytes())
    return avatar.name, avatar.size, digest.hexdigest()


# (backend, avatar identity, threads) -> the generator its sessions share. Kept for the process's life:
# a server has one avatar, and its next viewer must not load the weights again.
_shared: dict[tuple[object, ...], Generator] = {}
_shared_lock = threading.Lock()


def generator_for(config: EngineConfig, avatar: PreparedAvatar) -> Generator:
    """The generator a session of this configuration renders with: shared by every session of the same
    generator, avatar and thread count when its capabilities say `shareable`, else its own; rendering in
    the shared render processes when config.render_processes and its capabilities allow it."""
    backend = GENERATORS.get(config.generator)
    if not backend.capabilities.shareable:
        return make_generator(config.generator, avatar, config.render_threads)
    remote = config.render_processes and backend.capabilities.out_of_process
    key = (backend, avatar_identity(avatar), config.render_threads, remote)
    with _shared_lock:  # sessions starting together build it once
        if key not in _shared:
            if remote:
                from engine.render_process import ProcessGenerator, render_process_pool

                _shared[key] = ProcessGenerator(config.generator, avatar, config.render_threads, key[1],
                                                render_process_pool(config.render_pool_size))
            else:
                _shared[key] = make_generator(config.generator, avatar, config.render_threads)
        return _shared[key]


def release_generator(avatar: PreparedAvatar) -> None:
    """Forget the shared generators of this avatar (a server that drops a portrait it prepared per stream):
    sessions still rendering with one keep it; the next session of that avatar builds a new one."""
    identity = avatar_identity(avatar)
    with _shared_lock:
        for key in [k for k in _shared if k[1] == identity]:
            del _shared[key]


__all__ = ["AvatarError", "Generator", "GeneratorCapabilities", "PreparedAvatar", "WarpGenerator", "avatar_identity",
           "generator_for", "make_generator", "prepare_avatar", "register_generator",
           "release_generator"]
