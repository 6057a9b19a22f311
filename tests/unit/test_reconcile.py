"""Missed events recovered from the Events API through the one write path (in-memory ports)."""

from __future__ import annotations

import inspect
import json
import random
from typing import Any

import pytest
import stripe
from revsync.domain.events import CONNECTION_EVENT_TYPES, HANDLED_EVENT_TYPES, observation_of, parse_event
from revsync.domain.policy import RevenuePolicy
from revsync.domain.reconcile import EVENTS_RETENTION_SECONDS, MARGIN_SECONDS, CatchUpJob, window
from revsync.domain.tenancy import Connection, Tenant
from revsync.errors import Deferred, RevsyncError
from revsync.http_errors import status_of
from revsync.services.reconcile import (
    MAX_LISTED_TYPES,
    RECONCILED_TYPES,
    ReconcilePorts,
    TenantOfTheRun,
    out_of_time_after,
    queue_catch_ups,
    reconcile,
    request_catch_up,
    run_job,
)
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCatchUpQueue, FakeCustomers, FakeEventsProgress, FakeStripe, FakeTenants

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
    assert progress.claim("acme", NOW, stale_after=900)
    assert _run(tenants, customers, stripe, progress).state == "running"
    progress.release("acme")

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


# --- resumable windows ------------------------------------------------------------------------------


