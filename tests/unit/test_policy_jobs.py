"""A policy change's recompute and the schedule's review (revsync.services.policy) on in-memory
ports: the re-derivation itself is the write path's (``sync.rederive``), injected here as a recorder
that sees which policy the tenant has when it is called."""

from __future__ import annotations

import bisect
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.reconcile import CatchUpJob, RecomputeJob
from revsync.domain.tenancy import Connection, ConnectionStatus, Recompute, Tenant
from revsync.errors import RevsyncError
from revsync.http_errors import status_of
from revsync.services import jobs, policy
from revsync.services.policy import (
    PolicyPorts,
    policy_document,
    recompute_again,
    review,
    run_recompute,
    save_policy,
)
from revsync.services.reconcile import CLAIM_STALE_SECONDS, ReconcilePorts
from revsync.services.sync import Customers, Tenants

from tests.fakes import FakeCatchUpQueue, FakeCustomers, FakeEventsProgress, FakeFeed, FakeStripe, FakeTenants

NOW = 1_800_000_000
SCHEDULED = RevenuePolicy(churn_at="scheduled")


@dataclass
class _Customers(FakeCustomers):
    """The stored customers' ids in order, a page at a time, and when each is next due for review."""

    ids: list[str] = field(default_factory=list)
    review_at: dict[str, int] = field(default_factory=dict)
    pages: int = 0

    def customer_ids(self, tenant_id: str, after: str | None, limit: int) -> tuple[list[str], str | None]:
        self.pages += 1
        start = 0 if after is None else bisect.bisect_right(self.ids, after)
        page = self.ids[start : start + limit]
        return page, page[-1] if start + limit < len(self.ids) else None

    def due_for_review(self, tenant_id: str, now: int, limit: int) -> list[str]:
        due = sorted((at, customer_id) for customer_id, at in self.review_at.items() if at <= now)
        return [customer_id for _, customer_id in due[:limit]]


@dataclass
class _Rederive:
    """``sync.rederive`` as the recompute calls it: which customer, as of when, under which policy
    (read through the tenants it is given); a customer re-derived is next due a day later."""

    customers: _Customers
    calls: list[tuple[str, int, RevenuePolicy]] = field(default_factory=list)
    before: Callable[[str], None] = lambda customer_id: None
    moves_review: bool = True

    def __call__(
        self,
        tenant_id: str,
        customer_id: str,
        *,
        tenants: Tenants,
        customers: Customers,
        changes: Any,
        now: int,
    ) -> object:
        assert customers is self.customers
        self.before(customer_id)
        tenant = tenants.get(tenant_id)
        assert tenant is not None
        self.calls.append((customer_id, now, tenant.policy))
        if self.moves_review and customer_id in self.customers.review_at:
            self.customers.review_at[customer_id] = now + 86_400
        return None

    def customer_ids(self) -> list[str]:
        return [customer_id for customer_id, _, _ in self.calls]


class _Clock:
    def __init__(self) -> None:
        self.now = float(NOW)

    def __call__(self) -> float:
        return self.now


@dataclass
class _World:
    tenants: FakeTenants
    customers: _Customers
    rederive: _Rederive
    queue: FakeCatchUpQueue
    clock: _Clock

    @property
    def ports(self) -> PolicyPorts:
        return PolicyPorts(self.tenants, self.customers, self.rederive, FakeFeed(), self.clock)

    def put(self, body: Any) -> dict[str, Any]:
        return save_policy("acme", body, tenants=self.tenants, queue=self.queue, now=int(self.clock.now))

    def tenant(self) -> Tenant:
        tenant = self.tenants.get("acme")
        assert tenant is not None
        return tenant


def _world(customers: int = 0, connected: bool = True) -> _World:
    status: ConnectionStatus = "connected" if connected else "revoked"
    tenant = Tenant("acme", Connection(status, "oauth", "acct_1", connected_at=NOW - 86_400))
    store = _Customers(ids=sorted(f"cus_{n:04d}" for n in range(customers)))
    return _World(
        FakeTenants({"acme": tenant.with_config("metadata.app_id")}),
        store,
        _Rederive(store),
        FakeCatchUpQueue(),
        _Clock(),
    )


