"""Fuzzing /offer at scale: 100,000 mutated offers (hypothesis, harness/fuzz.py), 0 crashes.

    python -m benchmarks.fuzz_offers [--examples 100000] [--out fuzz_offers]          # the offer check in process
    python -m benchmarks.fuzz_offers --http --examples 20000                          # a real server, over HTTP

In process, each body goes through streaming/offers.py parse_offer, what the server runs before it builds a
session: it is admitted, or refused with an OfferError and its reason; anything else is a crash (a 500 in
the server). Over HTTP a fresh `python server.py` (its per-client rate limits raised: this is one client)
answers each body: a 5xx, or a non-200 without an "error" reason, is a failure; admitted sessions are closed
at once. Prints a table and writes OUT.json with the outcomes, the rate and up to 20 failing bodies.
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

from harness.fuzz import CHROME_OFFER, FIREFOX_OFFER, aiortc_offer, corpus_offers, offer_bodies
from harness.server import start_server, stop_server
from streaming.offers import OfferError, parse_offer


def in_process(body: bytes) -> str:
    try:
        parse_offer(body)
    except OfferError as e:
        return "refused: " + re.sub(r"\d+", "N", str(e).split(":")[0][:50])
    except Exception as e:
        return f"CRASH {type(e).__name__}"
    return "admitted"


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


def run(examples: int, check: Any, seeds: list[str], corpus: list[str]) -> tuple[Counter[str], list[str], float]:
    outcomes: Counter[str] = Counter()
    failures: list[str] = []

    @settings(max_examples=examples, deadline=None, database=None, suppress_health_check=list(HealthCheck))
    @given(offer_bodies(seeds, corpus))
    def fuzz(body: bytes) -> None:
        outcome = check(body)
        outcomes[outcome] += 1
        if outcome.startswith("CRASH") and len(failures) < 20:
            failures.append(body[:2000].decode(errors="replace"))

    t0 = time.monotonic()
    fuzz()
    return outcomes, failures, time.monotonic() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--http", action="store_true", help="post to a real server instead of the in-process check")
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
        check = in_process
    try:
        outcomes, failures, wall_s = run(args.examples, check, seeds, corpus_offers())
    finally:
        if server is not None:
            stop_server(server)
    total = sum(outcomes.values())
    crashes = sum(n for k, n in outcomes.items() if k.startswith("CRASH"))
    table = Table(title=f"{total} mutated offers {'over HTTP' if args.http else 'through the offer check'} in "
                        f"{wall_s:.1f} s ({total / wall_s:.0f}/s): {crashes} crashes")
    table.add_column("outcome")
    table.add_column("offers", justify="right")
    for outcome, n in outcomes.most_common(25):
        table.add_row(outcome, str(n))
    Console().print(table)
    result = {"examples": total, "wall_s": wall_s, "per_s": total / wall_s, "http": args.http, "crashes": crashes,
              "outcomes": dict(outcomes), "failing_bodies": failures}
    Path(f"{args.out}.json").write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
