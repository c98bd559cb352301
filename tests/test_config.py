"""Configuration: defaults < TOML file < AVATAR_ENGINE_* environment < command line, checked whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from streaming.config import load_config


def test_layers_apply_in_order(tmp_path: Path) -> None:
    toml = tmp_path / "avatar.toml"
    toml.write_text('port = 9000\nmax_sessions = 2\n[engine]\nwindow_frames = 6\npipeline_delay_s = 0.3\n')
    env = {"AVATAR_ENGINE_PORT": "9100", "AVATAR_ENGINE_LOOKAHEAD_FRAMES": "2",
           "AVATAR_ENGINE_DIRECTOR_API_KEY": "secret", "PATH": "/bin"}
    cfg = load_config(toml, {"port": 9200, "host": None}, environ=env)
    assert cfg.port == 9200  # command line beats environment beats file
    assert cfg.max_sessions == 2 and cfg.host == "127.0.0.1"
    assert (cfg.engine.window_frames, cfg.engine.lookahead_frames, cfg.engine.pipeline_delay_s) == (6, 2, 0.3)
    assert not hasattr(cfg.engine, "director_api_key")


def test_bad_settings_are_named(tmp_path: Path) -> None:
    toml = tmp_path / "bad.toml"
    toml.write_text("prot = 9000\n")
    with pytest.raises(ValueError, match="unknown setting 'prot'"):
        load_config(toml, environ={})
    with pytest.raises(ValueError, match="lookahead_frames must be 0, 1 or 2"):
        load_config(None, {"lookahead_frames": 3}, environ={})
    with pytest.raises(ValueError, match="pipeline_delay_s"):  # fine offline, not for a live session
        load_config(None, {"pipeline_delay_s": 0.03}, environ={}).engine.validate_live()
    with pytest.raises(ValueError, match="audio_lead_s"):
        load_config(None, {"audio_lead_s": 0.5}, environ={})
    with pytest.raises(ValueError, match="director_url"):
        load_config(None, {"director": "vllm"}, environ={})


def test_ice_addresses_follow_the_bound_host() -> None:
    assert load_config(None, {}, environ={}).ice_addresses() == ["127.0.0.1"]
    assert load_config(None, {"host": "0.0.0.0"}, environ={}).ice_addresses() is None
    assert load_config(None, {"host": "0.0.0.0", "ice_host": "203.0.113.7"}, environ={}).ice_addresses() == [
        "203.0.113.7"]


def test_command_line_flags_reach_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from server import build_parser, config_from_args

    monkeypatch.delenv("AVATAR_ENGINE_GENERATOR", raising=False)
    monkeypatch.delenv("AVATAR_ENGINE_MAX_SIDE_PX", raising=False)
    args = build_parser().parse_args(["serve", "--generator", "onnx", "--max-side", "1920", "--window-frames", "2"])
    cfg = config_from_args(args)
    assert (cfg.engine.generator, cfg.engine.max_side_px, cfg.engine.window_frames) == ("onnx", 1920, 2)
    with pytest.raises(ValueError, match="unknown generator 'cuda': choose one of warp, torch, compile, onnx"):
        config_from_args(build_parser().parse_args(["serve", "--generator", "cuda"]))