def _pages(allowed: int) -> Callable[[], bool]:
    """A deadline that comes after ``allowed`` pages (the run looks at it before each)."""
    looks = [0]

    def out_of_time() -> bool:
        looks[0] += 1
        return looks[0] > allowed

    return out_of_time


def _recompute(world: _World) -> Recompute:
    recompute = world.tenant().recompute
    assert recompute is not None
    return recompute


# --- the route ---------------------------------------------------------------------------------------


def test_a_new_policy_is_saved_with_a_new_config_version_and_its_recompute_queued() -> None:
    world = _world()
    before = world.tenant()
    assert policy_document("acme", tenants=world.tenants)["recompute"]["state"] == "none"

    answer = world.put({"churn_at": "scheduled"})

    after = world.tenant()
    assert (after.policy, after.config_version) == (SCHEDULED, before.config_version + 1)
    assert after.customer_id_trait == before.customer_id_trait
    [job] = world.queue.jobs
    assert isinstance(job, RecomputeJob)
    assert job == RecomputeJob("acme", after.config_version, NOW, None, job.token)
    assert answer == policy_document("acme", tenants=world.tenants)
    assert answer == {
        "document": SCHEDULED.to_json(),
        "recompute": {
            "state": "recomputing",
            "config_version": after.config_version,
            "customers_done": 0,
            "started_at": NOW,
            "finished_at": None,
        },
    }


def test_the_policy_in_force_changes_nothing_and_queues_nothing() -> None:
    world = _world()
    assert world.put({})["recompute"]["state"] == "none"  # every key left out: the default
    assert world.put(DEFAULT_POLICY.to_json())["document"] == DEFAULT_POLICY.to_json()
    assert (world.tenant().config_version, world.queue.jobs) == (1, [])
    world.put({"churn_at": "scheduled"})
    world.queue.jobs.clear()
    world.clock.now += 60
    answer = world.put({"churn_at": "scheduled", "past_due": {"churn_after_days": None}})
    assert (world.tenant().config_version, world.queue.jobs) == (2, [])
    assert answer["recompute"]["started_at"] == NOW


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (None, "invalid_policy"),
        ([], "invalid_policy"),
        ("scheduled", "invalid_policy"),
        ({"churn": "scheduled"}, "invalid_policy"),
        ({"past_due": 30}, "invalid_policy"),
        ({"past_due": {"days": 30}}, "invalid_policy"),
        ({"past_due": {"churn_after_days": 0}}, "invalid_policy"),
        ({"past_due": {"churn_after_days": 91}}, "invalid_policy"),
        ({"past_due": {"churn_after_days": True}}, "invalid_policy"),
        ({"past_due": {"churn_after_days": 1.5}}, "invalid_policy"),
        ({"past_due": {"churn_after_days": "30"}}, "invalid_policy"),
        ({"churn_at": "never"}, "invalid_policy"),
        ({"discounts": None}, "invalid_policy"),
        ({"metered": "all"}, "invalid_policy"),
    ],
)
def test_a_bad_policy_is_a_400_that_changes_nothing(body: Any, code: str) -> None:
    world = _world()
    before = world.tenant()
    with pytest.raises(RevsyncError) as refused:
        world.put(body)
    assert (status_of(refused.value), refused.value.code) == (400, code)
    assert (world.tenant(), world.queue.jobs) == (before, [])


def test_a_tenant_without_a_connection_is_a_409_and_a_bad_tenant_id_a_400() -> None:
    world = _world(connected=False)
    before = world.tenant()
    with pytest.raises(RevsyncError) as revoked:
        world.put({"churn_at": "scheduled"})
    with pytest.raises(RevsyncError) as nobody:
        save_policy("nobody", {}, tenants=world.tenants, queue=world.queue, now=NOW)
    with pytest.raises(RevsyncError) as bad:
        save_policy("-bad-", {}, tenants=world.tenants, queue=world.queue, now=NOW)
    assert [(status_of(e.value), e.value.code) for e in (revoked, nobody, bad)] == [
        (409, "not_connected"),
        (409, "not_connected"),
        (400, "invalid_tenant_id"),
    ]
    assert (world.tenant(), world.queue.jobs, world.tenants.get("nobody")) == (before, [], None)


