"""Engine configuration: one dataclass, each field commented (built by streaming.config)."""

from __future__ import annotations

from dataclasses import dataclass

from engine.backends import DIRECTORS, GENERATORS
from engine.types import FPS


@dataclass
class EngineConfig:
    avatar_path: str | None = None  # None: the embedded default portrait (skimage's astronaut)
    max_side_px: int = 720  # longer side of the output video; the portrait is scaled down to it
    avatar_cache_dir: str = ""  # prepared avatars are cached here; "" = ~/.cache/avatar-engine/avatars, "off" = none
    keep_expression: bool = False  # animate from the photo's own expression (lips apart stay apart at rest)
    # Live latency is bounded below by (window_frames + lookahead_frames) / FPS + one 20 ms audio packet +
    # render_reserve_s: the defaults leave ~18 ms for late packets in an 80 ms pipeline delay
    # (benchmarks/latency.py). Offline rendering is faster with longer windows (8: ~20% more fps).
    window_frames: int = 1  # frames per sub-clip window (1 = 21 ms); live: the shortest, see max_live_window_frames
    offline_window_frames: int = 8  # ... in offline sessions (live=False, e.g. `render`): no latency to keep
    # A live session doubles its window (once its pipeline delay covers the longer one) while renders cannot keep up
    # with shorter ones, up to this (engine/window_size.py); window_frames or more keeps the length fixed.
    max_live_window_frames: int = 8
    # A frame of lookahead lets the jaw start opening a frame before a loud onset, as lips do, but costs
    # 21 ms of delay: off in live sessions, where glass-to-glass latency matters more.
    lookahead_frames: int = 0  # audio frames the mouth may anticipate (0..2); each adds 21 ms of delay
    offline_lookahead_frames: int = 1  # ... in offline sessions, where it costs nothing (lip sync at lag 0)
    pipeline_delay_s: float = 0.08  # live: audio sample spoken -> its frame is due for output
    max_pipeline_delay_s: float = 0.25  # live: a session that runs late raises its delay a frame at a time
    # up to this, so a busy machine costs latency, not repeated frames; <= pipeline_delay_s keeps it fixed
    delay_relax_s: float = 30.0  # live: ... and takes a frame back after this long on time with a frame to spare
    render_reserve_s: float = 0.02  # live: a window starts rendering at least this long before it is due
    max_live_backlog_s: float = 0.3  # live mic: audio beyond this backlog is dropped (counted)
    max_pushed_backlog_s: float = 600.0  # pushed/offline audio is buffered, never dropped, up to this
    director: str = "rules"  # rules (embedded), vllm, or a registered plugin (engine.backends)
    # Directors that need a server (vllm; capabilities.needs_server) take these director_* settings.
    director_url: str = ""  # vllm director: the OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1
    director_model: str = ""  # vllm director: the model name the server serves
    director_image: bool = True  # vllm director: send the portrait (text-only models refuse it once, then never)
    director_audio: bool = False  # vllm director: send recent speech as input_audio (omni models)
    director_transcribe_model: str = ""  # vllm director: a Whisper model on the same server for transcripts
    director_timeout_s: float = 10.0  # vllm director: the HTTP client's own limit per request
    director_max_tokens: int = 1024  # vllm director: reply budget
    storyline_path: str | None = None  # a scripted show (JSON beats in seconds); the rule director fills the rest
    persona: str = ""  # the host's persona and standing instructions, read by the director
    generator: str = "warp"  # warp (CPU fast path), torch, compile, onnx, tensorrt, or a plugin (engine.backends)
    render_threads: int = 1  # torch intra-op threads per render call
    render_pool_size: int = 0  # render threads shared by all sessions of a process; 0: one per core, at least 4
    # Generators that allow it (warp) render in processes of their own, at most render_pool_size of them, started
    # as sessions need them: a render never waits on the server's GIL (engine/render_process.py). False: threads
    # (as the one-shot `render` command does: it has no live loop, and a process takes ~3 s to start).
    render_processes: bool = True
    seed: int = 0  # blinks and idle motion are random but reproducible
    replan_interval_s: float = 1.0  # director re-plans this often
    plan_horizon_s: float = 4.0  # ... for this far ahead
    commit_s: float = 0.5  # a re-plan leaves this much of the current plan as it is (host commands: none)

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        """Raise ValueError naming the first inconsistent setting."""
        if self.window_frames < 1 or self.offline_window_frames < 1:
            raise ValueError(f"window_frames and offline_window_frames must be >= 1, got {self.window_frames} "
                             f"and {self.offline_window_frames}")
        if self.max_live_window_frames < 1:
            raise ValueError(f"max_live_window_frames must be >= 1, got {self.max_live_window_frames}")
        for name in ("lookahead_frames", "offline_lookahead_frames"):
            if not 0 <= getattr(self, name) <= 2:
                raise ValueError(f"{name} must be 0, 1 or 2, got {getattr(self, name)}")
        if self.render_pool_size < 0:
            raise ValueError(f"render_pool_size must be >= 0 (0: one per CPU core), got {self.render_pool_size}")
        longest = GENERATORS.get(self.generator).capabilities.max_window_frames  # ValueError naming them all
        if longest is not None and max(self.window_frames, self.offline_window_frames) > longest:
            raise ValueError(f"the {self.generator} generator renders at most {longest} frames a window: "
                             f"window_frames and offline_window_frames must be <= {longest}")
        if DIRECTORS.get(self.director).capabilities.needs_server and not (self.director_url and self.director_model):
            raise ValueError(f"the {self.director} director needs director_url (--director-url, e.g. "
                             "http://127.0.0.1:8000/v1) and director_model (--director-model)")

    def validate_live(self) -> None:
        """Raise ValueError if a live session cannot keep its clock with these settings (offline
        rendering has no clock, so any window length goes)."""
        budget = (self.window_frames + self.lookahead_frames) / FPS + self.render_reserve_s
        if self.pipeline_delay_s < budget:
            raise ValueError(f"pipeline_delay_s {self.pipeline_delay_s} is below what a live window needs: "
                             f"(window_frames + lookahead_frames) / {FPS} + render_reserve_s = {budget:.3f} s")
