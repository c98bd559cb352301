"""Directors keep a rolling storyline a few seconds ahead. `make_director` picks one by name."""

from __future__ import annotations

from engine.director.base import Director, DirectorContext
from engine.director.rules import RuleDirector


def make_director(name: str, seed: int = 0, storyline_path: str | None = None) -> Director:
    if storyline_path:
        from engine.director.script import ScriptDirector, load_script

        return ScriptDirector(load_script(storyline_path), seed=seed)
    if name == "rules":
        return RuleDirector(seed=seed)
    raise ValueError(f"unknown director {name!r}: this build has 'rules' (the vLLM director is not built yet)")


__all__ = ["Director", "DirectorContext", "RuleDirector", "make_director"]
