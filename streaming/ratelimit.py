"""Token buckets: one for a connection's messages, or one per client (keyed by address) for offers and
stream creation."""

from __future__ import annotations

import math
import time
from collections import OrderedDict


class TokenBucket:
    """`burst` tokens at most, refilled at `rate_per_s`; each event takes one. Starts full."""

    def __init__(self, rate_per_s: float, burst: int, now_s: float | None = None) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.tokens = float(burst)
        self.updated_s = time.monotonic() if now_s is None else now_s

    def _refill(self, now_s: float) -> None:
        self.tokens = min(float(self.burst), self.tokens + (now_s - self.updated_s) * self.rate_per_s)
        self.updated_s = now_s

    def take(self, now_s: float | None = None) -> float:
        """0.0 if a token was taken, else the seconds until one will be there (nothing taken)."""
        now_s = time.monotonic() if now_s is None else now_s
        self._refill(now_s)
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return 0.0
        return (1.0 - self.tokens) / self.rate_per_s


class RateLimiter:
    """A token bucket per key (a client's address). Memory is bounded: at most max_keys buckets, the least
    recently used forgotten first."""

    def __init__(self, rate_per_s: float, burst: int, max_keys: int = 10_000) -> None:
        if rate_per_s <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate_per_s > 0 and burst >= 1, got {rate_per_s}, {burst}")
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.max_keys = max_keys
        self.refused = 0
        self._buckets: OrderedDict[str, TokenBucket] = OrderedDict()

    def take(self, key: str, now_s: float | None = None) -> float:
        """0.0 if `key` may go ahead, else the seconds it should wait (for a Retry-After)."""
        now_s = time.monotonic() if now_s is None else now_s
        bucket = self._buckets.get(key)
        if bucket is None:
            self._make_room()
            bucket = self._buckets[key] = TokenBucket(self.rate_per_s, self.burst, now_s)
        else:
            self._buckets.move_to_end(key)
        wait_s = bucket.take(now_s)
        if wait_s:
            self.refused += 1
        return wait_s

    def _make_room(self) -> None:
        # Least recently used first: those have most likely refilled, so forgetting them changes nothing.
        while len(self._buckets) >= self.max_keys:
            self._buckets.popitem(last=False)

    def __len__(self) -> int:
        return len(self._buckets)


def retry_after(wait_s: float) -> str:
    """A Retry-After value: whole seconds, rounded up, at least 1."""
    return str(max(1, math.ceil(wait_s)))
