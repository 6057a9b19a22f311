"""The one write path, with in-memory tenants, customers and Stripe."""

from __future__ import annotations

from typing import Any

import pytest
from revsync.domain.events import Observation, Source
from revsync.domain.history import Contribution
from revsync.domain.snapshots import parse_customer, parse_subscription
from revsync.domain.stored_state import ConcurrentUpdate
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import RetryLater, apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeFeed, FakeStripe, FakeTenants


def _tenants(trait: str = "metadata.app_id") -> FakeTenants:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config(trait)
    return FakeTenants({"acme": tenant})


def _customer(at: int, source: Source = "updated", **kwargs: Any) -> Observation:
    return Observation(
        snapshot=parse_customer(S.customer("cus_1", **kwargs)), observed_at=at, source=source, event_id=None
    )


def _sub(raw: dict[str, Any], at: int, source: Source = "updated") -> Observation:
    return Observation(snapshot=parse_subscription(raw), observed_at=at, source=source, event_id=None)


def _apply(
    observation: Observation,
    customers: FakeCustomers,
    tenants: FakeTenants | None = None,
    stripe: FakeStripe | None = None,
) -> Any:
    return apply_observation(
        "acme",
        observation,
        tenants=tenants or _tenants(),
        customers=customers,
        stripe=stripe or FakeStripe(),
        clock=lambda: 10_000,
    )


def test_unknown_or_disconnected_tenant_is_dropped() -> None:
    customers = FakeCustomers()
    revoked = FakeTenants({"acme": Tenant("acme", Connection("revoked", "oauth", "acct_1"))})
    assert _apply(_customer(1), customers, tenants=FakeTenants()).outcome == "dropped"
    assert _apply(_customer(1), customers, tenants=revoked).outcome == "dropped"
    assert customers.writes == 0


def test_unchanged_projection_costs_no_record_write() -> None:
    customers = FakeCustomers()
    _apply(_customer(1, metadata={"app_id": "u-1"}), customers)
    writes = customers.writes
    result = _apply(_customer(2, metadata={"app_id": "u-1"}), customers)  # newer, identical content
    assert result.outcome == "applied"
    assert not result.record_written
    assert customers.writes == writes + 1  # the watermark moved; the record did not


def test_duplicate_costs_one_read_and_no_write() -> None:
    customers = FakeCustomers()
    observation = _customer(1, metadata={"app_id": "u-1"})
    _apply(observation, customers)
    _apply(_customer(2, metadata={"app_id": "u-1"}), customers)  # state moves, the record does not
    writes, reads = customers.writes, customers.reads
    result = _apply(observation, customers)
    assert (result.outcome, result.record_written) == ("unchanged", False)
    assert customers.writes == writes
    assert customers.reads == reads + 2  # the state, and the record's version


class FailingProjection(FakeCustomers):
    """The state write succeeds; the record projection fails (a crash between the two writes)."""

    failing: bool = False

    def project(self, record: Any, version: int, previous_external_id: str | None, *, repair: bool) -> bool:
        if self.failing:
            raise RuntimeError("DynamoDB unavailable")
        return super().project(record, version, previous_external_id, repair=repair)


def test_a_record_lagging_its_state_is_repaired_by_any_later_delivery() -> None:
    """Regression: a message parked after its state write, redriven with receive count 1, used to
    see "unchanged" and leave the record stale forever."""
    customers = FailingProjection()
    _apply(_customer(1, metadata={"app_id": "u-1"}), customers)
    customers.failing = True
    with pytest.raises(RuntimeError):
        _apply(_customer(5, metadata={"app_id": "u-1"}, name="Ada"), customers)
    assert customers.records[("acme", "u-1")]["traits"].get("stripe.name") is None
    customers.failing = False
    # The redriven message: the state already has it, so the observation itself is "unchanged".
    result = _apply(_customer(5, metadata={"app_id": "u-1"}, name="Ada"), customers)
    assert (result.outcome, result.reason, result.record_written) == ("unchanged", "record_repaired", True)
    assert customers.records[("acme", "u-1")]["traits"]["stripe.name"] == "Ada"


def test_same_second_tie_is_settled_by_a_fetch() -> None:
    customers = FakeCustomers()
    sub_raw = S.subscription("cus_1", id="sub_1", status="active")
    truth = {**sub_raw, "status": "past_due"}
    stripe = FakeStripe(objects={"sub_1": truth})
    _apply(_sub(sub_raw, 100), customers)
    result = _apply(_sub({**sub_raw, "status": "unpaid"}, 100), customers, stripe=stripe)
    assert (result.outcome, result.refetches) == ("applied", 1)
    assert stripe.fetches == ["sub_1"]
    stored = customers.states[("acme", "cus_1")].objects.subscriptions["sub_1"]
    assert stored["snapshot"]["object"] == "subscription"
    assert (stored["snapshot"]["status"], stored["source"], stored["observed_at"]) == (
        "past_due",
        "fetched",
        10_000,
    )


def test_concurrent_update_reloads_and_retries() -> None:
    customers = FakeCustomers()
    _apply(_customer(1, metadata={"app_id": "u-1"}), customers)
    real_save, calls = customers.save, {"n": 0}

    def racing_save(*args: Any, **kwargs: Any) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConcurrentUpdate("someone else")
        return real_save(*args, **kwargs)

    customers.save = racing_save  # type: ignore[method-assign]
    result = _apply(_customer(5, name="Ada", metadata={"app_id": "u-1"}), customers)
    assert (result.outcome, result.conflicts, result.record_written) == ("applied", 1, True)
    assert customers.records[("acme", "u-1")]["traits"]["stripe.name"] == "Ada"


