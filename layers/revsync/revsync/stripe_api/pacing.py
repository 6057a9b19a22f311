"""Request pacing for list walks: stay under a share of the account's rate limit, and honour 429."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import stripe

from revsync.errors import Deferred

T = TypeVar("T")
MAX_RATE_LIMIT_RETRIES = 8
# A worker waits this long at most for its slot in the account's budget; a later slot defers the message.
MAX_BUDGET_WAIT_SECONDS = 2.0
# When Stripe answers 429 without Retry-After.
DEFAULT_RATE_LIMIT_DELAY_SECONDS = 2.0


class Pacer:
    """Request starts spaced to a rate: every walker that shares ``reserve`` shares one budget.

    ``reserve()`` returns the (wall-clock) time this request may start; the default reservation
    clock lives in memory (one process), ``revsync.store.budget`` keeps one per Stripe account in
    DynamoDB so that concurrent Lambda steps share it.
    """

    def __init__(
        self,
        rate: float = 0.0,
        reserve: Callable[[], float] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock, self._sleep = clock, sleep
        self._reserve = reserve or self._reserve_locally

    def _reserve_locally(self) -> float:
        with self._lock:
            start = max(self._clock(), self._next)
            self._next = start + self.interval
            return start

    def wait(self) -> None:
        delay = self._reserve() - self._clock()
        if delay > 0:
            self._sleep(delay)


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


def call_within_budget(
    reserve: Callable[[], float],
    request: Callable[[], T],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_BUDGET_WAIT_SECONDS,
) -> T:
    """One request in the account's shared budget, for a worker that must not sit and wait: a slot
    further away than ``max_wait`` or a 429 from Stripe raises ``Deferred`` (the message comes back
    later) instead of sleeping through the function's time limit or failing the message."""
    delay = reserve() - clock()
    if delay > max_wait:
        raise Deferred(delay, f"account request budget: next slot in {delay:.1f}s")
    if delay > 0:
        sleep(delay)
    try:
        return request()
    except stripe.RateLimitError as exc:
        wait = _retry_after(exc) or DEFAULT_RATE_LIMIT_DELAY_SECONDS
        raise Deferred(wait * random.uniform(1.0, 1.5), "Stripe rate limit (429)") from exc  # noqa: S311
