"""Missed events recovered from the Events API through the one write path (in-memory ports)."""

from __future__ import annotations

import json
import random
from typing import Any

from revsync.domain.events import observation_of, parse_event
from revsync.domain.reconcile import EVENTS_RETENTION_SECONDS, MARGIN_SECONDS, window
from revsync.domain.tenancy import Connection, Tenant
from revsync.errors import Deferred
from revsync.services.reconcile import ReconcilePorts, out_of_time_after, reconcile
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeEventsProgress, FakeStripe, FakeTenants

DAY = 86_400
NOW = 1_800_000_000


def _month(customers: int, rng: random.Random) -> list[dict[str, Any]]:
    """A month of changes: sign-ups, upgrades, paid invoices, some cancellations, oldest first."""
    events: list[dict[str, Any]] = []
    start = NOW - 29 * DAY  # within what the Events API keeps
    for n in range(customers):
        at = start + n * 60
        customer = S.customer(f"cus_{n}", metadata={"app_id": f"u-{n}"})
        events.append(S.event("customer.created", customer, created=at, account="acct_1"))
        sub = S.subscription(f"cus_{n}", [S.subscription_item(S.price(1000 * (1 + n % 3)))], id=f"sub_{n}")
        events.append(S.event("customer.subscription.created", sub, created=at + 10, account="acct_1"))
        for week in range(1, 4):
            when = at + week * 7 * DAY
            item = {**sub["items"]["data"][0], "quantity": rng.randint(1, 5)}
            sub = {**sub, "items": {**sub["items"], "data": [item]}}
            events.append(S.event("customer.subscription.updated", sub, created=when, account="acct_1"))
            paid = S.invoice(f"cus_{n}", sub["id"], amount_paid=100 * week, paid_at=when + 5)
            events.append(S.event("invoice.paid", paid, created=when + 5, account="acct_1"))
        if n % 5 == 0:
            ended = {**sub, "status": "canceled", "ended_at": at + 25 * DAY, "canceled_at": at + 25 * DAY}
            events.append(
                S.event("customer.subscription.deleted", ended, created=at + 25 * DAY, account="acct_1")
            )
    return sorted(events, key=lambda e: e["created"])


def _setup(
    connected_at: int = NOW - 31 * DAY,
) -> tuple[FakeTenants, FakeCustomers, FakeStripe, FakeEventsProgress]:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1", connected_at=connected_at))
    return (
        FakeTenants({"acme": tenant.with_config("metadata.app_id")}),
        FakeCustomers(),
        FakeStripe(),
        FakeEventsProgress(),
    )


def _deliver(
    event: dict[str, Any], tenants: FakeTenants, customers: FakeCustomers, stripe: FakeStripe
) -> None:
    observation = observation_of(parse_event(json.dumps(event).encode()))
    assert observation is not None
    apply_observation(
        "acme", observation, tenants=tenants, customers=customers, stripe=stripe, clock=lambda: NOW
    )


def _run(
    tenants: FakeTenants, customers: FakeCustomers, stripe: FakeStripe, progress: FakeEventsProgress
) -> Any:
    ports = ReconcilePorts(tenants, customers, stripe, progress, clock=lambda: NOW)
    return reconcile("acme", ports, out_of_time=lambda: False)


def _records(customers: FakeCustomers) -> dict[Any, Any]:
    return {k: {f: v for f, v in r.items() if f != "revsync_version"} for k, r in customers.records.items()}


def test_with_30_percent_of_deliveries_lost_one_reconcile_gives_what_every_delivery_gives() -> None:
    rng = random.Random(3)
    events = _month(12, rng)
    reference = _setup()
    for event in events:
        _deliver(event, *reference[:3])
    tenants, customers, stripe, progress = _setup()
    stripe.events = events
    delivered = [e for e in events if rng.random() >= 0.3]
    for event in delivered:
        _deliver(event, tenants, customers, stripe)
    progress.advance_watermark("acme", max(e["created"] for e in delivered))
    assert _records(customers) != _records(reference[1])  # the losses showed

    report = _run(tenants, customers, stripe, progress)

    assert report.state == "done"
    assert 0 < report.recovered <= len(events) - len(delivered)
    assert _records(customers) == _records(reference[1])
    state = progress.get("acme")
    assert (state.reconciled_through, state.recovered, state.running_since) == (NOW, report.recovered, 0)


def test_reconciling_twice_or_with_late_webhooks_counts_nothing_twice() -> None:
    events = _month(6, random.Random(4))
    tenants, customers, stripe, progress = _setup()
    stripe.events = events
    for event in events[::2]:
        _deliver(event, tenants, customers, stripe)
    first = _run(tenants, customers, stripe, progress)
    after_first = _records(customers)
    for event in events[1::2]:  # the lost webhooks arrive late after all
        _deliver(event, tenants, customers, stripe)
    second = _run(tenants, customers, stripe, progress)
    assert first.recovered > 0
    assert second.recovered == 0
    assert _records(customers) == after_first
    totals = {k[1]: r["total_paid"] for k, r in customers.records.items()}
    assert totals["u-1"] == 100 + 200 + 300  # each paid invoice counted once


def test_a_gap_older_than_the_events_api_keeps_is_reported_not_skipped() -> None:
    tenants, customers, stripe, progress = _setup(connected_at=NOW - 45 * DAY)
    report = _run(tenants, customers, stripe, progress)
    assert report.backfill_needed is True
    assert report.listed_from == NOW - EVENTS_RETENTION_SECONDS
    assert progress.get("acme").backfill_needed is True
    assert window(NOW - 60, NOW - 7200, NOW - 9 * DAY, NOW).start == NOW - 7200 - MARGIN_SECONDS


def test_one_run_at_a_time_and_a_stopped_run_resumes_the_same_window() -> None:
    events = _month(3, random.Random(5))
    tenants, customers, stripe, progress = _setup()
    stripe.events = events * 1  # more than one page is not needed: stop on the first page's read
    assert progress.claim("acme", NOW)
    assert _run(tenants, customers, stripe, progress).state == "running"
    progress.finish("acme", NOW, 0, None, False)

    class Busy(FakeStripe):
        def list_events(self, *args: Any, **kwargs: Any) -> Any:
            raise Deferred(5.0, "account request budget")

    busy = Busy()
    partial = _run(tenants, customers, busy, progress)
    assert partial.state == "partial"
    assert progress.get("acme").reconciled_through is None  # nothing claimed as checked
    done = _run(tenants, customers, stripe, progress)
    assert (done.state, done.listed) == ("done", len(events))


def test_a_disconnected_tenant_is_not_reconciled() -> None:
    tenants, customers, stripe, progress = _setup()
    tenants.tenants["acme"] = Tenant("acme", Connection("revoked", "oauth", "acct_1"))
    assert _run(tenants, customers, stripe, progress).state == "not_connected"
    assert stripe.event_pages == 0


def test_a_run_stops_its_margin_before_the_function_does_and_gets_at_least_a_second() -> None:
    now = [100.0]
    out_of_time = out_of_time_after(30_000, 5, monotonic=lambda: now[0])
    now[0] = 124.9
    assert not out_of_time()
    now[0] = 125.1
    assert out_of_time()
    short = out_of_time_after(2_000, 5, monotonic=lambda: now[0])  # less time left than the margin
    now[0] += 0.9
    assert not short()
    now[0] += 0.2
    assert short()
