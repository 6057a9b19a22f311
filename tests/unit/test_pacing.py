"""Requests within Stripe's limits: each takes a slot in its endpoint's budget and in the account's,
and a 429 slows only the limiter its ``Stripe-Rate-Limited-Reason`` names."""

from __future__ import annotations

from dataclasses import dataclass, field

import stripe
from revsync.stripe_api.pacing import SLOW_DOWN_SECONDS, LocalBudget, Pacer, call_paced

T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def refused(reason: str) -> stripe.RateLimitError:
    return stripe.RateLimitError("Too many requests", headers={"Stripe-Rate-Limited-Reason": reason})


def starts(budget: LocalBudget, clock: Clock, endpoints: list[str]) -> list[float]:
    """When each request starts, one after another, each paced as a walker paces it."""
    pacer = Pacer(budget, clock=clock, sleep=clock.sleep)
    started = []
    for endpoint in endpoints:
        pacer.wait(endpoint)
        started.append(round(clock.now - T0, 3))
    return started


def test_requests_are_spaced_by_their_endpoints_limit_within_the_accounts() -> None:
    clock = Clock()
    live = LocalBudget(rate=100, endpoint_rate=25, clock=clock)
    assert starts(live, clock, ["GET /v1/invoices"] * 3) == [0.0, 0.04, 0.08]  # 25/s on one endpoint
    # Another endpoint goes at the account's next slot (100/s: 10 ms after the last request).
    assert starts(live, clock, ["GET /v1/customers"]) == [0.09]
    clock.now = T0
    raised = LocalBudget(rate=100, endpoint_rate=25, endpoint_rates={"GET /v1/invoices": 50}, clock=clock)
    assert starts(raised, clock, ["GET /v1/invoices"] * 2) == [0.0, 0.02]
    clock.now = T0
    test_mode = LocalBudget(rate=25, endpoint_rate=25, clock=clock)
    assert starts(test_mode, clock, ["GET /v1/invoices", "GET /v1/customers"]) == [0.0, 0.04]


def test_an_endpoint_429_slows_that_endpoint_only() -> None:
    clock = Clock()
    budget = LocalBudget(rate=100, endpoint_rate=25, clock=clock)
    pacer = Pacer(budget, clock=clock, sleep=clock.sleep)
    answers: list[object] = [refused("endpoint-rate"), "page"]

    def invoices() -> object:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    assert call_paced(pacer, "GET /v1/invoices", invoices) == "page"
    assert pacer.refused == {"endpoint-rate": 1}
    assert clock.now >= T0 + SLOW_DOWN_SECONDS - 0.01  # the retry waited for the endpoint's pause
    # Seen from the other endpoints at the moment of the 429: held back on invoices alone, and the
    # invoices waiting for their endpoint hold no slot of the account's meanwhile.
    clock.now = T0
    other = LocalBudget(rate=100, endpoint_rate=25, clock=clock)
    other.slow_down("endpoint-rate", "GET /v1/invoices", SLOW_DOWN_SECONDS)
    assert other.reserve("GET /v1/invoices") == T0 + SLOW_DOWN_SECONDS
    assert starts(other, clock, ["GET /v1/customers", "GET /v1/subscriptions"]) == [0.0, 0.01]


def test_an_account_429_slows_every_endpoint() -> None:
    clock = Clock()
    budget = LocalBudget(rate=100, endpoint_rate=25, clock=clock)
    for reason in ("global-rate", "global-concurrency"):
        started = clock.now
        budget.slow_down(reason, "GET /v1/invoices", SLOW_DOWN_SECONDS)
        assert starts(budget, clock, ["GET /v1/customers"]) == [round(started + SLOW_DOWN_SECONDS - T0, 3)]
        clock.now += 5


def test_a_429_without_a_reason_is_the_endpoints_and_a_retry_after_is_honoured() -> None:
    clock = Clock()
    pacer = Pacer(LocalBudget(rate=100, endpoint_rate=25, clock=clock), clock=clock, sleep=clock.sleep)
    lock = stripe.RateLimitError("lock_timeout", headers={"Retry-After": "6"})
    pacer.refused_by(lock, "GET /v1/invoices", attempt=0)
    assert pacer.refused == {"endpoint-rate": 1}
    assert clock.slept == [6.0]
    assert pacer.budget.reserve("GET /v1/customers") == clock.now
    assert pacer.budget.reserve(None) == clock.now