# --- the recompute ----------------------------------------------------------------------------------


def _run_chain(world: _World, first_run_pages: int) -> list[policy.RecomputeReport]:
    """The queued jobs run in order, the first cut after ``first_run_pages`` pages, each later one
    after one page (as many runs as that takes)."""
    reports, allowed = [], first_run_pages
    while (job := world.queue.take()) is not None:
        assert isinstance(job, RecomputeJob)
        reports.append(run_recompute(job, world.ports, world.queue, _pages(allowed)))
        allowed = 1
        world.clock.now += 30
    return reports


@pytest.mark.parametrize(
    ("first_run_pages", "rederived"),
    [(0, [0, 50, 50, 7]), (1, [50, 50, 7]), (2, [100, 7]), (3, [107])],
)
def test_a_recompute_cut_short_after_any_page_goes_on_where_it_stopped_and_finishes(
    first_run_pages: int, rederived: list[int]
) -> None:
    assert policy.PAGE == 50
    world = _world(customers=107)  # three pages
    world.put({"churn_at": "scheduled"})

    reports = _run_chain(world, first_run_pages)

    # The first run, then a page a run.
    assert [r.rederived for r in reports] == rederived
    assert [r.state for r in reports] == ["partial"] * (len(rederived) - 1) + ["done"]
    assert all(r.out_of_time for r in reports[:-1])
    # Every customer once, in order, under the new policy; the chain read each page once.
    assert world.rederive.customer_ids() == world.customers.ids
    assert {p for _, _, p in world.rederive.calls} == {SCHEDULED}
    assert world.customers.pages == 3
    recompute = _recompute(world)
    assert (recompute.state, recompute.customers_done, recompute.cursor) == ("done", 107, None)
    assert recompute.finished_at == NOW + 30 * (len(reports) - 1)
    status = policy_document("acme", tenants=world.tenants)["recompute"]
    assert (status["state"], status["customers_done"]) == ("done", 107)


def test_a_tenant_without_customers_is_recomputed_at_once() -> None:
    world = _world()
    world.put({"discounts": "none"})
    [report] = _run_chain(world, 1)
    assert (report.state, report.rederived, _recompute(world).state) == ("done", 0, "done")


def test_a_job_run_again_or_after_the_recompute_moved_on_does_nothing() -> None:
    world = _world(customers=policy.PAGE + 1)
    world.put({"churn_at": "scheduled"})
    first = world.queue.take()
    assert isinstance(first, RecomputeJob)
    run_recompute(first, world.ports, world.queue, _pages(1))
    calls = len(world.rederive.calls)

    # SQS delivers the first job again (its run failed after queueing the continuation, say).
    again = run_recompute(first, world.ports, world.queue, _pages(5))

    assert (again.state, len(world.rederive.calls)) == ("skipped", calls)
    _run_chain(world, 1)
    done = run_recompute(first, world.ports, world.queue, _pages(5))
    assert (done.state, done.customers_done) == ("skipped", policy.PAGE + 1)
    assert world.rederive.customer_ids() == world.customers.ids


