"""avatar-engine: serve the live avatar over WebRTC, or render audio to an MP4 offline.

    python server.py                      # same as: avatar-engine serve (http://127.0.0.1:8080)
    avatar-engine serve --avatar me.jpg --host 0.0.0.0 --ice-host 203.0.113.7
    avatar-engine render --audio talk.wav --out talk.mp4 [--avatar me.jpg] [--size 720x1280 [--fit fill]]
    avatar-engine prepare me.jpg          # check a portrait: face found, size
    avatar-engine live --audio show.wav --loop --rtmp rtmp://127.0.0.1/live/key --record recordings/
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import sys
import threading
import time

from engine.backends import DIRECTORS, GENERATORS
from engine.config import EngineConfig
from engine.generator import AvatarError, PreparedAvatar, generator_for, prepare_avatar
from engine.generator.avatar import DEFAULT_CACHE_DIR
from streaming.auth import check_exposure
from streaming.canvas import add_canvas_arguments
from streaming.config import ServerConfig, load_config
from streaming.keying import MODES

SWITCH_INTERVAL_S = 0.0005
log = logging.getLogger("avatar-engine")


def build_parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--config", help="TOML file with settings (flags and AVATAR_ENGINE_* env win)")
    common.add_argument("--avatar", dest="avatar_path", help="portrait photo (JPEG/PNG/WebP); default: embedded")
    common.add_argument("--window-frames", type=int,
                        help="frames per live sub-clip window (default 1; render uses offline_window_frames, 8)")
    common.add_argument("--generator", help=f"renderer: {GENERATORS.describe()}")
    common.add_argument("--max-side", dest="max_side_px", type=int,
                        help="longer side of the output video in px; the portrait is scaled to it (default 720)")
    common.add_argument("--keep-expression", action="store_const", const=True,
                        help="keep the photo's expression: lips apart in the photo are not closed for the rest pose")
    common.add_argument("--director", help=f"storyline planner: {DIRECTORS.describe()}")
    common.add_argument("--director-url", help="vllm director: base URL, e.g. http://127.0.0.1:8000/v1")
    common.add_argument("--director-model", help="vllm director: model name as the server serves it")
    common.add_argument("--director-no-image", dest="director_image", action="store_const", const=False,
                        help="vllm director: do not send the portrait")
    common.add_argument("--label", choices=("cn", "eu", "en", "off"),
                        help="the visible AI disclosure label on every picture: cn (AI生成, GB 45438), eu (an AI icon, "
                             "re-shown after pauses), en (AI-generated; default), off (logged per stream)")
    common.add_argument("--label-text", help="the label's text (cn: must hold AI and 生成 or 合成)")
    common.add_argument("--label-position", choices=("top-left", "top-right", "bottom-left", "bottom-right"),
                        help="the label's corner (default top-right)")
    common.add_argument("--label-height", type=float, metavar="FRACTION",
                        help="glyph height as a fraction of the frame's short side (default 0.05; cn: at least 0.05)")
    common.add_argument("--c2pa-cert", help="PEM certificate chain to sign recordings and render output with C2PA")
    common.add_argument("--c2pa-key", help="the PEM private key of --c2pa-cert")
    common.add_argument("-v", "--verbose", action="store_true")
    p = argparse.ArgumentParser(prog="avatar-engine", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command")
    serve = sub.add_parser("serve", parents=[common], help="run the HTTP + WebRTC server")
    serve.add_argument("--host", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default 8080)")
    serve.add_argument("--ice-host", help="address offered in ICE candidates (default: the bound host)")
    serve.add_argument("--max-sessions", type=int, help="concurrent sessions before 503 (default 4)")
    serve.add_argument("--token", help="operator secret, 32+ characters (visible in `ps`: prefer AVATAR_ENGINE_TOKEN); "
                                       "required unless bound to loopback")
    serve.add_argument("--insecure", action="store_const", const=True,
                       help="serve a non-loopback address without a token (anyone who reaches it may do anything)")
    serve.add_argument("--allow-origin", action="append", metavar="ORIGIN",
                       help="an origin (https://host[:port]) whose pages may call the API; repeat for more "
                            "(default: same origin only)")
    serve.add_argument("--background", metavar="MODE",
                       help=f"behind the person in streams that name none (POST /streams): {MODES} (default photo)")
    serve.add_argument("--max-pending-sessions", type=int,
                       help="sessions answered but not yet connected before 503 (default 2)")
    render = sub.add_parser("render", parents=[common], help="render an audio file to an MP4, offline")
    render.add_argument("--audio", required=True, help="speech audio (WAV, MP3, ... anything FFmpeg reads)")
    render.add_argument("--out", required=True, help="output .mp4 (H.264 + AAC, 48 fps)")
    render.add_argument("--instructions", dest="persona", help="persona and standing instructions for the director")
    render.add_argument("--storyline", dest="storyline_path", help="a scripted show: JSON beats in seconds")
    add_canvas_arguments(render)
    live = sub.add_parser("live", parents=[common], help="run one stream on the media clock (a 24/7 loop or a "
                                                         "scripted show) to RTMP and/or a recording")
    live.add_argument("--audio", required=True, help="the show's audio: a file (or URL of one) FFmpeg reads")
    live.add_argument("--loop", action="store_true", help="start the audio over at its end, until stopped")
    live.add_argument("--rtmp", action="append", metavar="URL", help="push to this RTMP/RTMPS ingest; repeatable")
    live.add_argument("--record", metavar="DIR", help="record the stream to an MP4 in this folder")
    live.add_argument("--size", metavar="WxH", help="output canvas, e.g. 720x1280 (default: the portrait's size)")
    live.add_argument("--fit", choices=("fit", "fill"), help="the portrait fitted into the canvas or filling it")
    live.add_argument("--background", metavar="MODE", help=f"what is behind the person: {MODES} (default photo)")
    live.add_argument("--duration", type=float, metavar="S",
                      help="stop after this many seconds (default: when the audio ends; never with --loop)")
    live.add_argument("--instructions", dest="persona", help="persona and standing instructions for the director")
    live.add_argument("--storyline", dest="storyline_path", help="a scripted show: JSON beats in seconds")
    prepare = sub.add_parser("prepare", parents=[common], help="check and prepare a portrait")
    prepare.add_argument("image", help="portrait photo")
    return p


def config_from_args(args: argparse.Namespace) -> ServerConfig:
    keys = ("avatar_path", "window_frames", "generator", "max_side_px", "keep_expression", "host", "port", "ice_host",
            "max_sessions", "token", "insecure", "allow_origin", "max_pending_sessions", "background",
            "persona", "storyline_path", "director", "director_url", "director_model", "director_image",
            "label", "label_text", "label_position", "label_height", "c2pa_cert", "c2pa_key")
    return load_config(args.config, {k: getattr(args, k, None) for k in keys})


def load_avatar(engine: EngineConfig, path: str | None = None) -> PreparedAvatar:
    """Prepare the portrait, showing each step (finding the face takes a second; the cache, none)."""
    from pathlib import Path

    from rich.console import Console

    cache = {"": DEFAULT_CACHE_DIR, "off": None}.get(engine.avatar_cache_dir, Path(engine.avatar_cache_dir))
    path = path if path is not None else engine.avatar_path
    with Console(stderr=True).status(f"preparing avatar {path or '(embedded default)'}") as status:
        return prepare_avatar(path, engine.max_side_px, cache_dir=cache, keep_expression=engine.keep_expression,
                              on_step=lambda step: status.update(f"preparing avatar: {step}"))


def serve(cfg: ServerConfig) -> None:
    from aiohttp import web

    from streaming.access_log import RedactedAccessLogger
    from streaming.admission import server_options
    from streaming.app import build_app
    from streaming.patches import expire_consent_sooner, use_fixed_bitrate, use_ice_addresses

    t0 = time.monotonic()
    avatar = load_avatar(cfg.engine)
    log.info("avatar %s ready (%dx%d) in %.1f s", avatar.name, *avatar.size, time.monotonic() - t0)
    # A render process (engine/render_process.py) takes seconds to start: now, not when the first viewer comes.
    threading.Thread(target=generator_for(cfg.engine, avatar).first_frame, name="render-warm", daemon=True).start()
    addresses = cfg.ice_addresses()
    if addresses is not None:
        use_ice_addresses(addresses)
    use_fixed_bitrate(cfg.video_bitrate_bps)
    expire_consent_sooner()
    log.info("serving on http://%s:%d (ICE candidates: %s)", cfg.host, cfg.port, addresses or "all interfaces")
    app = build_app(cfg, avatar)
    # The imports (torch, mediapipe, aiortc, ...) leave ~260k long-lived objects; every full
    # collection walked them all, a 60-75 ms stall of the event loop that cost frames now and then.
    # Frozen, they are skipped: sessions' own objects are still collected.
    gc.collect()
    gc.freeze()
    # The event loop gives up the GIL on every socket write and takes it back after the syscall; while render and
    # encode threads compute, that takes up to the switch interval (5 ms by default) each time, so a flood of
    # small requests (200 garbage offers/s) made the loop late and live windows were skipped. At 0.5 ms the
    # compute threads yield sooner: in 5 paired 10 s floods the stream skipped 0-36 frames instead of 0-85.
    sys.setswitchinterval(SWITCH_INTERVAL_S)
    web.run_app(app, host=cfg.host, port=cfg.port, print=None, shutdown_timeout=5.0,
                access_log_class=RedactedAccessLogger, **server_options(cfg))


def render(cfg: ServerConfig, audio: str, out: str, args: argparse.Namespace) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from streaming.disclosure import label_for, spec_from_config
    from streaming.egress_alpha import alpha_format
    from streaming.egress_file import render_to_file
    from streaming.outputs import canvas_for, spec_from_args
    from streaming.provenance import Provenance

    spec = spec_from_args(args)  # a bad background fails here, before the avatar is prepared
    if spec.mode.mode == "alpha":
        alpha_format(out)
    label, provenance = label_for(spec_from_config(cfg), "render"), Provenance.from_config(cfg)
    # A one-shot render has no live loop to keep clear of the renders, and a render process takes ~3 s to start:
    # 10 s of speech took 12.0-13.4 s with one, 8.7-9.4 s without (2026-12-03).
    cfg.engine.render_processes = False
    avatar = load_avatar(cfg.engine)
    canvas = canvas_for(spec, avatar)
    t0 = time.monotonic()
    with Progress(TextColumn("rendering"), BarColumn(), TextColumn("{task.completed}/{task.total} frames"),
                  TimeRemainingColumn(), transient=True) as progress:
        task = progress.add_task("render", total=None)
        result = asyncio.run(render_to_file(avatar, audio, out, cfg.engine,
                                            lambda done, total: progress.update(task, completed=done, total=total),
                                            canvas=canvas, label=label, provenance=provenance))
    wall = time.monotonic() - t0
    print(f"{out}: {result['frames']} frames ({result['duration_s']:.2f} s) in {wall:.1f} s "
          f"= {result['frames'] / max(wall, 1e-9):.0f} fps, render {result['render_ms_per_frame']:.1f} ms/frame")


def live(cfg: ServerConfig, args: argparse.Namespace) -> None:
    from streaming.live_cli import LiveShow, outputs_from_args

    # The flags and the audio first: a bad one is refused at once, not after the avatar is prepared.
    show = LiveShow(cfg, args.audio, loop=args.loop, outputs=outputs_from_args(args), duration_s=args.duration)
    summary = asyncio.run(show.run(load_avatar(cfg.engine)))
    print(f"live: {summary['frames_sent']} frames in {summary['seconds']:.1f} s "
          f"({summary['frames_repeated']} repeated); ended: {summary['reason']}")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("serve", "render", "prepare", "live", "-h", "--help"):
        argv = ["serve", *argv]  # `python server.py [flags]` serves, like `avatar-engine serve`
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("aioice", "aiortc", *(() if args.verbose else ("aiohttp.access",))):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = config_from_args(args)
        if args.command == "serve":
            cfg.engine.validate_live()
            for warning in check_exposure(cfg):  # before the avatar is loaded: a refusal comes at once
                log.warning("%s", warning)
            if cfg.token:
                log.info("access control on: the operator token or a scoped token is required")
            serve(cfg)
        elif args.command == "render":
            render(cfg, args.audio, args.out, args)
        elif args.command == "live":
            cfg.engine.validate_live()
            live(cfg, args)
        elif args.command == "prepare":
            avatar = load_avatar(cfg.engine, args.image)
            for note in avatar.notes:  # the status line that showed it is gone: say it where it stays
                print(f"{args.image}: note: {note}")
            if avatar.rest is not None:
                print(f"{args.image}: note: lips apart in the photo ({100 * avatar.rest.gap:.0f}% of the mouth's "
                      "width): closed for the rest pose (--keep-expression keeps the photo's expression)")
            print(f"{args.image}: ok, {avatar.size[0]}x{avatar.size[1]}, face found and prepared (cached)")
    except (AvatarError, ValueError, OSError) as e:
        print(f"avatar-engine: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
