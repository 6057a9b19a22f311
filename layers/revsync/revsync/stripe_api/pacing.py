"""Request pacing for list walks: stay under a share of the account's rate limit, and honour 429."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import stripe

T = TypeVar("T")
MAX_RATE_LIMIT_RETRIES = 8


class Pacer:
    """At most ``rate`` request starts per second from this walker (thread-safe)."""

    def __init__(
        self,
        rate: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep

    def wait(self) -> None:
        with self._lock:
            now = self._clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self._sleep(start - now)


def _retry_after(exc: stripe.RateLimitError) -> float | None:
    headers = exc.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def call_paced(pacer: Pacer, request: Callable[[], T], sleep: Callable[[float], None] = time.sleep) -> T:
    """Run ``request`` within the pace; on 429 wait as Stripe asks (else backoff with full jitter)."""
    for attempt in range(MAX_RATE_LIMIT_RETRIES):
        pacer.wait()
        try:
            return request()
        except stripe.RateLimitError as exc:
            backoff = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
            sleep(max(_retry_after(exc) or 0.0, backoff))
    pacer.wait()
    return request()  # the last try raises if Stripe still refuses
