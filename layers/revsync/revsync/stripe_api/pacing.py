"""Request pacing within Stripe's limits (https://docs.stripe.com/rate-limits).

Stripe limits each account's requests per second (100 live, 25 in test) and, inside that, each
endpoint's: every named operation (``GET /v1/invoices``, ``GET /v1/coupons/{id}``, ...) has its own
limit, 25/s unless Stripe raised it for the account, and counts against the account's too. A
request therefore waits for a slot in its endpoint's budget, then for one in the account's (in that
order: a walker whose endpoint is held back does not hold a slot of the account's, which would hold
back every other endpoint behind it). A 429 names the
limiter that refused it in ``Stripe-Rate-Limited-Reason`` (``global-rate``, ``endpoint-rate``,
``global-concurrency``, ``endpoint-concurrency``, ``resource-specific``): only that budget slows
down, so a refused endpoint does not hold back the others.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable, Mapping
from typing import Protocol, TypeVar

import stripe

from revsync.domain.ratelimits import GLOBAL_REASONS
from revsync.errors import Deferred

T = TypeVar("T")
MAX_RATE_LIMIT_RETRIES = 8
# A worker waits this long at most for its slot in the account's budget; a later slot defers the message.
MAX_BUDGET_WAIT_SECONDS = 2.0
# When Stripe answers 429 without Retry-After (Stripe documents none: back off exponentially).
DEFAULT_RATE_LIMIT_DELAY_SECONDS = 2.0
# Stripe's limiters count per second: after a 429 the refusing budget takes no request for this long.
SLOW_DOWN_SECONDS = 1.0


class RequestBudget(Protocol):
    def reserve(self, endpoint: str | None) -> float:
        """The wall-clock second of the next free slot of ``endpoint``'s budget (None: the account's),
        taken from now on."""
        ...

    def slow_down(self, reason: str, endpoint: str, seconds: float) -> None:
        """After a 429: the budget the reason names takes no request for ``seconds``."""
        ...


def _interval(rate: float) -> float:
    return 1.0 / rate if rate > 0 else 0.0


class LocalBudget:
    """The account's budget in one process's memory (tests, benchmarks, a single walker);
    ``revsync.store.budget.AccountRequestBudget`` keeps the same clocks in DynamoDB, shared by every
    Lambda. ``rate`` 0: no global limit; ``endpoint_rate`` 0: no endpoint limit."""

    def __init__(
        self,
        rate: float = 0.0,
        endpoint_rate: float = 0.0,
        endpoint_rates: Mapping[str, float] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.rate, self.endpoint_rate = rate, endpoint_rate
        self.endpoint_rates = dict(endpoint_rates or {})
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def reserve(self, endpoint: str | None) -> float:
        with self._lock:
            key = endpoint or ""
            rate = self.rate if endpoint is None else self.endpoint_rates.get(endpoint, self.endpoint_rate)
            start = max(self._clock(), self._next.get(key, 0.0))
            self._next[key] = start + _interval(rate)
            return start

    def slow_down(self, reason: str, endpoint: str, seconds: float) -> None:
        with self._lock:
            key = "" if reason in GLOBAL_REASONS else endpoint
            self._next[key] = max(self._next.get(key, 0.0), self._clock() + seconds)


class Pacer:
    """One walker's requests within a shared budget (each step has its own; they share the budget).

    ``waited``: seconds this walker spent waiting for slots (a step's time minus this is its work).
    """

    def __init__(
        self,
        budget: RequestBudget | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.budget = budget or LocalBudget(clock=clock)
        self._clock, self._sleep = clock, sleep
        self.waited = 0.0
        self.refused: dict[str, int] = {}  # 429s by Stripe-Rate-Limited-Reason

    def wait(self, endpoint: str) -> None:
        for budget in (endpoint, None):  # the endpoint's slot, then the account's
            delay = self.budget.reserve(budget) - self._clock()
            if delay > 0:
                self.waited += delay
                self._sleep(delay)

    def refused_by(self, exc: stripe.RateLimitError, endpoint: str, attempt: int) -> None:
        """Slow the budget Stripe names, then back off (exponential, full jitter) before the retry."""
        reason = rate_limited_reason(exc)
        self.refused[reason] = self.refused.get(reason, 0) + 1
        self.budget.slow_down(reason, endpoint, SLOW_DOWN_SECONDS)
        backoff = min(8.0, 0.5 * 2**attempt) * random.uniform(0.5, 1.0)  # noqa: S311 (jitter)
        delay = max(_retry_after(exc) or 0.0, backoff)
        self.waited += delay
        self._sleep(delay)


def _header(exc: stripe.RateLimitError, name: str) -> str | None:
    headers = exc.headers or {}
    value = headers.get(name) or headers.get(name.lower())
    return str(value) if value is not None else None


def rate_limited_reason(exc: stripe.RateLimitError) -> str:
    """Which limiter refused; a 429 without the header (a lock timeout) is the endpoint's business."""
    return _header(exc, "Stripe-Rate-Limited-Reason") or "endpoint-rate"


def _retry_after(exc: stripe.RateLimitError) -> float | None:
    value = _header(exc, "Retry-After")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def call_paced(pacer: Pacer, endpoint: str, request: Callable[[], T]) -> T:
    """Run ``request`` in its slot; on 429 slow the limiter Stripe names and retry."""
    for attempt in range(MAX_RATE_LIMIT_RETRIES):
        pacer.wait(endpoint)
        try:
            return request()
        except stripe.RateLimitError as exc:
            pacer.refused_by(exc, endpoint, attempt)
    pacer.wait(endpoint)
    return request()  # the last try raises if Stripe still refuses


def call_within_budget(
    budget: RequestBudget,
    endpoint: str,
    request: Callable[[], T],
    *,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] = time.sleep,
    max_wait: float = MAX_BUDGET_WAIT_SECONDS,
) -> T:
    """One request in the account's shared budget, for a worker that must not sit and wait: a slot
    further away than ``max_wait`` or a 429 from Stripe raises ``Deferred`` (the message comes back
    later) instead of sleeping through the function's time limit or failing the message."""
    for limiter in (endpoint, None):  # the endpoint's slot, then the account's
        delay = budget.reserve(limiter) - clock()
        if delay > max_wait:
            raise Deferred(delay, f"request budget ({limiter or 'account'}): next slot in {delay:.1f}s")
        if delay > 0:
            sleep(delay)
    try:
        return request()
    except stripe.RateLimitError as exc:
        budget.slow_down(rate_limited_reason(exc), endpoint, SLOW_DOWN_SECONDS)
        wait = _retry_after(exc) or DEFAULT_RATE_LIMIT_DELAY_SECONDS
        raise Deferred(wait * random.uniform(1.0, 1.5), "Stripe rate limit (429)") from exc  # noqa: S311