class _Clock:
    """Every run's "now": moved by the test, never read from the wall."""

    def __init__(self, now: int = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


def _cut_after(stripe: FakeStripe, pages: int) -> Any:
    """A deadline that passes once this run has read ``pages`` pages (a run reads at least one)."""
    first = stripe.event_pages
    return lambda: stripe.event_pages - first >= pages


Setup = tuple[FakeTenants, FakeCustomers, FakeStripe, FakeEventsProgress]


def _lossy(seed: int, customers_count: int = 40) -> tuple[list[dict[str, Any]], Setup, Setup]:
    """A month of events (several pages), 30 % of their webhooks lost; the state every delivery gives."""
    rng = random.Random(seed)
    events = _month(customers_count, rng)
    reference = _setup()
    for event in events:
        _deliver(event, *reference[:3])
    setup = _setup()
    setup[2].events = events
    for event in events:
        if rng.random() >= 0.3:
            _deliver(event, *setup[:3])
    return events, reference, setup


def test_a_catch_up_cut_short_after_any_page_resumes_and_finishes_with_nothing_counted_twice() -> None:
    events, _, (tenants, customers, stripe, progress) = _lossy(7)
    expected = reconcile(
        "acme", ReconcilePorts(tenants, customers, stripe, progress, lambda: NOW), lambda: False
    )
    assert expected.state == "done"
    assert expected.recovered > 0
    pages = -(-len(events) // 100)
    assert pages >= 4

    for cut in range(1, pages):
        events, reference, (tenants, customers, stripe, progress) = _lossy(7)
        newest_first = list(reversed(events))
        clock = _Clock()
        ports = ReconcilePorts(tenants, customers, stripe, progress, clock=clock)
        first = reconcile("acme", ports, _cut_after(stripe, cut))
        assert (first.state, first.listed) == ("partial", 100 * cut)
        pending = progress.get("acme").pending
        assert pending is not None
        assert (pending.listed, pending.through) == (100 * cut, NOW)
        assert pending.cursor == newest_first[100 * cut - 1]["id"]
        assert progress.get("acme").reconciled_through is None  # nothing claimed as checked yet
        runs = [first]
        while runs[-1].state != "done":
            clock.now += 60
            runs.append(reconcile("acme", ports, _cut_after(stripe, cut)))
            assert runs[-1].resumed
        assert sum(run.listed for run in runs) == len(events)  # each event listed once
        assert sum(run.recovered for run in runs) == expected.recovered
        assert _records(customers) == _records(reference[1])
        state = progress.get("acme")
        # The window ends at the first run's start: events created since are the next window's.
        assert (state.reconciled_through, state.pending, state.recovered) == (NOW, None, expected.recovered)


def test_a_cursor_stripe_no_longer_accepts_restarts_the_window_from_the_top() -> None:
    events, reference, (tenants, customers, stripe, progress) = _lossy(8)
    clock = _Clock()
    ports = ReconcilePorts(tenants, customers, stripe, progress, clock=clock)
    assert reconcile("acme", ports, _cut_after(stripe, 2)).state == "partial"
    pending = progress.get("acme").pending
    assert pending is not None
    gone = next(e for e in events if e["id"] == pending.cursor)
    _deliver(gone, tenants, customers, stripe)  # its webhook came late, and Stripe dropped it since
    stripe.events = [e for e in events if e is not gone]
    clock.now += 3600

    resumed = reconcile("acme", ports, lambda: False)

    assert resumed.state == "done"
    assert resumed.listed == len(events) - 1  # listed again from the top, all of it
    assert _records(customers) == _records(reference[1])
    state = progress.get("acme")
    assert (state.reconciled_through, state.pending) == (NOW + 3600, None)  # the top was listed now


def test_a_window_left_pending_longer_than_stripe_keeps_events_is_cut_and_reported() -> None:
    _, _, (tenants, customers, stripe, progress) = _lossy(9, customers_count=20)
    clock = _Clock()
    ports = ReconcilePorts(tenants, customers, stripe, progress, clock=clock)
    assert reconcile("acme", ports, _cut_after(stripe, 1)).state == "partial"
    clock.now += 10 * DAY  # the pending window's start is now older than the 30 days kept

    report = reconcile("acme", ports, lambda: False)

    assert report.state == "done"
    assert report.backfill_needed is True
    assert report.listed_from == clock.now - EVENTS_RETENTION_SECONDS
    assert progress.get("acme").backfill_needed is True


# --- the jobs the schedule queues ---------------------------------------------------------------------


def test_a_run_out_of_time_queues_its_continuation_and_the_schedule_waits_for_that_chain() -> None:
    _, reference, (tenants, customers, stripe, progress) = _lossy(10)
    clock = _Clock()
    ports = ReconcilePorts(tenants, customers, stripe, progress, clock=clock)
    queue = FakeCatchUpQueue()

    first = run_job(CatchUpJob("acme", "schedule", NOW), ports, queue, _cut_after(stripe, 1))

    assert first.state == "partial"
    continuation = queue.take()
    assert isinstance(continuation, CatchUpJob)
    pending = progress.get("acme").pending
    assert pending is not None
    assert (continuation.reason, continuation.token) == ("continue", pending.continuation)
    # The next period's job while the chain is alive: nothing listed, nothing queued.
    clock.now += 600
    pages = stripe.event_pages
    assert run_job(CatchUpJob("acme", "schedule", clock.now), ports, queue, lambda: False).state == "skipped"
    assert (stripe.event_pages, queue.jobs) == (pages, [])
    assert progress.get("acme").running_since == 0  # the skipped job let go of its claim
    # The chain goes on to the end (a stale token's job, here the first run's, would be skipped).
    while isinstance(continuation, CatchUpJob):
        report = run_job(continuation, ports, queue, _cut_after(stripe, 1))
        continuation = queue.take()
    assert continuation is None
    assert report.state == "done"
    assert _records(customers) == _records(reference[1])
    assert progress.get("acme").pending is None


def test_a_continuation_that_never_ran_is_taken_over_once_it_is_stale() -> None:
    _, reference, (tenants, customers, stripe, progress) = _lossy(11)
    clock = _Clock()
    ports = ReconcilePorts(tenants, customers, stripe, progress, clock=clock, stale_after=900)
    queue = FakeCatchUpQueue()
    run_job(CatchUpJob("acme", "schedule", NOW), ports, queue, _cut_after(stripe, 1))
    lost = queue.take()  # its message went to the dead-letter queue, say
    assert isinstance(lost, CatchUpJob)

    clock.now += 899
    assert run_job(CatchUpJob("acme", "schedule", clock.now), ports, queue, lambda: False).state == "skipped"
    clock.now += 2
    report = run_job(CatchUpJob("acme", "schedule", clock.now), ports, queue, lambda: False)

    assert (report.state, report.resumed) == ("done", True)
    assert _records(customers) == _records(reference[1])
    # The lost one, redriven later, finds the window done: it lists only what came since.
    assert run_job(lost, ports, queue, lambda: False).state == "done"


def test_the_schedule_queues_every_connected_tenant_least_recently_reconciled_first() -> None:
    class Candidates:
        def last_reconciled(self) -> dict[str, int | None]:
            return {"alpha": 300, "beta": None, "gamma": 100, "delta": 100}

    queue = FakeCatchUpQueue()
    assert queue_catch_ups(Candidates(), queue, NOW) == {"queued": 4}
    assert [(job.tenant_id, job.reason) for job in queue.jobs] == [
        ("beta", "schedule"),
        ("delta", "schedule"),
        ("gamma", "schedule"),
        ("alpha", "schedule"),
    ]


def test_an_operator_request_queues_the_same_job_unless_one_runs() -> None:
    tenants, _, _, progress = _setup()
    queue = FakeCatchUpQueue()
    answer = request_catch_up("acme", tenants=tenants, progress=progress, queue=queue, now=NOW)
    assert answer == {"reconcile": {"state": "queued", "queued_at": NOW}}
    [job] = queue.jobs
    assert (job.tenant_id, job.reason, job.queued_at) == ("acme", "request", NOW)
    request_catch_up("acme", tenants=tenants, progress=progress, queue=queue, now=NOW)
    assert len(queue.jobs) == 2  # a second request in the same second is a job of its own

    progress.claim("acme", NOW, stale_after=900)
    with pytest.raises(RevsyncError) as running:
        request_catch_up("acme", tenants=tenants, progress=progress, queue=queue, now=NOW + 10)
    assert (status_of(running.value), running.value.code) == (409, "reconcile_running")
    with pytest.raises(RevsyncError) as nobody:
        request_catch_up("nobody", tenants=tenants, progress=progress, queue=queue, now=NOW)
    assert (status_of(nobody.value), nobody.value.code) == (409, "not_connected")


class _CountingCustomers(FakeCustomers):
    loads: int = 0
    record_reads: int = 0

    def load(self, tenant_id: str, customer_id: str) -> Any:
        self.loads += 1
        return super().load(tenant_id, customer_id)

    def projected_version(self, tenant_id: str, external_id: str, customer_id: str) -> int | None:
        self.record_reads += 1
        return super().projected_version(tenant_id, external_id, customer_id)


class _CountingTenants(FakeTenants):
    reads: int = 0

    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        self.reads += 1
        return super().get(tenant_id, min_config_version)


def test_an_event_found_already_applied_costs_one_read_and_the_tenant_is_read_once_a_run() -> None:
    tenants = _CountingTenants(_setup()[0].tenants)
    customers, stripe, progress = _CountingCustomers(), FakeStripe(), FakeEventsProgress()
    stripe.events = _month(8, random.Random(15))
    for event in stripe.events:  # every webhook came
        _deliver(event, tenants, customers, stripe)
    tenants.reads = customers.loads = customers.record_reads = 0

    report = _run(tenants, customers, stripe, progress)

    assert (report.listed, report.recovered) == (len(stripe.events), 0)
    assert customers.loads == len(stripe.events)  # the state Query, once an event
    assert customers.record_reads == 0  # no record check besides it
    assert tenants.reads == 1


def test_a_runs_tenant_is_read_again_only_when_a_newer_config_is_asked_for() -> None:
    tenants = _CountingTenants(_setup()[0].tenants)
    tenant = tenants.get("acme")
    assert tenant is not None
    run = TenantOfTheRun(tenants, tenant)
    tenants.reads = 0

    assert run.get("acme") is run.get("acme", tenant.config_version) is tenant
    assert (run.get("other"), tenants.reads) == (None, 0)
    newer = tenant.with_policy(RevenuePolicy(discounts="none"))
    tenants.tenants["acme"] = newer
    assert (run.get("acme", newer.config_version), tenants.reads) == (newer, 1)


def test_a_catch_up_lists_at_most_the_20_types_stripe_takes_and_leaves_out_only_what_another_carries() -> (
    None
):
    """``GET /v1/events`` takes ``types[]`` of up to 20 (the SDK's EventListParams says so; the sandbox
    refuses more, as Stripe does). The handled types a catch-up does not list are those whose change a
    listed type also carries, or that change nothing revsync keeps (services/reconcile.py says which)."""
    assert "up to 20 strings" in inspect.getsource(stripe.params.EventListParams)
    assert len(RECONCILED_TYPES) == len(set(RECONCILED_TYPES)) == MAX_LISTED_TYPES
    assert set(RECONCILED_TYPES) <= HANDLED_EVENT_TYPES
    assert HANDLED_EVENT_TYPES - CONNECTION_EVENT_TYPES - set(RECONCILED_TYPES) == {
        "invoice.payment_succeeded",
        "invoice.updated",
        "invoice.payment_action_required",
        "invoice.finalized",
        "customer.subscription.trial_will_end",
        "customer.discount.created",
        "customer.discount.updated",
        "customer.discount.deleted",
        "credit_note.updated",
        "subscription_schedule.released",
        "subscription_schedule.canceled",
        "subscription_schedule.completed",
        "subscription_schedule.aborted",
        "payment_method.updated",
    }
