"""Streaming audio front end: ingest (any rate/channels) -> ring buffer on the media clock -> features."""
