"""Refunds and credit notes against paid invoices (revsync.domain.refunds), and test-clock ordering."""

from __future__ import annotations

import json
from typing import Any

import pytest
from revsync.domain.events import event_from_dict, observation_of
from revsync.domain.refunds import total_refunded
from revsync.domain.snapshots import parse_charge, parse_credit_note, parse_invoice
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants


@pytest.fixture(params=["current", "legacy"])
def shape(request: pytest.FixtureRequest) -> S.Shape:
    return request.param  # type: ignore[no-any-return]


def _paid(shape: S.Shape) -> dict[str, Any]:
    return S.invoice("cus_1", "sub_1", amount_paid=5000, shape=shape, id="in_1", payment_intent="pi_1")


def _charge(shape: S.Shape, refunded: int) -> dict[str, Any]:
    return S.charge(
        "cus_1",
        amount=5000,
        amount_refunded=refunded,
        payment_intent="pi_1",
        invoice_id="in_1",
        shape=shape,
        id="ch_1",
    )


def _total(invoices: list[dict[str, Any]], notes: list[dict[str, Any]], charges: list[dict[str, Any]]) -> int:
    found = [c for c in map(parse_charge, charges) if c is not None]
    return total_refunded(map(parse_invoice, invoices), map(parse_credit_note, notes), found)


def test_a_credit_notes_refund_and_its_charges_refund_are_the_same_money(shape: S.Shape) -> None:
    note = S.credit_note("cus_1", "in_1", amount=1200, refund_amount=1200, shape=shape)
    assert _total([_paid(shape)], [note], []) == 1200  # the charge's event not seen yet
    assert _total([_paid(shape)], [], [_charge(shape, 1200)]) == 1200  # the note's not seen yet
    assert _total([_paid(shape)], [note], [_charge(shape, 1200)]) == 1200  # both: once
    # A later refund of the charge on its own counts too.
    assert _total([_paid(shape)], [note], [_charge(shape, 2000)]) == 2000


def test_credit_to_the_balance_counts_until_voided() -> None:
    note = S.credit_note("cus_1", "in_1", amount=700)
    assert _total([_paid("current")], [note], []) == 700
    assert _total([_paid("current")], [{**note, "status": "void"}], []) == 0
    # Part refunded, part credited, part returned out of band.
    mixed = {
        **S.credit_note("cus_1", "in_1", amount=1000, refund_amount=400),
        "out_of_band_amount": 100,
    }
    assert _total([_paid("current")], [mixed], [_charge("current", 400)]) == 1000


def test_a_pre_payment_credit_note_and_an_unrelated_charge_count_nothing() -> None:
    pre = {**S.credit_note("cus_1", "in_1", amount=300), "post_payment_amount": 0, "type": "pre_payment"}
    one_off = S.charge("cus_1", amount=900, amount_refunded=900, payment_intent="pi_other")
    assert _total([_paid("current")], [pre], [one_off]) == 0
    # A charge of no customer is nothing of revsync's.
    assert parse_charge(S.charge(None, amount=900, amount_refunded=900)) is None


def test_the_record_shows_net_paid_as_a_field_and_a_trait() -> None:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    tenants, customers, stripe = FakeTenants({"acme": tenant}), FakeCustomers(), FakeStripe()
    note = S.credit_note("cus_1", "in_1", amount=1000, refund_amount=1000, id="cn_1")
    for kind, obj, at in [
        ("invoice.paid", _paid("current"), 100),
        ("credit_note.created", note, 200),
        ("charge.refunded", _charge("current", 1000), 200),
        ("charge.refunded", _charge("current", 1000), 200),
        ("credit_note.created", note, 200),
    ]:
        observation = observation_of(event_from_dict(S.event(kind, obj, created=at)))
        assert observation is not None
        apply_observation("acme", observation, tenants=tenants, customers=customers, stripe=stripe)
    (record,) = customers.records.values()
    assert (record["total_paid"], record["total_refunded"], record["net_paid"]) == (5000, 1000, 4000)
    assert record["traits"]["stripe.net_paid"] == 4000


def test_a_test_clock_objects_read_is_stamped_by_the_clocks_time_not_the_wall_clocks() -> None:
    """A clock frozen years back: a same-second tie is settled by a read from Stripe, and the clock's
    later events (still years before the wall clock) must still apply."""
    wall = 1_900_000_000
    frozen = 1_600_000_000
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("id")
    customer = {**S.customer("cus_1"), "test_clock": "clock_1"}

    def subscription(quantity: int, at: int) -> dict[str, Any]:
        item = {**S.subscription_item(S.price(1000), quantity=quantity, period_start=at), "id": "si_1"}
        return {**S.subscription("cus_1", [item], id="sub_1", period_start=at), "test_clock": "clock_1"}

    # When read, the clock has moved an hour past the tie: the read is stamped with the clock's time.
    clock_1 = {"id": "clock_1", "object": "test_helpers.test_clock", "frozen_time": frozen + 3_600}
    stripe = FakeStripe(objects={"sub_1": subscription(2, frozen), "clock_1": clock_1})
    tenants, customers = FakeTenants({"acme": tenant}), FakeCustomers()
    events = [
        ("customer.created", customer, frozen),
        ("customer.subscription.updated", subscription(1, frozen), frozen),
        ("customer.subscription.updated", subscription(2, frozen), frozen),  # a tie: read from Stripe
        ("customer.subscription.updated", subscription(3, frozen + 86_400), frozen + 86_400),
    ]
    read_at: list[int] = []
    for kind, obj, at in events:
        raw = json.loads(json.dumps(S.event(kind, obj, created=at)))
        observation = observation_of(event_from_dict(raw))
        assert observation is not None
        apply_observation(
            "acme", observation, tenants=tenants, customers=customers, stripe=stripe, clock=lambda: wall
        )
        stored = customers.load("acme", "cus_1").objects.subscriptions.get("sub_1")
        read_at.append(stored["observed_at"] if stored else 0)
    assert stripe.fetches == ["clock_1", "sub_1"]  # the clock first: the read is no older than its stamp
    assert read_at[1:] == [frozen, frozen + 3_600, frozen + 86_400]
    (record,) = customers.records.values()
    assert record["mrr"] == 3000
    assert all(
        o["observed_at"] <= frozen + 86_400
        for o in customers.load("acme", "cus_1").objects.subscriptions.values()
    )
