"""Sub-clip generators: render windows of frames, each conditioned on the previous window's last frame."""

from __future__ import annotations

from engine.generator.avatar import AvatarError, PreparedAvatar, prepare_avatar
from engine.generator.base import Generator
from engine.generator.warp import WarpGenerator


def make_generator(name: str, avatar: PreparedAvatar, threads: int = 1) -> Generator:
    if name == "warp":
        return WarpGenerator(avatar, threads=threads)
    raise ValueError(f"unknown generator {name!r}: this build has 'warp'")


__all__ = ["AvatarError", "Generator", "PreparedAvatar", "WarpGenerator", "make_generator", "prepare_avatar"]