def test_a_newer_change_supersedes_a_running_recompute_which_starts_again_from_the_first_customer() -> None:
    world = _world(customers=2 * policy.PAGE + 1)
    world.put({"churn_at": "scheduled"})
    old = world.queue.take()
    assert isinstance(old, RecomputeJob)
    run_recompute(old, world.ports, world.queue, _pages(1))  # one page done, its continuation queued
    world.clock.now += 60

    changed = world.put({"discounts": "forever_only"})  # the new job queued after that continuation
    reports = _run_chain(world, 1)

    assert [r.state for r in reports] == ["superseded", "partial", "partial", "done"]
    newest = RevenuePolicy(discounts="forever_only")
    assert changed["recompute"]["config_version"] == world.tenant().config_version == 3
    old_page, new_calls = world.rederive.calls[: policy.PAGE], world.rederive.calls[policy.PAGE :]
    assert {p for _, _, p in old_page} == {SCHEDULED}
    assert [c for c, _, _ in new_calls] == world.customers.ids  # from the beginning, every customer
    assert {p for _, _, p in new_calls} == {newest}
    assert _recompute(world) == Recompute(
        3, NOW + 60, None, 2 * policy.PAGE + 1, NOW + 60 + 30 * 3, NOW + 60 + 30 * 3
    )


def test_a_change_made_during_a_page_stops_the_run_at_the_end_of_that_page() -> None:
    world = _world(customers=2 * policy.PAGE)
    world.put({"churn_at": "scheduled"})

    def change_midway(customer_id: str) -> None:
        if customer_id == world.customers.ids[10]:
            world.put({"churn_at": "scheduled", "discounts": "none"})

    world.rederive.before = change_midway
    reports = _run_chain(world, 5)

    assert [r.state for r in reports] == ["superseded", "partial", "done"]
    assert reports[0].rederived == policy.PAGE
    # The rest of that page was re-derived with the policy the run read; the newer change's
    # recompute then re-derives every customer, from the first, with its own.
    latest = RevenuePolicy(churn_at="scheduled", discounts="none")
    assert world.rederive.customer_ids()[policy.PAGE :] == world.customers.ids
    assert {p for _, _, p in world.rederive.calls[policy.PAGE :]} == {latest}
    assert _recompute(world).customers_done == 2 * policy.PAGE


def test_an_operator_recomputes_again_under_the_policy_in_force() -> None:
    world = _world(customers=policy.PAGE + 1)
    world.put({"churn_at": "scheduled"})
    _run_chain(world, 5)
    world.clock.now += 3600
    world.rederive.calls.clear()
    later = int(world.clock.now)

    answer = recompute_again("acme", tenants=world.tenants, queue=world.queue, now=later)
    reports = _run_chain(world, 5)

    assert answer["document"] == SCHEDULED.to_json()
    assert (answer["recompute"]["state"], answer["recompute"]["config_version"]) == ("recomputing", 3)
    assert [r.state for r in reports] == ["done"]
    assert world.rederive.calls == [(c, later, SCHEDULED) for c in world.customers.ids]
    with pytest.raises(RevsyncError) as nobody:
        recompute_again("nobody", tenants=world.tenants, queue=world.queue, now=NOW)
    assert (status_of(nobody.value), nobody.value.code, world.queue.jobs) == (404, "tenant_not_found", [])


# --- the schedule's review -----------------------------------------------------------------------


def test_the_schedule_re_derives_only_the_customers_due_as_of_its_time() -> None:
    world = _world()
    world.customers.review_at = {"cus_a": NOW - 3600, "cus_b": NOW, "cus_c": NOW + 1, "cus_d": NOW - 60}

    report = review("acme", world.ports, world.queue, lambda: False)

    assert (report.reviewed, report.complete, report.recompute_taken_over) == (3, True, False)
    assert world.rederive.calls == [(c, NOW, DEFAULT_POLICY) for c in ("cus_a", "cus_d", "cus_b")]
    world.clock.now += 1  # the next period, as far as cus_c is concerned
    world.rederive.calls.clear()
    assert review("acme", world.ports, world.queue, lambda: False).reviewed == 1
    assert world.rederive.calls == [("cus_c", NOW + 1, DEFAULT_POLICY)]
    assert world.queue.jobs == []


