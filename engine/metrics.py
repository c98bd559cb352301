"""Per-session engine counters. Every degradation (late audio, fallbacks, late windows) is counted."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from engine.types import RenderedWindow


@dataclass
class SessionMetrics:
    audio_samples_in: int = 0  # after resampling to 48 kHz mono
    audio_samples_dropped: int = 0  # live backlog overflow
    audio_samples_filled: int = 0  # missing when a frame was due; silence stood in
    audio_frames_late: int = 0  # live: the input was flowing but this frame's audio missed its deadline
    audio_samples_lost: int = 0  # gaps in the input's timestamps (lost packets), filled with silence
    frames_rendered: int = 0
    windows_rendered: int = 0
    windows_late: int = 0  # finished after their first frame was due (live only)
    frames_skipped: int = 0  # live: never rendered, the generator was too far behind the clock
    generator_failures: int = 0  # windows whose render raised (warm-up included)
    frames_fallback: int = 0  # ... and the frames shown instead: the condition's picture held
    feature_failures: int = 0  # frames whose audio features raised: silence's features stood in
    blueprint_failures: int = 0  # windows whose planning raised: the last pose was held
    render_ms_total: float = 0.0
    render_ms_max: float = 0.0
    director_plans: int = 0
    director_failures: int = 0  # errors and timeouts
    director_fallbacks: int = 0  # windows planned by the rule fallback because no plan covered them
    audio_to_window_ms_max: float = 0.0  # window's last audio ready -> window rendered
    audio_path_delay_ms_max: float = 0.0  # a frame's last sample arrives -> its features and lookahead are ready
    audio_path_delay_ms_total: float = 0.0
    audio_path_frames: int = 0
    pipeline_delay_raises: int = 0  # live: late windows or late audio made the session add a frame of delay
    pipeline_delay_lowers: int = 0  # live: ... and a long run with slack to spare took one back
    window_slack_ms_min: float = 0.0  # live: a window rendered -> its first frame due (the margin left)
    window_slack_ms_total: float = 0.0
    window_frames: int = 0  # the length of the windows being rendered now (live: it grows on a slow machine)
    window_resizes: int = 0  # live: times the window length changed (engine/window_size.py)

    def note_audio_written(self, n_samples: int, dropped_samples: int) -> None:
        self.audio_samples_in += n_samples
        self.audio_samples_dropped += dropped_samples

    def note_rendered(self, window: RenderedWindow, audio_to_window_s: float, slack_s: float | None) -> None:
        """A window rendered; slack_s (live only): how long before its first frame was due (< 0: late)."""
        self.windows_rendered += 1
        self.frames_rendered += window.n_frames
        self.render_ms_total += window.render_ms
        self.render_ms_max = max(self.render_ms_max, window.render_ms)
        self.audio_to_window_ms_max = max(self.audio_to_window_ms_max, audio_to_window_s * 1000.0)
        if slack_s is not None:
            self.note_window_slack(slack_s)
            if slack_s < 0:
                self.windows_late += 1

    def note_audio_path_delay(self, delay_s: float) -> None:
        ms = max(0.0, delay_s * 1000.0)
        self.audio_path_delay_ms_max = max(self.audio_path_delay_ms_max, ms)
        self.audio_path_delay_ms_total += ms
        self.audio_path_frames += 1

    def note_window_slack(self, slack_s: float) -> None:
        ms = slack_s * 1000.0
        self.window_slack_ms_min = ms if self.windows_rendered <= 1 else min(self.window_slack_ms_min, ms)
        self.window_slack_ms_total += ms

    @property
    def render_ms_per_frame(self) -> float:
        return self.render_ms_total / self.frames_rendered if self.frames_rendered else 0.0

    def as_dict(self) -> dict[str, float]:
        d = asdict(self)
        d["render_ms_per_frame"] = round(self.render_ms_per_frame, 3)
        d["audio_path_delay_ms_mean"] = round(self.audio_path_delay_ms_total / max(1, self.audio_path_frames), 3)
        d["window_slack_ms_mean"] = round(self.window_slack_ms_total / max(1, self.windows_rendered), 3)
        return d
