"""Risk signals through the write path (docs/contracts.md, "Revenue policy and risk signals"): on the
record and as ``stripe.risk.*`` traits, judged at the write path's clock, never before what was
observed of the customer (a Stripe test clock's time) nor before it was last judged."""

from __future__ import annotations

from typing import Any

from revsync.domain.events import Observation
from revsync.domain.risk import NO_RISK
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeFeed, FakeStripe, FakeTenants

T0 = 1_750_000_000
DAY = 86_400
TENANTS = FakeTenants({"acme": Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")})


def _customer(at: int, **kwargs: Any) -> Observation:
    raw = S.customer("cus_1", **kwargs)
    return Observation(snapshot=parse_customer(raw), observed_at=at, source="updated", event_id=None)


def _subscription(at: int, **kwargs: Any) -> Observation:
    item = {**S.subscription_item(S.price(1000)), "id": "si_1"}
    raw = S.subscription("cus_1", [item], id="sub_1", created=T0, **kwargs)
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source="updated", event_id=None)


def _apply(
    observation: Observation, customers: FakeCustomers, now: int, feed: FakeFeed | None = None
) -> None:
    apply_observation(
        "acme",
        observation,
        tenants=TENANTS,
        customers=customers,
        stripe=FakeStripe(),
        clock=lambda: now,
        changes=feed,
    )


def _risk(customers: FakeCustomers) -> dict[str, Any]:
    """The record's risk; its traits carry each raised signal, and no other."""
    record = customers.records[("acme", "cus_1")]
    raised = {f"stripe.risk.{k}": v for k, v in record["risk"].items() if v != NO_RISK[k]}  # type: ignore[literal-required]
    assert {k: v for k, v in record["traits"].items() if k.startswith("stripe.risk.")} == raised
    return dict(record["risk"])


def test_the_record_carries_its_risk_and_the_traits_say_it() -> None:
    customers = FakeCustomers()
    _apply(_customer(T0), customers, T0)
    assert _risk(customers) == NO_RISK
    _apply(_subscription(T0 + DAY, status="past_due", cancel_at_period_end=True), customers, T0 + DAY)
    assert _risk(customers) == {
        **NO_RISK,
        "in_dunning": True,
        "dunning_since": T0 + DAY,
        "cancel_scheduled_at": T0 + DAY,
        "mrr_at_risk": 1000,
    }


def test_a_trial_ending_soon_is_judged_at_the_clocks_time() -> None:
    """The same objects: a write 10 days before the trial ends says nothing; one 6 days before it
    (any change of the customer, here its name) raises it."""
    trial_end = T0 + 10 * DAY
    customers = FakeCustomers()
    _apply(_subscription(T0, status="trialing", trial_end=trial_end), customers, T0)
    assert _risk(customers)["trial_ends_at"] is None
    _apply(_customer(T0 + 4 * DAY, name="Ada"), customers, T0 + 4 * DAY)
    assert _risk(customers)["trial_ends_at"] == trial_end
    assert customers.load("acme", "cus_1").judged_at == T0 + 4 * DAY


def test_a_test_clock_customer_is_judged_in_its_clocks_time() -> None:
    """A Stripe test clock advanced a month ahead: its events carry the clock's time, which is the
    customer's now, whatever the wall clock says."""
    trial_end = T0 + 35 * DAY
    customers = FakeCustomers()
    _apply(_subscription(T0 + 30 * DAY, status="trialing", trial_end=trial_end), customers, now=T0)
    assert _risk(customers)["trial_ends_at"] == trial_end
    assert customers.load("acme", "cus_1").judged_at == T0 + 30 * DAY


def test_a_record_is_never_judged_before_it_was_last_judged() -> None:
    """A late event handled by a worker whose clock is behind (or an older delivery): the record
    stays judged at the later time, so a signal does not flip back and forth."""
    trial_end = T0 + 10 * DAY
    customers = FakeCustomers()
    _apply(_subscription(T0, status="trialing", trial_end=trial_end), customers, T0 + 4 * DAY)
    assert _risk(customers)["trial_ends_at"] == trial_end
    _apply(_customer(T0 + DAY, name="Ada"), customers, T0 + DAY)
    assert _risk(customers)["trial_ends_at"] == trial_end
    assert customers.load("acme", "cus_1").judged_at == T0 + 4 * DAY
