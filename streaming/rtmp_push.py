"""The RTMP connection, in a child process: FLV on stdin, pushed to an rtmp:// or rtmps:// URL (PyAV, stream copy).

    python -m streaming.rtmp_push URL [METADATA_JSON]  <  flv

FFmpeg's RTMP client holds the GIL through its handshake and blocking writes (measured: an ingest
that accepts the TCP connection and then stays silent froze every thread of the process), so the
engine's process never talks RTMP itself: streaming/egress_rtmp.py feeds this process through a
pipe, and kills it when it stops making progress. It reports on stdout, one line each:
`connected`, `sent <packets>` (about once a second), `error <message>`; it exits when stdin ends.
METADATA_JSON: {key: text} for the FLV's onMetaData (the AIGC hidden label, streaming/aigc.py).
"""

from __future__ import annotations

import json
import sys
import time

import av

# Enough to find both streams in the FLV the parent writes (its sequence headers come first).
PROBE_OPTIONS = {"analyzeduration": "500000", "probesize": "500000"}
PROGRESS_EVERY_S = 1.0


def say(line: str) -> None:
    sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()


def push(url: str, metadata: dict[str, str] | None = None) -> None:
    # The raw pipe: a buffered reader would wait for a full buffer before handing anything on.
    with av.open(sys.stdin.buffer.raw, mode="r", format="flv", options=PROBE_OPTIONS) as source:
        inputs = [s for s in (*source.streams.video[:1], *source.streams.audio[:1])]
        with av.open(url, mode="w", format="flv", options={"rw_timeout": "10000000"}) as sink:
            sink.metadata.update(metadata or {})
            outputs = {s.index: sink.add_stream_from_template(s, opaque=True) for s in inputs}
            sent, connected, last = 0, False, time.monotonic()
            for packet in source.demux(inputs):
                if packet.dts is None:  # the demuxer's end-of-stream marker
                    continue
                packet.stream = outputs[packet.stream.index]
                sink.mux(packet)  # the first one connects: handshake, publish, FLV header
                sent += 1
                if not connected:
                    connected = True
                    say("connected")
                if time.monotonic() - last >= PROGRESS_EVERY_S:
                    last = time.monotonic()
                    say(f"sent {sent}")
    say(f"sent {sent}")


def main() -> int:
    if len(sys.argv) not in (2, 3):
        say("error usage: python -m streaming.rtmp_push URL [METADATA_JSON]")
        return 2
    try:
        push(sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) == 3 else None)
    except Exception as e:
        say(f"error {type(e).__name__}: {e}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
