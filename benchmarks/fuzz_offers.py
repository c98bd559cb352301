"""Fuzzing /offer at scale: 100,000 mutated offers (harness/fuzz.py; seeded with real offers and the SDP corpus
of mediasoup's and Janus' fuzzers), 0 crashes.

    python -m benchmarks.fuzz_offers [--examples 100000] [--random] [--out fuzz_offers]   # in process
    python -m benchmarks.fuzz_offers --http --examples 20000                               # a real server, over HTTP

In process, each body goes through what POST /offer runs around the session (harness.fuzz.admit):
streaming/offers.py parse_offer, and for an admitted offer aiortc's setRemoteDescription / createAnswer /
setLocalDescription as PeerSession.answer calls them: it is answered, or refused (400) with its reason;
anything else is a crash (a 500 in the server). Mutations come from hypothesis, or with --random from a
seeded random.Random (the same mutator, ~50x faster to make). Over HTTP a fresh `python server.py` (its
per-client rate limits raised: this is one client) answers each body: a 5xx, or a non-200 without an
"error" reason, is a failure; admitted sessions are closed at once. Prints a table and writes OUT.json with
the outcomes, the rate and up to 20 failing bodies.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import os
import re
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from rich.console import Console
from rich.table import Table

from harness.fuzz import (
    CHROME_OFFER,
    FIREFOX_OFFER,
    admit,
    aiortc_offer,
    corpus_offers,
    offer_bodies,
    random_offer_bodies,
)
from harness.server import start_server, stop_server


def in_process() -> Any:
    loop = asyncio.new_event_loop()

    def check(body: bytes) -> str:
        status, reason = loop.run_until_complete(admit(body))
        if status == 400:
            return "refused: " + re.sub(r"\d+", "N", reason.split(":")[0][:50])
        return "answered" if status == 200 else f"CRASH {reason[:60]}"

    return check


def over_http(port: int) -> Any:
    def post(path: str, body: bytes) -> tuple[int, dict]:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
            response = conn.getresponse()
            raw = response.read()
            try:
                return response.status, json.loads(raw or b"{}")
            except ValueError:
                return response.status, {"raw": raw[:200].decode(errors="replace")}
        finally:
            conn.close()

    def check(body: bytes) -> str:
        status, answer = post("/offer", body)
        if status == 200:
            post(f"/sessions/{answer['session_id']}/close", b"{}")
            return "200"
        if status >= 500 or not (isinstance(answer.get("error"), str) and answer["error"]):
            return f"CRASH {status}"
        return str(status)

    return check


def run(examples: int, check: Any, seeds: list[str], corpus: list[str], use_random: bool) -> \
        tuple[Counter[str], list[str], float]:
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    def one(body: bytes) -> None:
        outcome = check(body)
        outcomes[outcome] += 1
        if outcome.startswith("CRASH") and len(failures) < 20:
            failures.append(body[:2000].decode(errors="replace"))

    t0 = time.monotonic()
    if use_random:
        for start in range(0, examples, 1000):  # a thousand at a time: the bodies can be megabytes
            for body in random_offer_bodies(seeds, corpus, min(1000, examples - start), seed=start):
                one(body)
    else:
        settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))(
            given(offer_bodies(seeds, corpus))(one))()
    return outcomes, failures, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--http", action="store_true", help="post to a real server instead of the in-process check")
    ap.add_argument("--random", action="store_true", help="mutations from random.Random instead of hypothesis")
    ap.add_argument("--out", default="fuzz_offers", help="writes OUT.json")
    args = ap.parse_args()
    seeds = [asyncio.run(aiortc_offer()), CHROME_OFFER, FIREFOX_OFFER]
    server = None
    if args.http:
        for name in ("OFFER_BURST", "OFFER_RATE_PER_S"):
            os.environ[f"AVATAR_ENGINE_{name}"] = "1000000"
        server = start_server(Path(tempfile.mkdtemp(prefix="fuzz-offers-")))
        check = over_http(int(server.url.rsplit(":", 1)[1]))
    else:
        check = in_process()
    try:
        outcomes, failures, wall_s = run(args.examples, check, seeds, corpus_offers(), args.random)
    finally:
        if server is not None:
            stop_server(server)
    total = sum(outcomes.values())
    crashes = sum(n for k, n in outcomes.items() if k.startswith("CRASH"))
    path = "over HTTP" if args.http else "through the offer check and answer"
    table = Table(title=f"{total} mutated offers {path} in "
                        f"{wall_s:.1f} s ({total / wall_s:.0f}/s): {crashes} crashes")
    table.add_column("outcome")
    table.add_column("offers", justify="right")
    for outcome, n in outcomes.most_common(25):
        table.add_row(outcome, str(n))
    Console().print(table)
    result = {"examples": total, "wall_s": wall_s, "per_s": total / wall_s, "http": args.http, "random": args.random,
              "crashes": crashes,
              "outcomes": dict(outcomes), "failing_bodies": failures}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
