"""Directors keep a rolling storyline a few seconds ahead. `make_director` picks one by name."""

from __future__ import annotations

from typing import Any

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


__all__ = ["Director", "DirectorContext", "RuleDirector", "make_director"]
