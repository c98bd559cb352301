"""Directors keep a rolling storyline a few seconds ahead.

Directors are registered by name with what they can do (engine.backends: rules, vllm, and plugins);
`make_director` builds one by name, `director_for` a session's own from its configuration. A scripted
show (storyline_path) takes the place of the named director.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.backends import DIRECTORS, DirectorCapabilities, register_director
from engine.config import EngineConfig
from engine.director.base import Director, DirectorContext
from engine.director.rules import RuleDirector


def make_director(name: str, seed: int = 0, storyline_path: str | None = None, **options: Any) -> Director:
    """`options` go to directors that need a server (vllm): url, model, api_key, image_jpeg, send_image,
    send_audio, transcribe_model, timeout_s, max_tokens, temperature (engine.director.vllm.VllmDirector)."""
    if storyline_path:
        from engine.director.script import ScriptDirector, load_script

        return ScriptDirector(load_script(storyline_path), seed=seed)
    director = DIRECTORS.get(name).factory(seed=seed, **options)
    if not isinstance(director, Director):
        raise TypeError(f"director {name!r} built {director!r}, which lacks the Director protocol "
                        "(name, async plan: engine/director/base.py)")
    return director


def director_options(config: EngineConfig, portrait_rgb: np.ndarray) -> dict[str, object]:
    """Settings for a model-served director (those whose capabilities say needs_server; the rest take none)."""
    if not DIRECTORS.get(config.director).capabilities.needs_server:
        return {}
    from engine.director.vllm import jpeg_bytes

    return {"url": config.director_url, "model": config.director_model, "timeout_s": config.director_timeout_s,
            "max_tokens": config.director_max_tokens, "send_image": config.director_image,
            "image_jpeg": jpeg_bytes(portrait_rgb) if config.director_image else None,
            "send_audio": config.director_audio, "transcribe_model": config.director_transcribe_model}


def director_for(config: EngineConfig, portrait_rgb: np.ndarray) -> Director:
    """The director a session of this configuration plans with (portrait_rgb: for vision models)."""
    return make_director(config.director, seed=config.seed, storyline_path=config.storyline_path,
                         **director_options(config, portrait_rgb))


__all__ = ["Director", "DirectorCapabilities", "DirectorContext", "RuleDirector", "director_for", "make_director",
           "register_director"]
