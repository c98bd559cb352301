"""The live streams a server holds, with its two caps: all sessions, and those not connected yet."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from streaming.reclaim import Reclaimer
from streaming.stream import AvatarStream

PENDING_STATES = ("new", "connecting")  # answered (or being answered), peer not connected yet


class SessionRegistry:
    """The live streams being served, by session id. A session being built holds its place (reserve), so
    that the caps are exact however many offers arrive at once."""

    def __init__(self, max_sessions: int, max_pending: int | None = None, reclaimer: Reclaimer | None = None) -> None:
        self.max_sessions = max_sessions
        self.reclaimer = reclaimer  # gives a closed session's memory back (streaming/reclaim.py)
        self.max_pending = max_sessions if max_pending is None else max_pending
        self.active: dict[str, AvatarStream] = {}
        self.ended = 0
        self.building = 0

    def pending(self) -> int:
        return self.building + sum(s.state in PENDING_STATES for s in self.active.values())

    def full(self) -> bool:
        return len(self.active) + self.building >= self.max_sessions

    def refusal(self) -> str | None:
        """Why a new session cannot be admitted now, or None."""
        if self.full():
            return f"server is at its limit of {self.max_sessions} sessions; try again later"
        if self.pending() >= self.max_pending:
            return (f"{self.max_pending} sessions are still connecting (the limit); try again in a few seconds")
        return None

    @contextmanager
    def reserve(self) -> Iterator[None]:
        """A place held while a session is built; add() the stream right after, with no await between."""
        self.building += 1
        try:
            yield
        finally:
            self.building -= 1

    def add(self, stream: AvatarStream) -> None:
        self.active[stream.id] = stream
        stream.on_closed(self.remove)
        if self.reclaimer is not None:
            reclaimer = self.reclaimer

            async def reclaim() -> None:  # the stream's last closer: its peer connection is closed by now
                reclaimer.soon()

            stream.close_with(reclaim)

    def remove(self, stream: AvatarStream) -> None:
        if self.active.pop(stream.id, None) is not None:
            self.ended += 1
