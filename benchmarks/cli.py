"""Command-line pieces the burst benchmarks share (benchmarks.latency, benchmarks.browser_latency)."""

from __future__ import annotations

import argparse
import os


def burst_benchmark_args(description: str, default_out: str) -> argparse.Namespace:
    """--bursts, --env NAME=VALUE (exported, so the server this process starts inherits it), --out."""
    ap = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bursts", type=int, default=20)
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the server (engine settings)")
    ap.add_argument("--out", default=default_out, help="writes OUT.json and OUT.png")
    args = ap.parse_args()
    for item in args.env:
        name, _, value = item.partition("=")
        os.environ[name] = value
    return args
