"""What a stream discloses, set once where it is made: the visible label in its pacer (streaming/disclosure.py), and
for its files and pushes the hidden AIGC label (streaming/aigc.py) and C2PA signing (streaming/c2pa_sign.py).

    disclose(stream, config)            # /offer sessions, POST /streams, `live`, `render`
    provenance_of(stream)               # outputs: the metadata and signer for a recording or an RTMP push
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from streaming.aigc import KEY, aigc_fields, aigc_json
from streaming.c2pa_sign import C2paSigning, signer_for
from streaming.disclosure import label_for, spec_from_config
from streaming.stream import AvatarStream


@dataclass(frozen=True)
class Provenance:
    producer: str = "avatar-engine"
    propagator: str = ""
    signing: C2paSigning | None = None

    @classmethod
    def from_config(cls, config: Any) -> Provenance:
        return cls(getattr(config, "label_producer", "") or "avatar-engine", getattr(config, "label_propagator", ""),
                   C2paSigning.from_config(config))

    def aigc(self, produce_id: str) -> dict[str, str]:
        return aigc_fields(self.producer, produce_id, self.propagator, produce_id)

    def metadata(self, produce_id: str) -> dict[str, str]:
        """Container metadata with the hidden label: {"AIGC": json}."""
        return {KEY: aigc_json(self.aigc(produce_id))}

    def on_finished(self, produce_id: str) -> Any:
        """An Mp4Sink on_finished that signs the file (None without a certificate)."""
        return signer_for(self.signing, self.aigc(produce_id))

    def file_id(self, path: Path) -> str:
        return path.stem


_provenance: weakref.WeakKeyDictionary[AvatarStream, Provenance] = weakref.WeakKeyDictionary()


def disclose(stream: AvatarStream, config: Any, preset: str | None = None) -> None:
    """The stream's label (config's label settings; preset: a per-stream override), before its first frame; and
    what its recordings and pushes carry. Label off: a WARNING naming the stream, counted."""
    stream.pacer.set_label(label_for(spec_from_config(config, preset), stream.id))
    provenance = _provenance[stream] = Provenance.from_config(config)
    stream.pacer.sinks.aigc = aigc_json(provenance.aigc(stream.id))  # in every H.264 keyframe: streaming/sei.py


def provenance_of(stream: AvatarStream) -> Provenance:
    """What disclose() set; a stream made without it still gets the hidden label (default producer)."""
    return _provenance.get(stream) or Provenance()
