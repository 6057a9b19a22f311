"""Stripe's rate limit in the worker: reads go through the account's shared budget, and a 429 (or a
budget slot too far away) means "later", never a parked message."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import partial
from typing import Any

import pytest
import stripe
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from revsync.domain.events import envelope_for, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.errors import Deferred
from revsync.infra.queue import EventsQueueVisibility
from revsync.stripe_api.client import StripeAccounts
from revsync.stripe_api.pacing import LocalBudget, call_within_budget

from local import lambda_runtime
from local import stripe_shapes as S
from local.inprocess import InProcessStack
from tests.conftest import FROZEN_NOW
from tests.fakes import FakeStripe
from tests.integration.conftest import PLATFORM_SECRET

pytestmark = pytest.mark.integration


@dataclass
class Clock:
    now: float = float(FROZEN_NOW)
    slept: list[float] = field(default_factory=list)

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_reads_wait_for_their_slot_or_defer_when_it_is_too_far(stack: InProcessStack) -> None:
    clock = Clock()
    budget = stack.graph("ImporterFunction").budgets("acct_slow", 1, clock=clock)
    calls: list[int] = []
    for n in range(3):  # slots at +0, +1, +2 s: each within the wait the worker allows
        call_within_budget(
            budget, "GET /v1/customers/{id}", partial(calls.append, n), clock=clock, sleep=clock.sleep
        )
    assert calls == [0, 1, 2]
    # Each waited for its endpoint's slot (25/s), then for the account's (1/s here).
    assert round(clock.now - FROZEN_NOW, 3) == 2.0
    # Ten reads reserved at once by other workers: the next slot is 10 s away, so this one defers.
    for _ in range(10):
        budget.reserve(None)
    with pytest.raises(Deferred) as deferred:
        call_within_budget(
            budget, "GET /v1/customers/{id}", partial(calls.append, 99), clock=clock, sleep=clock.sleep
        )
    assert deferred.value.delay_seconds > 2
    assert 99 not in calls


def test_a_429_defers_for_retry_after() -> None:
    def refused() -> None:
        raise stripe.RateLimitError("slow down", headers={"Retry-After": "7"})

    with pytest.raises(Deferred) as deferred:
        call_within_budget(
            LocalBudget(clock=lambda: 0.0), "GET /v1/events", refused, clock=lambda: 0.0, sleep=lambda _: None
        )
    assert 7 <= deferred.value.delay_seconds <= 7 * 1.5


@dataclass
class RateLimitedStripe(FakeStripe):
    """Stripe answering 429 (as StripeAccounts reports it) to every read."""

    def fetch(self, tenant: Tenant, kind: str, object_id: str) -> Any:
        self.fetches.append(object_id)
        raise Deferred(3.0, "Stripe rate limit (429)")


class Hidden(EventsQueueVisibility):
    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.calls: list[tuple[str, float]] = []

    def hide(self, receipt_handle: str, seconds: float) -> None:
        self.calls.append((receipt_handle, seconds))
        if not receipt_handle.startswith("rh-"):  # a real message: really hide it
            super().hide(receipt_handle, seconds)


def test_a_rate_limited_message_is_deferred_never_parked_whatever_its_receive_count(
    stack: InProcessStack, connect_oauth: Any
) -> None:
    """Regression: at 1 request/s, same-second ties that needed a Stripe read ended in the DLQ."""
    connect_oauth("acme", "acct_acme")
    worker = lambda_runtime.load_module("WorkerFunction")
    hidden = Hidden(stack.graph("WorkerFunction").settings.events_queue_url)
    deps = stack.wire("WorkerFunction", stripe=RateLimitedStripe(), visibility=hidden)
    # Two different snapshots of one subscription in one second: only a read from Stripe settles it.
    sub = S.subscription("cus_1", status="active")
    events = []
    for quantity in (1, 2):
        changed = {
            **sub,
            "items": {**sub["items"], "data": [{**sub["items"]["data"][0], "quantity": quantity}]},
        }
        events.append(
            S.event("customer.subscription.updated", changed, created=FROZEN_NOW - 5, account="acct_acme")
        )
        stack.post_webhook(events[-1], PLATFORM_SECRET)
    stack.drain()  # the first applies; the tie is deferred (hidden, still on the queue)
    [(_, delay)] = deps.visibility.calls
    assert delay == 3.0
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
    assert stack.queue_depth("EventsQueue") == 1
    # Even on a delivery far past MaxReceiveCount, a deferral is not a failure that parks it.
    body = json.dumps(envelope_for(parse_event(json.dumps(events[1]).encode()), "acme"))
    record = SQSRecord(
        {
            "messageId": "m-late",
            "receiptHandle": "rh-late",
            "body": body,
            "attributes": {"ApproximateReceiveCount": "40", "MessageGroupId": "acme#cus_1"},
        }
    )
    with pytest.raises(Deferred):
        worker.record_handler(record)
    assert stack.queue_depth("EventsDeadLetterQueue") == 0
    assert deps.visibility.calls[-1] == ("rh-late", 3.0)


def test_the_workers_stripe_reads_use_the_accounts_shared_budget(stack: InProcessStack) -> None:
    clock = Clock()
    reserved: list[tuple[str, float]] = []
    budgets = stack.graph("ImporterFunction").budgets  # the accounts' budgets, as the functions keep them

    def budget(account: str, rate: float) -> Any:
        reserved.append((account, rate))
        return budgets(account, rate, clock=clock)

    accounts = StripeAccounts(
        platform_key=lambda: "sk_test_platform",
        tenant_api_key=lambda name: "rk_test_x",
        api_base="http://127.0.0.1:9",  # nothing listens: the request fails after the budget step
        budget=budget,
        rate_limits=(1.0, 100.0),
        clock=clock,
        sleep=clock.sleep,
    )
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_budgeted"))
    for _ in range(4):  # busy budget: three slots taken already
        budgets("acct_budgeted", 1.0, clock=clock).reserve(None)
    with pytest.raises(Deferred):
        accounts.fetch(tenant, "customer", "cus_1")
    assert reserved == [("acct_budgeted", 1.0)]
