"""Parsing Stripe events and routing them to snapshots, in both API shapes."""

from __future__ import annotations

import json

import pytest
from revsync.domain.events import (
    HANDLED_EVENT_TYPES,
    EventError,
    StripeEvent,
    envelope_for,
    message_group,
    observation_of,
    parse_event,
    parse_queue_message,
)

from local import stripe_shapes as S


def _parse(event: dict[str, object]) -> StripeEvent:
    return parse_event(json.dumps(event).encode())


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (b"not json", "malformed_json"),
        (b"\xff\xfe", "malformed_json"),
        (b"[]", "not_an_event"),
        (b'{"object": "customer"}', "not_an_event"),
        (b'{"object": "event", "type": "x", "created": 1, "data": {"object": {}}}', "invalid_event"),
        (b'{"object": "event", "id": "evt_1", "created": 1, "data": {"object": {}}}', "invalid_event"),
        (
            b'{"object": "event", "id": "evt_1", "type": "x", "created": "1", "data": {"object": {}}}',
            "invalid_event",
        ),
        (b'{"object": "event", "id": "evt_1", "type": "x", "created": 1, "data": []}', "invalid_event"),
    ],
)
def test_bad_bodies(body: bytes, code: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_event(body)
    assert caught.value.code == code


def test_handled_types_are_the_contract_subset() -> None:
    assert {
        "customer.created",
        "customer.updated",
        "customer.deleted",
        "customer.subscription.created",
        "customer.subscription.updated",
        "customer.subscription.deleted",
        "invoice.paid",
        "invoice.payment_succeeded",
    } <= HANDLED_EVENT_TYPES
    assert "charge.succeeded" not in HANDLED_EVENT_TYPES
    unhandled = _parse(S.event("charge.succeeded", {"id": "ch_1"}, created=1))
    assert observation_of(unhandled) is None


@pytest.mark.parametrize("shape", ["current", "legacy"])
def test_subscription_event_becomes_an_observation(shape: S.Shape) -> None:
    sub = S.subscription(
        "cus_1", status="trialing", trial_end=1_700_500_000, shape=shape, period_end=1_702_000_000
    )
    event = _parse(S.event("customer.subscription.updated", sub, created=1_700_000_050, account="acct_1"))
    observation = observation_of(event)
    assert observation is not None
    snapshot = observation["snapshot"]
    assert snapshot["object"] == "subscription"
    assert (snapshot["id"], snapshot["customer"], snapshot["status"]) == (sub["id"], "cus_1", "trialing")
    assert snapshot["current_period_end"] == 1_702_000_000
    assert snapshot["trial_end"] == 1_700_500_000
    assert observation["observed_at"] == 1_700_000_050
    assert observation["source"] == "updated"


@pytest.mark.parametrize("shape", ["current", "legacy"])
def test_invoice_subscription_and_lines_in_both_shapes(shape: S.Shape) -> None:
    invoice = S.invoice(
        "cus_1", "sub_9", amount_paid=4200, paid_at=1_700_000_999, period_end=1_705_000_000, shape=shape
    )
    observation = observation_of(_parse(S.event("invoice.paid", invoice, created=5)))
    assert observation is not None
    snapshot = observation["snapshot"]
    assert snapshot["object"] == "invoice"
    assert snapshot["subscription"] == "sub_9"
    assert snapshot["lines"] == [{"subscription": "sub_9", "period_end": 1_705_000_000}]
    assert (snapshot["amount_paid"], snapshot["paid_at"], snapshot["status"]) == (4200, 1_700_000_999, "paid")


def test_customer_deleted_event_marks_the_snapshot_deleted() -> None:
    observation = observation_of(_parse(S.event("customer.deleted", S.customer("cus_1"), created=9)))
    assert observation is not None
    snapshot = observation["snapshot"]
    assert snapshot["object"] == "customer"
    assert snapshot["deleted"] is True
    assert observation["source"] == "deleted"


def test_object_without_customer_is_invalid() -> None:
    sub = S.subscription("cus_1")
    del sub["customer"]
    with pytest.raises(EventError) as caught:
        observation_of(_parse(S.event("customer.subscription.updated", sub, created=1)))
    assert caught.value.code == "invalid_object"


def test_envelope_round_trip_and_group() -> None:
    event = _parse(
        S.event("customer.updated", S.customer("cus_7", email="x@example.com"), created=3, account="acct_1")
    )
    envelope = envelope_for(event, "acme")
    assert envelope is not None
    assert message_group(envelope, 8) == message_group(envelope, 8) in {f"acme#{n}" for n in range(8)}
    assert parse_queue_message(json.dumps(envelope)) == envelope
    with pytest.raises(EventError):
        parse_queue_message('{"v": 99}')


def test_decimal_fields_as_the_stripe_sdk_returns_them_are_read() -> None:
    """Regression: StripeObject.to_dict() gives ``unit_amount_decimal`` as Decimal, not text."""
    from decimal import Decimal

    from revsync.domain.snapshots import parse_subscription

    sub = S.subscription("cus_1", [S.subscription_item(S.price(1234))], status="active")
    sub["items"]["data"][0]["price"]["unit_amount_decimal"] = Decimal("1234.5")
    price = parse_subscription(sub)["items"][0]["price"]
    assert price is not None
    assert price["unit_amount"] == "1234.5"


def test_a_tenants_customers_share_its_message_groups_and_a_customer_keeps_one() -> None:
    def group(tenant_id: str, customer_id: str, groups: int = 8) -> str:
        event = _parse(S.event("customer.updated", S.customer(customer_id), created=3, account="acct_1"))
        envelope = envelope_for(event, tenant_id)
        assert envelope is not None
        return message_group(envelope, groups)

    customers = [f"cus_{n:04d}" for n in range(400)]
    groups = {group("acme", c) for c in customers}
    assert groups == {f"acme#{n}" for n in range(8)}  # all eight used, none other
    assert all(group("acme", c) == group("acme", c) for c in customers[:20])
    assert {group("acme", c, groups=1) for c in customers} == {"acme#0"}
    # Any customer id (Stripe's are ASCII; a signed hostile body's may not be) gives a valid group id.
    assert group("acme", "cus_\ud800 é" * 40) in groups
    assert group("globex", customers[0]).startswith("globex#")


def test_what_risk_signals_read_is_routed_to_its_snapshots() -> None:
    """Failed payments, schedules and payment methods; an update of a paid invoice is nothing new
    (``invoice.paid`` carries a paid invoice), nor one of an invoice never attempted; a detached
    payment method names the customer it left only in ``previous_attributes``."""
    failed = {**S.invoice("cus_1", "sub_1", status="open", id="in_1"), "attempt_count": 2}
    for event_type in ("invoice.payment_failed", "invoice.updated", "invoice.voided"):
        observation = observation_of(_parse(S.event(event_type, failed, created=5)))
        assert observation is not None
        assert observation["snapshot"]["object"] == "invoice"
        assert observation["snapshot"].get("attempt_count") == 2
    paid = S.invoice("cus_1", "sub_1", id="in_2")
    assert observation_of(_parse(S.event("invoice.updated", paid, created=5))) is None
    # Nor is an invoice never attempted (a draft, one sent to be paid, voided before an attempt).
    for event_type in ("invoice.updated", "invoice.voided", "invoice.marked_uncollectible"):
        unattempted = {**failed, "attempt_count": 0, "status": "void" if "voided" in event_type else "open"}
        assert observation_of(_parse(S.event(event_type, unattempted, created=5))) is None
    paid_snapshot = observation_of(_parse(S.event("invoice.paid", paid, created=5)))
    assert paid_snapshot is not None
    assert "attempt_count" not in paid_snapshot["snapshot"]  # a paid invoice is kept as before

    phases = [S.schedule_phase("price_1", 10, 20), S.schedule_phase("price_2", 20, 30, quantity=4)]
    schedule = S.subscription_schedule("cus_1", phases, subscription="sub_1", id="sub_sched_1")
    observation = observation_of(_parse(S.event("subscription_schedule.created", schedule, created=5)))
    assert observation is not None
    assert observation["source"] == "created"
    snapshot = observation["snapshot"]
    assert snapshot["object"] == "subscription_schedule"
    assert snapshot["next_phase"] == {
        "start_date": 20,
        "currency": "usd",
        "items": [{"price_id": "price_2", "price": None, "quantity": 4}],
    }

    card = S.payment_method(None, exp_month=7, exp_year=2031, id="pm_1")
    detached = S.event("payment_method.detached", card, created=6, previous_attributes={"customer": "cus_1"})
    observation = observation_of(_parse(detached))
    assert observation is not None
    assert observation["source"] == "deleted"
    assert observation["snapshot"] == {
        "object": "payment_method",
        "id": "pm_1",
        "customer": "cus_1",
        "exp_month": 7,
        "exp_year": 2031,
        "detached": True,
    }
    # A payment method of no customer (created, never attached) is nothing of revsync's.
    assert observation_of(_parse(S.event("payment_method.updated", card, created=6))) is None
