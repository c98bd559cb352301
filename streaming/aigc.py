"""The hidden AI label: the `AIGC` metadata of GB 45438-2025 (and TC260's practice guide for video files), a JSON
object under the key "AIGC" in an MP4's metadata (udta, written with movflags use_metadata_tags) and in an FLV's
onMetaData, for RTMP.

    {"Label": "1", "ContentProducer": "...", "ProduceID": "...", "ReservedCode1": "...",
     "ContentPropagator": "...", "PropagateID": "...", "ReservedCode2": "..."}

Label "1": the content is AI-generated (2: possibly, 3: suspected: for platforms that detect it). ContentProducer:
the producing service's name or filing number (label_producer); ProduceID: this file's or stream's unique id.
ReservedCode1: the producer's integrity code: here a digest of the other producer fields, so an edit to them shows.
ContentPropagator / PropagateID / ReservedCode2: the propagating service (label_propagator, when this engine's
operator also publishes it); empty otherwise, for a platform to fill in.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

KEY = "AIGC"


def aigc_fields(producer: str = "avatar-engine", produce_id: str | None = None, propagator: str = "",
                propagate_id: str = "") -> dict[str, str]:
    produce_id = produce_id or uuid.uuid4().hex
    code = hashlib.sha256(f"1|{producer}|{produce_id}".encode()).hexdigest()[:32]
    return {"Label": "1", "ContentProducer": producer, "ProduceID": produce_id, "ReservedCode1": code,
            "ContentPropagator": propagator, "PropagateID": propagate_id if propagator else "", "ReservedCode2": ""}


def aigc_json(fields: dict[str, str]) -> str:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":"))


def aigc_metadata(config: Any, produce_id: str | None = None) -> dict[str, str]:
    """{"AIGC": json} for a container's metadata, from a ServerConfig's label_producer / label_propagator."""
    fields = aigc_fields(getattr(config, "label_producer", "avatar-engine") or "avatar-engine", produce_id,
                         getattr(config, "label_propagator", "") or "", produce_id or "")
    return {KEY: aigc_json(fields)}


def read_aigc(metadata: dict[str, str]) -> dict[str, str] | None:
    """The AIGC fields of a container's metadata (PyAV's container.metadata), or None."""
    raw = metadata.get(KEY) or metadata.get(KEY.lower())
    return None if raw is None else json.loads(raw)