def test_endless_conflicts_become_retry_later() -> None:
    customers = FakeCustomers()

    def always_conflicts(*args: Any, **kwargs: Any) -> int:
        raise ConcurrentUpdate("busy")

    customers.save = always_conflicts  # type: ignore[method-assign]
    with pytest.raises(RetryLater):
        _apply(_customer(1), customers)


def test_record_moves_when_the_trait_value_appears() -> None:
    customers = FakeCustomers()
    _apply(_customer(1), customers)
    assert ("acme", "stripe:cus_1") in customers.records
    _apply(_customer(2, metadata={"app_id": "u-1"}), customers)
    assert ("acme", "stripe:cus_1") not in customers.records
    record = customers.records[("acme", "u-1")]
    assert (record["matched"], record["stripe_customer_id"]) == (True, "cus_1")


def test_config_change_rekeys_on_the_next_observation() -> None:
    customers = FakeCustomers()
    _apply(_customer(1, email="ada@example.com", metadata={"app_id": "u-1"}), customers)
    by_email = _tenants("email")
    by_email.tenants["acme"] = Tenant("acme", Connection("connected", "oauth", "acct_1"), "email", 2)
    result = _apply(
        _customer(1, email="ada@example.com", metadata={"app_id": "u-1"}), customers, tenants=by_email
    )
    assert result.record_written
    assert set(customers.records) == {("acme", "ada@example.com")}


def test_a_read_to_settle_a_tie_counts_as_newer_than_what_was_received_whatever_our_clock() -> None:
    """Regression: with Stripe's clock ahead of ours, the read was stamped older than the tie it was
    meant to settle and was ignored, leaving the first of two same-second snapshots."""
    ahead = 10_000 + 86_400  # Stripe's event time, a day ahead of our clock (10_000)
    stripe = FakeStripe()
    two = S.subscription(
        "cus_1", [S.subscription_item(S.price(1000), quantity=2)], id="sub_1", status="active"
    )
    seven = {**two, "items": {**two["items"], "data": [{**two["items"]["data"][0], "quantity": 7}]}}
    stripe.objects["sub_1"] = seven
    customers, tenants = FakeCustomers(), _tenants("id")  # keyed by the Stripe id: no customer needed
    _apply(_sub(two, ahead), customers, tenants, stripe=stripe)
    result = _apply(_sub(seven, ahead), customers, tenants, stripe=stripe)  # same second, new content
    assert (result.outcome, result.refetches) == ("applied", 1)
    [record] = customers.records.values()
    assert record["mrr"] == 7000


# --- a record keyed by a customer trait waits for the customer object ------------------------------


_ACTIVE = S.subscription("cus_1", [S.subscription_item(S.price(1000))], id="sub_1", status="active")


def _active(at: int) -> Observation:
    return _sub(_ACTIVE, at, source="created")


def test_a_subscription_before_its_customer_keeps_its_state_and_waits_for_the_record_key() -> None:
    """Stripe sends customer.created and customer.subscription.created in any order: the record is
    projected once, at the trait's key, when the customer arrives (no stripe: record that moves)."""
    customers, feed = FakeCustomers(), FakeFeed()
    first = apply_observation(
        "acme", _active(100), tenants=_tenants(), customers=customers, stripe=FakeStripe(), changes=feed
    )
    assert (first.outcome, first.record_written) == ("applied", False)
    assert customers.records == {}
    assert feed.details == []
    stored = customers.load("acme", "cus_1")
    assert set(stored.objects.subscriptions) == {"sub_1"}
    assert stored.record_version == 0
    assert customers.revenue_totals("acme") == {"usd": {"1970-01": Contribution(new=1000, new_customers=1)}}
    # Delivered again: nothing to repair, no read of a record that does not exist.
    reads = customers.reads
    again = apply_observation(
        "acme", _active(100), tenants=_tenants(), customers=customers, stripe=FakeStripe(), changes=feed
    )
    assert again.outcome == "unchanged", again
    assert customers.reads == reads + 1

    apply_observation(
        "acme",
        _customer(100, source="created", metadata={"app_id": "u-1"}),
        tenants=_tenants(),
        customers=customers,
        stripe=FakeStripe(),
        changes=feed,
    )
    assert set(customers.records) == {("acme", "u-1")}
    assert customers.records[("acme", "u-1")]["mrr"] == 1000
    [published] = feed.details
    assert (published["external_id"], published["movement"]) == ("u-1", "new")


def test_a_record_keyed_by_the_stripe_id_does_not_wait() -> None:
    customers = FakeCustomers()
    _apply(_active(100), customers, _tenants("id"))
    assert customers.records[("acme", "cus_1")]["mrr"] == 1000


def test_a_backfilled_subscription_of_an_unlisted_customer_is_kept_unmatched_and_followed() -> None:
    """A backfill lists customers before subscriptions: a customer it did not list (deleted before)
    will not arrive, so its record is stripe:<id>; later events keep updating that record."""
    customers = FakeCustomers()
    apply_observation(
        "acme", _active(100), tenants=_tenants(), customers=customers, stripe=FakeStripe(), imported=True
    )
    assert customers.records[("acme", "stripe:cus_1")]["matched"] is False
    raw = S.subscription(
        "cus_1", [S.subscription_item(S.price(1000), quantity=2)], id="sub_1", status="active"
    )
    _apply(_sub(raw, 200), customers)
    assert customers.records[("acme", "stripe:cus_1")]["mrr"] == 2000
