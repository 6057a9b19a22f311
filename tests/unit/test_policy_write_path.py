"""The write path applies the tenant's revenue policy (docs/contracts.md, "Revenue policy and risk
signals"): the record, the MRR history's pieces (state and archives) and so the months are derived
by it, and a customer whose pieces were made by another policy has all of them replayed by the
tenant's at its next write."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from revsync.domain.events import Observation
from revsync.domain.history import mrr_timeline, revenue_totals
from revsync.domain.history_archive import SPILL_AT
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

T0 = 1_750_000_000
DAY = 86_400
LIST_PRICE = RevenuePolicy(discounts="none")
SCHEDULED = RevenuePolicy(churn_at="scheduled")


def _tenant(policy: RevenuePolicy = DEFAULT_POLICY, moved: int = 0) -> Tenant:
    """The tenant with ``policy``; ``moved``: its config saved that many times more (a policy change
    bumps the config version)."""
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    return replace(tenant, policy=policy, config_version=tenant.config_version + moved)


def _subscription(at: int, quantity: int = 1, **kwargs: Any) -> Observation:
    item = {**S.subscription_item(S.price(1000), quantity=quantity), "id": "si_1"}
    raw = S.subscription("cus_1", [item], id="sub_1", created=T0, **kwargs)
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source="updated", event_id=None)


def _half_off_customer(at: int) -> Observation:
    coupon = S.coupon(percent_off=50, id="co_half")
    raw = S.customer("cus_1", the_discount=S.discount(coupon, customer="cus_1"))
    return Observation(snapshot=parse_customer(raw), observed_at=at, source="updated", event_id=None)


def _apply(observation: Observation, customers: FakeCustomers, tenant: Tenant) -> None:
    apply_observation(
        "acme",
        observation,
        tenants=FakeTenants({"acme": tenant}),
        customers=customers,
        stripe=FakeStripe(),
        clock=lambda: observation["observed_at"],  # delivered as it happened
    )


def test_a_scheduled_cancellation_is_churn_under_churn_at_scheduled() -> None:
    """ChartMogul recognises churn when the cancellation is scheduled: the record and its history say
    so at the time it was asked for (Stripe's canceled_at); the default waits for the end."""
    observations = [
        _subscription(T0),
        _subscription(T0 + DAY, cancel_at_period_end=True, canceled_at=T0 + DAY),
    ]
    for policy, churned, timeline in (
        (DEFAULT_POLICY, False, [(T0, "usd", 1000)]),
        (SCHEDULED, True, [(T0, "usd", 1000), (T0 + DAY, "usd", 0)]),
    ):
        customers = FakeCustomers()
        for observation in observations:
            _apply(observation, customers, _tenant(policy))
        record = customers.records[("acme", "cus_1")]
        assert (record["churned"], record["mrr"]) == (churned, 0 if churned else 1000)
        assert record["churned_at"] == (T0 + DAY if churned else None)
        assert list(customers.timeline("acme", "cus_1") or ()) == timeline
        assert customers.load("acme", "cus_1").policy == policy


def test_a_policy_change_replays_every_piece_at_the_next_write() -> None:
    """Years of changes (archived in chunks) made by the default policy; the tenant moves to list
    prices, then back: each next write replays the whole history by the tenant's policy, so the
    timeline and the months are what the observations give by it."""
    customers = FakeCustomers()
    seen = [_half_off_customer(T0)]
    _apply(seen[0], customers, _tenant())
    for day in range(1, 2 * SPILL_AT):
        seen.append(_subscription(T0 + day * DAY, quantity=1 + day % 3))
        _apply(seen[-1], customers, _tenant())
    assert customers.archives[("acme", "cus_1")], "the history is archived in chunks"
    default_timeline = customers.timeline("acme", "cus_1")
    assert default_timeline == tuple(mrr_timeline("cus_1", seen))

    for moved, policy in enumerate((LIST_PRICE, DEFAULT_POLICY), start=1):
        seen.append(_subscription(T0 + (2 * SPILL_AT + moved) * DAY, quantity=2))
        _apply(seen[-1], customers, _tenant(policy, moved))
        expected = tuple(mrr_timeline("cus_1", seen, policy))
        assert customers.timeline("acme", "cus_1") == expected
        assert customers.revenue_totals("acme") == revenue_totals([expected])
        assert customers.records[("acme", "cus_1")]["mrr"] == (2000 if policy == LIST_PRICE else 1000)
        assert customers.load("acme", "cus_1").policy == policy
    assert tuple(mrr_timeline("cus_1", seen[:-2])) == default_timeline


def test_days_past_due_count_from_the_first_past_due_observation_kept() -> None:
    """ChartMogul and Baremetrics churn a subscription past due longer than the chosen days: the run
    is dated by the history's first past_due observation (a re-read later does not move it), so a
    re-read after the limit churns it at the limit."""
    customers, tenant = FakeCustomers(), _tenant(RevenuePolicy(churn_after_days=7))
    _apply(_subscription(T0), customers, tenant)
    _apply(_subscription(T0 + DAY, status="past_due"), customers, tenant)
    _apply(_subscription(T0 + 3 * DAY, status="past_due"), customers, tenant)
    record = customers.records[("acme", "cus_1")]
    assert (record["mrr"], record["churned"]) == (1000, False)
    # Read again once the limit passed (the same past_due subscription: no new run).
    _apply(_subscription(T0 + 10 * DAY, status="past_due", quantity=2), customers, tenant)
    record = customers.records[("acme", "cus_1")]
    assert (record["mrr"], record["churned"], record["churned_at"]) == (0, True, T0 + 8 * DAY)
