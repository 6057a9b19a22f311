"""Stripe's API limiters, as its rate-limit page describes them (https://docs.stripe.com/rate-limits).

Per account: a global rate (100 requests/s live, 25 in test), a rate per endpoint (each named
operation, e.g. ``GET /v1/invoices`` or ``GET /v1/customers/{id}``: 25/s by default, counting
against the global rate too) and a concurrency limiter (requests in flight). A refused request is a
429 whose ``Stripe-Rate-Limited-Reason`` header says which limiter refused it: ``global-rate``,
``endpoint-rate``, ``global-concurrency`` (also ``endpoint-concurrency`` and ``resource-specific``,
which the sandbox does not raise). The clock is injected so that a simulation can run these same
limiters in modelled time (bench/backfill.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field


class _TokenBucket:
    """``rate`` tokens a second, holding at most one second's worth (a burst of ``rate``)."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self.tokens: dict[str, tuple[float, float]] = {}
        self._clock = clock

    def available(self, key: str, rate: float) -> bool:
        now = self._clock()
        tokens, last = self.tokens.get(key, (rate, now))
        tokens = min(rate, tokens + (now - last) * rate)
        self.tokens[key] = (tokens, now)
        return tokens >= 1

    def take(self, key: str) -> None:
        tokens, last = self.tokens[key]
        self.tokens[key] = (tokens - 1, last)


@dataclass
class Limits:
    """What a sandbox enforces; None turns a limiter off."""

    global_rate: float | None = None
    endpoint_rate: float | None = None
    endpoint_rates: Mapping[str, float] = field(default_factory=dict)  # raised (or lowered) per route
    concurrency: int | None = None


class Limiters:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._buckets = _TokenBucket(clock)
        self._in_flight: dict[str, int] = {}
        self._lock = threading.Lock()

    def admit(self, account: str, endpoint: str, limits: Limits) -> str | None:
        """Count one request in; returns the refusing limiter's reason, or None (then ``release``)."""
        with self._lock:
            if limits.concurrency is not None and self._in_flight.get(account, 0) >= limits.concurrency:
                return "global-concurrency"
            endpoint_rate = limits.endpoint_rates.get(endpoint, limits.endpoint_rate)
            endpoint_key = f"{account} {endpoint}"
            if endpoint_rate is not None and not self._buckets.available(endpoint_key, endpoint_rate):
                return "endpoint-rate"
            if limits.global_rate is not None and not self._buckets.available(account, limits.global_rate):
                return "global-rate"
            if endpoint_rate is not None:
                self._buckets.take(endpoint_key)
            if limits.global_rate is not None:
                self._buckets.take(account)
            self._in_flight[account] = self._in_flight.get(account, 0) + 1
            return None

    def release(self, account: str) -> None:
        with self._lock:
            self._in_flight[account] -= 1