def test_a_review_cut_by_its_deadline_leaves_the_rest_to_the_next_period() -> None:
    world = _world()
    world.customers.review_at = {f"cus_{n:03d}": NOW - 1000 + n for n in range(policy.REVIEW_BATCH + 20)}
    looks = [0]

    def out_of_time() -> bool:
        looks[0] += 1
        return looks[0] > 31  # the first look, then thirty customers

    first = review("acme", world.ports, world.queue, out_of_time)
    rest = review("acme", world.ports, world.queue, lambda: False)

    assert (first.reviewed, first.complete) == (30, False)
    assert (rest.reviewed, rest.complete) == (policy.REVIEW_BATCH - 10, True)
    assert sorted(world.rederive.customer_ids()) == sorted(world.customers.review_at)


def test_a_customer_whose_review_does_not_move_is_re_derived_once_a_run() -> None:
    world = _world()
    world.customers.review_at = {"cus_stuck": NOW - 10, "cus_ok": NOW - 5}
    world.rederive.moves_review = False  # still due after its re-derivation

    assert review("acme", world.ports, world.queue, lambda: False).reviewed == 2
    assert world.rederive.customer_ids() == ["cus_stuck", "cus_ok"]


def test_one_customers_failed_review_is_left_due_and_the_others_are_reviewed() -> None:
    world = _world()
    world.customers.review_at = {"cus_a": NOW - 30, "cus_bad": NOW - 20, "cus_c": NOW - 10}

    def fails(customer_id: str) -> None:
        if customer_id == "cus_bad":
            raise RuntimeError("cannot re-derive")

    world.rederive.before = fails
    report = review("acme", world.ports, world.queue, lambda: False)

    assert (report.reviewed, report.failed, report.complete) == (2, 1, True)
    assert world.rederive.customer_ids() == ["cus_a", "cus_c"]
    assert world.customers.review_at["cus_bad"] == NOW - 20  # still due: the next period tries again


def test_a_recompute_whose_jobs_were_lost_is_taken_over_by_the_schedule() -> None:
    world = _world(customers=policy.PAGE + 3)
    world.put({"churn_at": "scheduled"})
    job = world.queue.take()
    assert isinstance(job, RecomputeJob)
    run_recompute(job, world.ports, world.queue, _pages(1))
    world.queue.jobs.clear()  # the continuation went to the dead-letter queue
    world.clock.now += CLAIM_STALE_SECONDS - 1

    assert not review("acme", world.ports, world.queue, lambda: False).recompute_taken_over
    world.clock.now += 1
    assert review("acme", world.ports, world.queue, lambda: False).recompute_taken_over

    [taken_over] = world.queue.jobs
    assert isinstance(taken_over, RecomputeJob)
    cursor = world.customers.ids[policy.PAGE - 1]
    assert taken_over == RecomputeJob("acme", 2, int(world.clock.now), cursor, taken_over.token)
    _run_chain(world, 1)
    assert world.rederive.customer_ids() == world.customers.ids
    assert _recompute(world).state == "done"
    assert not review("acme", world.ports, world.queue, lambda: False).recompute_taken_over


# --- the consumer's jobs ------------------------------------------------------------------------------


def test_the_schedules_job_catches_up_then_reviews_and_a_requested_one_only_catches_up() -> None:
    world = _world(customers=3)
    world.customers.review_at = {"cus_0001": NOW - 5}
    catch_up = ReconcilePorts(world.tenants, world.customers, FakeStripe(), FakeEventsProgress(), world.clock)

    requested = jobs.run(
        CatchUpJob("acme", "request", NOW, "t"), catch_up, world.ports, world.queue, lambda: False
    )
    assert (requested["state"], "review" in requested, world.rederive.calls) == ("done", False, [])

    scheduled = jobs.run(
        CatchUpJob("acme", "schedule", NOW), catch_up, world.ports, world.queue, lambda: False
    )
    assert (scheduled["state"], scheduled["review"]["reviewed"]) == ("done", 1)
    assert world.rederive.customer_ids() == ["cus_0001"]

    world.put({"churn_at": "scheduled"})
    recompute = world.queue.take()
    assert recompute is not None
    assert jobs.run(recompute, catch_up, world.ports, world.queue, lambda: False)["state"] == "done"
    assert world.rederive.customer_ids() == ["cus_0001", *world.customers.ids]
