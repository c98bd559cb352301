"""Backend registries (engine/backends.py): plugins registered in code or by entry point reach config
validation, the CLI help and a session; one shareable generator per avatar; unknown names list the known."""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.backends import (
    DIRECTORS,
    GENERATOR_GROUP,
    GENERATORS,
    DirectorCapabilities,
    GeneratorCapabilities,
    Registry,
    director_names,
    generator_names,
    register_director,
    register_generator,
)
from engine.config import EngineConfig
from engine.director import DirectorContext, RuleDirector, director_for, make_director
from engine.generator import PreparedAvatar, generator_for, make_generator, prepare_avatar
from engine.session import AvatarSession
from engine.types import N_CONTROLS, Control, MotionWindow
from tests.plugin_generator import COLOUR, SolidGenerator


@cache
def avatar() -> PreparedAvatar:
    return prepare_avatar()


def test_a_plugin_generator_is_validated_listed_and_runs_a_live_session(capsys: pytest.CaptureFixture[str]) -> None:
    register_generator("solid", SolidGenerator)  # its capabilities come from the class
    config = EngineConfig(generator="solid")  # validation reads the registry
    assert "solid" in generator_names() and isinstance(generator_for(config, avatar()), SolidGenerator)
    from server import build_parser

    with pytest.raises(SystemExit):
        build_parser().parse_args(["serve", "--help"])
    assert "solid (flat colour frames (a test plugin))" in " ".join(capsys.readouterr().out.split())

    async def live() -> list[Any]:
        session = AvatarSession(avatar(), config, live=True, session_id="solid")
        await session.start()
        session.push_audio(np.zeros(24_000, np.float32), 48_000)
        windows = []
        async with asyncio.timeout(20):
            async for window in session.windows():
                windows.append(window)
                if len(windows) == 24:
                    break
        await session.aclose()
        return windows

    windows = asyncio.run(live())
    assert [w.start_frame for w in windows] == list(range(24))
    assert all((w.frames_rgb == COLOUR).all() for w in windows)


def test_unknown_names_list_the_registered_ones() -> None:
    with pytest.raises(ValueError, match="unknown generator 'wrap': choose one of warp, torch, compile, onnx, tens"):
        EngineConfig(generator="wrap")
    with pytest.raises(ValueError, match="unknown generator 'wrap': choose one of warp, torch"):
        make_generator("wrap", avatar())
    with pytest.raises(ValueError, match="unknown director 'llm': choose one of rules, vllm"):
        EngineConfig(director="llm")
    with pytest.raises(ValueError, match="unknown director 'llm': choose one of rules, vllm"):
        make_director("llm")


def test_sessions_share_one_generator_per_avatar_and_benchmarks_get_their_own() -> None:
    live, offline = EngineConfig(window_frames=1), EngineConfig(window_frames=2, seed=7)
    shared = generator_for(live, avatar())
    assert generator_for(offline, avatar()) is shared
    assert generator_for(offline, prepare_avatar()) is shared, "the same portrait prepared again is the same avatar"
    assert generator_for(EngineConfig(render_threads=2), avatar()) is not shared  # torch threads differ
    assert generator_for(live, prepare_avatar(max_side_px=384)) is not shared
    assert make_generator("warp", avatar()) is not shared

    class Private(SolidGenerator):
        capabilities = GeneratorCapabilities(description="keeps per-session state")  # shareable=False

    register_generator("private", Private)
    config = EngineConfig(generator="private")
    assert generator_for(config, avatar()) is not generator_for(config, avatar())


@pytest.mark.parametrize("name", ["warp", "torch"])
def test_a_shared_generator_renders_the_same_from_two_threads_at_once(name: str) -> None:
    generator = make_generator(name, avatar())
    rng = np.random.default_rng(0)
    windows = []
    for i in range(6):
        c = np.zeros((4, N_CONTROLS), np.float32)
        c[:, Control.JAW_OPEN], c[:, Control.HEAD_YAW] = rng.uniform(0, 1, 4), rng.uniform(-4, 4, 4)
        c[:, Control.BLINK_LEFT] = c[:, Control.BLINK_RIGHT] = rng.uniform(0, 1, 4)
        windows.append(MotionWindow(4 * i, c, np.zeros(4000, np.float32)))
    start = generator.first_frame()

    def render_all() -> list[np.ndarray]:
        return [generator.render(w, start)[0].frames_rgb for w in windows]

    alone = render_all()
    with ThreadPoolExecutor(2) as pool:  # two sessions' render threads
        together = [pool.submit(render_all) for _ in range(4)]
        for future in together:
            assert all(np.array_equal(a, b) for a, b in zip(alone, future.result(), strict=True))


