"""Transports for engine sessions: WebRTC tracks and signaling, pacing, file egress, the web client."""
