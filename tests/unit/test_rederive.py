"""``rederive``: one customer derived again from its stored observations, by the tenant's current
policy, as of an injected now (a policy change's recompute; the review of signals that turn by time
alone). No Stripe call; a save only when something changed; a webhook applied meanwhile never lost."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from revsync.domain.changes import RECORD_CHANGED, RISK_CHANGED
from revsync.domain.events import Observation
from revsync.domain.history import mrr_timeline, revenue_totals
from revsync.domain.history_archive import SPILL_AT
from revsync.domain.policy import DEFAULT_POLICY, RevenuePolicy
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.stored_state import StateWrite
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation, rederive

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeFeed, FakeStripe, FakeTenants

T0 = 1_750_000_000
DAY = 86_400
BASE = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
LIST_PRICE = RevenuePolicy(discounts="none", churn_at="scheduled")


def _with_policy(policy: RevenuePolicy, tenant: Tenant = BASE) -> Tenant:
    """The tenant once ``policy`` is saved (a policy change bumps the config version)."""
    return replace(tenant, policy=policy, config_version=tenant.config_version + 1)


def _customer(at: int) -> Observation:
    coupon = S.coupon(percent_off=50, id="co_half")
    raw = S.customer("cus_1", the_discount=S.discount(coupon, customer="cus_1"))
    return Observation(snapshot=parse_customer(raw), observed_at=at, source="updated", event_id=None)


def _subscription(at: int, quantity: int = 1, sub_id: str = "sub_1", **kwargs: Any) -> Observation:
    item = {**S.subscription_item(S.price(1000), quantity=quantity), "id": f"si_{sub_id}"}
    raw = S.subscription("cus_1", [item], id=sub_id, created=T0, **kwargs)
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source="updated", event_id=None)


def _apply(
    observation: Observation, customers: FakeCustomers, tenants: FakeTenants, feed: FakeFeed | None = None
) -> Any:
    return apply_observation(
        "acme",
        observation,
        tenants=tenants,
        customers=customers,
        stripe=FakeStripe(),
        clock=lambda: observation["observed_at"],
        changes=feed,
    )


def _rederive(customers: FakeCustomers, tenants: FakeTenants, now: int, feed: FakeFeed | None = None) -> Any:
    return rederive("acme", "cus_1", tenants=tenants, customers=customers, changes=feed, now=now)


def _story(customers: FakeCustomers, tenants: FakeTenants) -> list[Observation]:
    """A half-off customer whose seats change daily for weeks (its history archived in chunks), and
    a cancellation scheduled at the end."""
    seen = [_customer(T0)]
    seen += [_subscription(T0 + day * DAY, quantity=1 + day % 3) for day in range(1, 2 * SPILL_AT)]
    seen.append(_subscription(T0 + 2 * SPILL_AT * DAY, cancel_at_period_end=True, canceled_at=T0))
    for observation in seen:
        _apply(observation, customers, tenants)
    return seen


def _everything(customers: FakeCustomers) -> tuple[Any, ...]:
    return (
        customers.records[("acme", "cus_1")],
        customers.timeline("acme", "cus_1"),
        customers.revenue_totals("acme"),
    )


def test_a_policy_change_and_back_returns_every_record_history_point_and_month() -> None:
    customers, tenants, feed = FakeCustomers(), FakeTenants({"acme": BASE}), FakeFeed()
    seen = _story(customers, tenants)
    assert customers.archives[("acme", "cus_1")], "the history is archived in chunks"
    before = _everything(customers)
    now = T0 + 100 * DAY

    tenants.tenants["acme"] = _with_policy(LIST_PRICE)
    result = _rederive(customers, tenants, now, feed)
    assert (result.outcome, result.record_written) == ("applied", True)
    record, timeline, months = _everything(customers)
    assert timeline == tuple(mrr_timeline("cus_1", seen, LIST_PRICE))
    assert months == revenue_totals([timeline])
    assert (record["mrr"], record["churned"]) == (0, True)  # churned when scheduled
    [change] = feed.details
    assert (change["movement"], change["mrr"], change["observed_at"]) == (
        "churn",
        {"before": 500, "after": 0},
        now,
    )
    stored = customers.load("acme", "cus_1")
    assert (stored.policy, stored.config_version) == (LIST_PRICE, tenants.tenants["acme"].config_version)
    # Derived again with nothing new: nothing is written.
    writes = customers.writes
    assert _rederive(customers, tenants, now + DAY, feed).outcome == "unchanged"
    assert customers.writes == writes

    tenants.tenants["acme"] = _with_policy(DEFAULT_POLICY, tenants.tenants["acme"])
    assert _rederive(customers, tenants, now + 2 * DAY, feed).outcome == "applied"
    after = _everything(customers)
    assert after[1:] == before[1:]
    assert {**after[0], "revsync_version": None} == {**before[0], "revsync_version": None}
    assert [d["movement"] for d in feed.details] == ["churn", "reactivation"]


def test_a_customer_the_policy_does_not_move_is_saved_once_by_the_new_config() -> None:
    """Its record and pieces stay; the state records the config it was derived with (so its next
    event does not replay its history again), and no event is published."""
    customers, tenants, feed = FakeCustomers(), FakeTenants({"acme": BASE}), FakeFeed()
    _apply(_subscription(T0), customers, tenants)
    record = customers.records[("acme", "cus_1")]
    tenants.tenants["acme"] = _with_policy(RevenuePolicy(churn_after_days=30))

    assert _rederive(customers, tenants, T0 + DAY, feed).outcome == "applied"
    assert feed.published == []
    assert {**customers.records[("acme", "cus_1")], "revsync_version": 0} == {**record, "revsync_version": 0}
    assert customers.load("acme", "cus_1").config_version == tenants.tenants["acme"].config_version
    assert _rederive(customers, tenants, T0 + DAY, feed).outcome == "unchanged"


def test_nothing_stored_or_a_tenant_not_connected_changes_nothing() -> None:
    customers, feed = FakeCustomers(), FakeFeed()
    assert _rederive(customers, FakeTenants({"acme": BASE}), T0, feed).reason == "not_stored"
    _apply(_subscription(T0), customers, FakeTenants({"acme": BASE}))
    revoked = FakeTenants({"acme": replace(BASE, connection=Connection("revoked", "oauth", "acct_1"))})
    assert _rederive(customers, revoked, T0 + DAY, feed).outcome == "dropped"
    assert feed.published == []


def test_a_time_based_signal_is_raised_by_the_review_when_it_becomes_true() -> None:
    """A trial ending in 10 days and a subscription past due under a 7-day limit: the customer is due
    for review when each turns, and rederive at that (injected) time raises it once."""
    customers, feed = FakeCustomers(), FakeFeed()
    tenants = FakeTenants({"acme": _with_policy(RevenuePolicy(churn_after_days=7))})
    _apply(
        _subscription(T0, sub_id="sub_t", status="trialing", trial_end=T0 + 10 * DAY),
        customers,
        tenants,
        feed,
    )
    _apply(_subscription(T0 + 1, status="past_due"), customers, tenants, feed)
    assert customers.load("acme", "cus_1").review_at == T0 + 3 * DAY
    assert customers.due_for_review("acme", T0 + 3 * DAY - 1, 10) == []
    feed.published.clear()

    assert customers.due_for_review("acme", T0 + 3 * DAY, 10) == ["cus_1"]
    _rederive(customers, tenants, T0 + 3 * DAY, feed)
    assert [(kind, sorted(d["changed"])) for kind, d in feed.published] == [
        (RECORD_CHANGED, ["risk", "traits"]),
        (RISK_CHANGED, ["trial_ends_at"]),
    ]
    assert customers.records[("acme", "cus_1")]["risk"]["trial_ends_at"] == T0 + 10 * DAY
    assert customers.due_for_review("acme", T0 + 3 * DAY, 10) == []  # reviewed: next at the limit
    assert customers.load("acme", "cus_1").review_at == T0 + 1 + 7 * DAY

    # Reviewed again before it is due: nothing changes, nothing is published.
    feed.published.clear()
    assert _rederive(customers, tenants, T0 + 5 * DAY, feed).outcome == "unchanged"
    assert feed.published == []

    # The past-due limit passes: its MRR is lost then (the trial is still live), published as a churn.
    assert customers.due_for_review("acme", T0 + 1 + 7 * DAY, 10) == ["cus_1"]
    _rederive(customers, tenants, T0 + 1 + 7 * DAY, feed)
    record = customers.records[("acme", "cus_1")]
    assert (record["mrr"], record["subscriptions"]["sub_1"]["mrr"], record["churned"]) == (0, 0, False)
    assert [d["movement"] for d in feed.details] == ["churn"]
    assert customers.load("acme", "cus_1").review_at == T0 + 10 * DAY + 1  # the trial's end passing


class _CachedTenants(FakeTenants):
    """A worker's tenant cache: the tenant as read before the policy changed, until a newer config is
    asked for (store.tenants.CachedTenantStore)."""

    def __init__(self, cached: Tenant, current: Tenant) -> None:
        super().__init__({"acme": current})
        self.cached = cached

    def get(self, tenant_id: str, min_config_version: int = 0) -> Tenant | None:
        if self.cached.config_version >= min_config_version:
            return self.cached
        return super().get(tenant_id, min_config_version)


@dataclass
class _Interleaved(FakeCustomers):
    """The store, with ``between`` run (another worker's delivery) just before the next save."""

    between: list[Callable[[], None]] = field(default_factory=list)

    def save(self, write: StateWrite) -> int:
        if self.between:
            self.between.pop(0)()
        return super().save(write)


def test_a_webhook_applied_during_a_recompute_is_not_lost() -> None:
    customers, feed = _Interleaved(), FakeFeed()
    tenants = FakeTenants({"acme": BASE})
    seen = _story(customers, tenants)
    tenants.tenants["acme"] = _with_policy(LIST_PRICE)
    webhook = _subscription(T0 + 60 * DAY, quantity=5)  # unscheduled, five seats
    # Lands between the recompute's load and its save, applied by a worker that still has the old
    # policy (its state was not derived by the new one yet).
    stale = _CachedTenants(cached=BASE, current=tenants.tenants["acme"])
    customers.between.append(lambda: _apply(webhook, customers, stale, feed))

    result = _rederive(customers, tenants, T0 + 61 * DAY, feed)

    assert (result.outcome, result.conflicts) == ("applied", 1)  # loaded again, with the webhook
    assert customers.load("acme", "cus_1").policy == LIST_PRICE
    assert customers.timeline("acme", "cus_1") == tuple(mrr_timeline("cus_1", [*seen, webhook], LIST_PRICE))
    assert customers.records[("acme", "cus_1")]["mrr"] == 5000


def test_a_worker_that_read_the_old_policy_derives_by_the_new_one_once_the_state_has_it() -> None:
    customers, tenants = FakeCustomers(), FakeTenants({"acme": BASE})
    seen = _story(customers, tenants)
    tenants.tenants["acme"] = _with_policy(LIST_PRICE)
    _rederive(customers, tenants, T0 + 61 * DAY)

    webhook = _subscription(T0 + 62 * DAY, quantity=2, cancel_at_period_end=True, canceled_at=T0)
    stale = _CachedTenants(cached=BASE, current=tenants.tenants["acme"])
    _apply(webhook, customers, stale)

    stored = customers.load("acme", "cus_1")
    assert stored.policy == LIST_PRICE
    assert customers.timeline("acme", "cus_1") == tuple(mrr_timeline("cus_1", [*seen, webhook], LIST_PRICE))