def test_an_entry_point_is_listed_at_once_and_imported_when_chosen() -> None:
    GENERATORS.add_entry_point(EntryPoint("solid_ep", "tests.plugin_generator:SolidGenerator", GENERATOR_GROUP))
    assert "solid_ep" in generator_names()
    assert "solid_ep (from tests.plugin_generator:SolidGenerator)" in GENERATORS.describe()  # not imported yet
    EngineConfig(generator="solid_ep")
    assert "solid_ep (flat colour frames (a test plugin))" in GENERATORS.describe()
    assert isinstance(make_generator("solid_ep", avatar()), SolidGenerator)


def test_entry_points_installed_in_the_environment_are_found(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dist = tmp_path / "avatar_solid-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: avatar-solid\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text(f"[{GENERATOR_GROUP}]\nsolid_pkg = tests.plugin_generator:SolidGenerator\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    registry = Registry("generator", GENERATOR_GROUP, GeneratorCapabilities)  # lists entry points on first use
    assert registry.names() == ["solid_pkg"]
    assert registry.get("solid_pkg").factory is SolidGenerator


def test_a_broken_entry_point_is_named() -> None:
    registry = Registry("generator", GENERATOR_GROUP, GeneratorCapabilities)
    registry.add_entry_point(EntryPoint("missing", "tests.no_such_plugin:Generator", GENERATOR_GROUP))
    registry.add_entry_point(EntryPoint("bare", "tests.plugin_generator:COLOUR", GENERATOR_GROUP))
    with pytest.raises(ValueError, match=r"generator 'missing': cannot import entry point missing = "
                                         r"'tests.no_such_plugin:Generator' \(group avatar_engine.generators\): "
                                         r"ModuleNotFoundError"):
        registry.get("missing")
    with pytest.raises(ValueError, match=r"generator 'bare': entry point bare = 'tests.plugin_generator:COLOUR' .*"
                                         r"has no usable `capabilities`"):
        registry.get("bare")
    with pytest.raises(ValueError, match="unknown generator 'solid': choose one of missing, bare"):
        registry.get("solid")


def test_capabilities_are_checked_by_config_validation() -> None:
    class Clip4(SolidGenerator):
        capabilities = GeneratorCapabilities(description="fixed clips", max_window_frames=4)

    register_generator("clip4", Clip4)
    with pytest.raises(ValueError, match="the clip4 generator renders at most 4 frames a window"):
        EngineConfig(generator="clip4")  # offline windows are 8 frames by default
    EngineConfig(generator="clip4", offline_window_frames=4)
    assert GENERATORS.get("tensorrt").capabilities.needs_gpu and not GENERATORS.get("warp").capabilities.needs_gpu
    assert DIRECTORS.get("rules").capabilities.instant and DIRECTORS.get("vllm").capabilities.needs_server


def test_a_plugin_director_that_needs_a_server_gets_the_server_settings() -> None:
    built: list[dict[str, Any]] = []

    def served(seed: int = 0, **options: Any) -> RuleDirector:
        built.append(options)
        return RuleDirector(seed=seed)

    register_director("served", served, DirectorCapabilities(description="a test plugin", needs_server=True))
    assert "served" in director_names()
    with pytest.raises(ValueError, match="the served director needs director_url"):
        EngineConfig(director="served")
    config = EngineConfig(director="served", director_url="http://127.0.0.1:9/v1", director_model="m",
                          director_image=False)
    director = director_for(config, avatar().rgb)
    assert director.plan_now(DirectorContext(0, 96)).beats  # type: ignore[attr-defined]
    assert built[-1]["url"] == "http://127.0.0.1:9/v1" and built[-1]["model"] == "m"

    register_director("rules_too", lambda seed=0, **_: RuleDirector(seed), DirectorCapabilities(instant=True))
    director_for(EngineConfig(director="rules_too"), avatar().rgb)
    assert built[-1]["url"] == "http://127.0.0.1:9/v1", "a director without a server is given no server options"


def test_a_factory_that_builds_no_backend_is_named() -> None:
    register_generator("nothing", lambda avatar, threads: None, GeneratorCapabilities())
    with pytest.raises(TypeError, match="generator 'nothing' built None, which lacks the Generator protocol"):
        make_generator("nothing", avatar())
    register_director("nobody", lambda seed=0, **_: object(), DirectorCapabilities())
    with pytest.raises(TypeError, match=r"director 'nobody' built <object .*>, which lacks the Director protocol"):
        make_director("nobody")
