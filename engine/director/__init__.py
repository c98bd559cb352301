"""Directors keep a rolling storyline a few seconds ahead. `make_director` picks one by name."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.config import EngineConfig
from engine.director.base import Director, DirectorContext
from engine.director.rules import RuleDirector


def make_director(name: str, seed: int = 0, storyline_path: str | None = None, **options: Any) -> Director:
    """`options` go to the vllm director: url, model, api_key, image_jpeg, send_image, send_audio,
    transcribe_model, timeout_s, max_tokens, temperature (see engine.director.vllm.VllmDirector)."""
    if storyline_path:
        from engine.director.script import ScriptDirector, load_script

        return ScriptDirector(load_script(storyline_path), seed=seed)
    if name == "rules":
        return RuleDirector(seed=seed)
    if name == "vllm":
        try:
            from engine.director.vllm import VllmDirector
        except ImportError as e:
            raise ValueError(f"the vllm director needs the openai client: pip install -e '.[director]' ({e})") from e
        options = dict(options)
        return VllmDirector(options.pop("url", ""), options.pop("model", ""), seed=seed, **options)
    raise ValueError(f"unknown director {name!r}: choose 'rules' or 'vllm'")


def director_options(config: EngineConfig, portrait_rgb: np.ndarray) -> dict[str, object]:
    """Settings for a model-served director (the rule director takes none)."""
    if config.director != "vllm":
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


__all__ = ["Director", "DirectorContext", "RuleDirector", "director_for", "make_director"]
