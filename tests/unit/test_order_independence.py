"""Property: a customer's record depends on the set of events, not their order or repetition.

Generated customers have several subscriptions, each with its own history (trials, conversions,
quantity changes, past_due, cancellations), paid invoices reported twice (``invoice.paid`` and
``invoice.payment_succeeded``), metadata that appears late and sometimes a deletion. Events often
share a second. Applying them shuffled, with duplicates, through the write path must give the same
records as applying them once in order; when a same-second tie cannot be ordered from the events
themselves, the fake Stripe answers with the object's true final state, as the real one would.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from revsync.domain.events import observation_of, parse_event
from revsync.domain.tenancy import Connection, Tenant
from revsync.services.sync import apply_observation

from local import stripe_shapes as S
from tests.fakes import FakeCustomers, FakeStripe, FakeTenants

T0 = 1_760_000_000
DAY = 86_400
PRICES = [
    S.price(1000, id="price_a"),
    S.price(4900, id="price_b"),
    S.price(99000, interval="year", id="price_c"),
]
NEXT_STATUS = {
    "incomplete": ["active", "incomplete_expired"],
    "trialing": ["active", "past_due", "canceled"],
    "active": ["active", "past_due", "canceled", "paused"],
    "past_due": ["active", "unpaid", "canceled"],
    "unpaid": ["active", "canceled"],
    "paused": ["active", "canceled"],
}

Event = tuple[str, dict[str, Any], int, dict[str, Any] | None]  # type, object, created, object before


@st.composite
def histories(draw: Any) -> tuple[list[Event], dict[str, dict[str, Any]]]:
    clock = [T0]

    def tick() -> int:
        clock[0] += draw(st.sampled_from([0, 0, 1, 2, DAY]))
        return clock[0]

    events: list[Event] = []
    truth: dict[str, dict[str, Any]] = {}
    shape: S.Shape = draw(st.sampled_from(["current", "legacy"]))
    late_metadata = draw(st.booleans())
    customer = S.customer(
        "cus_p",
        email="p@example.com",
        metadata={} if late_metadata else {"app_id": "u-p"},
        created=T0,
        shape=shape,
    )
    events.append(("customer.created", customer, tick(), None))
    truth["cus_p"] = customer

    for index in range(draw(st.integers(min_value=1, max_value=3))):
        sub_id = f"sub_{index}"
        status = draw(st.sampled_from(["incomplete", "trialing", "active"]))
        price = draw(st.sampled_from(PRICES))
        quantity = draw(st.integers(min_value=1, max_value=3))
        start = tick()

        def build(
            status: str,
            quantity: int,
            price: dict[str, Any],
            at: int,
            sub_id: str = sub_id,
            start: int = start,
        ) -> dict[str, Any]:
            item = {
                **S.subscription_item(
                    price, quantity=quantity, shape=shape, period_start=at, period_end=at + 30 * DAY
                ),
                "id": f"si_{sub_id}",
            }
            ended = at if status in ("canceled", "incomplete_expired") else None
            return S.subscription(
                "cus_p",
                [item],
                id=sub_id,
                status=status,
                shape=shape,
                created=start,
                period_start=at,
                period_end=at + 30 * DAY,
                trial_end=start + 14 * DAY,
                canceled_at=ended,
                ended_at=ended,
            )

        current = build(status, quantity, price, start)
        events.append(("customer.subscription.created", current, start, None))
        for _ in range(draw(st.integers(min_value=0, max_value=4))):
            if status not in NEXT_STATUS:
                break
            status = draw(st.sampled_from(NEXT_STATUS[status]))
            if draw(st.booleans()):
                quantity = draw(st.integers(min_value=1, max_value=5))
            at = tick()
            updated = build(status, quantity, price, at)
            ending = status in ("canceled", "incomplete_expired")
            kind = "customer.subscription.deleted" if ending else "customer.subscription.updated"
            events.append((kind, updated, at, None if ending else current))
            current = updated
            if status == "active" and draw(st.booleans()):
                invoice = S.invoice(
                    "cus_p",
                    sub_id,
                    amount_paid=price["unit_amount"] * quantity,
                    paid_at=at,
                    period_start=at,
                    period_end=at + 30 * DAY,
                    shape=shape,
                    id=f"in_{sub_id}_{len(events)}",  # one id, one amount: as in Stripe
                    payment_intent=f"pi_{sub_id}_{len(events)}",
                )
                truth[invoice["id"]] = invoice
                events.append(("invoice.paid", invoice, at, None))
                events.append(("invoice.payment_succeeded", invoice, at, None))
                if draw(st.booleans()):
                    events += draw(refunds_of(invoice, shape, truth, tick))
        truth[sub_id] = current

    if late_metadata and draw(st.booleans()):
        updated_customer = {**customer, "metadata": {"app_id": "u-p"}}
        events.append(("customer.updated", updated_customer, tick(), customer))
        truth["cus_p"] = customer = updated_customer
    if draw(st.booleans()):
        events.append(("customer.deleted", customer, tick(), None))
        truth["cus_p"] = {"id": "cus_p", "object": "customer", "deleted": True}
    return events, truth


@st.composite
def refunds_of(
    draw: Any, invoice: dict[str, Any], shape: S.Shape, truth: dict[str, Any], tick: Any
) -> list[Event]:
    """Refunds and credit notes of a paid invoice, as Stripe reports them: a refund (``charge.refunded``
    with the charge's new total), a credit note refunding part (``credit_note.created`` and, in the
    same second, the charge's ``charge.refunded``), a credit note to the balance (maybe voided)."""
    events: list[Event] = []
    paid, intent = invoice["amount_paid"], invoice.get("payment_intent") or invoice["payments"]["data"][0]
    intent = intent if isinstance(intent, str) else intent["payment"]["payment_intent"]
    charge = S.charge(
        "cus_p", amount=paid, payment_intent=intent, invoice_id=invoice["id"], shape=shape, id=f"ch_{intent}"
    )
    taken = 0
    for n in range(draw(st.integers(min_value=1, max_value=3))):
        if paid - taken < 1:
            break
        part = draw(st.integers(min_value=1, max_value=paid - taken))
        taken += part
        kind = draw(st.sampled_from(["refund", "refunding_note", "crediting_note"]))
        at = tick()
        if kind != "crediting_note":
            before = charge
            charge = {**charge, "amount_refunded": charge["amount_refunded"] + part}
            events.append(("charge.refunded", charge, at, before))
        if kind == "refund":
            continue
        note_id = f"cn_{intent}_{n}"
        refund = part if kind == "refunding_note" else 0
        note = S.credit_note(
            "cus_p", invoice["id"], amount=part, refund_amount=refund, shape=shape, id=note_id
        )
        events.append(("credit_note.created", note, at, None))
        truth[note_id] = note
        if kind == "crediting_note" and draw(st.booleans()):
            voided = {**note, "status": "void"}
            events.append(("credit_note.voided", voided, tick(), note))
            truth[note_id] = voided
            taken -= part
    truth[charge["id"]] = charge
    return events


def _refunded(truth: dict[str, Any]) -> int:
    """What the objects imply: every refund of a charge, and what issued credit notes did not refund."""
    charges = sum(o["amount_refunded"] for o in truth.values() if o.get("object") == "charge")
    notes = sum(
        o["amount"]
        - sum(r["amount_refunded"] for r in o.get("refunds", []))
        - (o["amount"] if o.get("refund") else 0)
        for o in truth.values()
        if o.get("object") == "credit_note" and o["status"] == "issued"
    )
    return int(charges + notes)


def _summary(event: Event) -> str:
    kind, obj, at, _ = event
    quantity = obj.get("items", {}).get("data", [{}])[0].get("quantity", "")
    return f"{kind} {obj['id']} {obj.get('status', '')} q={quantity} t={at - T0}"


def _run(events: list[Event], truth: dict[str, dict[str, Any]]) -> dict[Any, Any]:
    tenant = Tenant("acme", Connection("connected", "oauth", "acct_1")).with_config("metadata.app_id")
    tenants, customers, stripe = FakeTenants({"acme": tenant}), FakeCustomers(), FakeStripe(objects=truth)
    for kind, obj, at, before in events:
        previous = S.previous_attributes(before, obj) if before is not None else None
        raw = S.event(kind, obj, created=at, account="acct_1", previous_attributes=previous)
        observation = observation_of(parse_event(json.dumps(raw).encode()))
        assert observation is not None
        apply_observation(
            "acme",
            observation,
            tenants=tenants,
            customers=customers,
            stripe=stripe,
            clock=lambda: T0 + 1000 * DAY,
        )
    return {
        key: {k: v for k, v in record.items() if k != "revsync_version"}
        for key, record in customers.records.items()
    }


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(history=histories(), data=st.data())
def test_record_is_independent_of_order_and_duplicates(
    history: tuple[list[Event], dict[str, Any]], data: Any
) -> None:
    events, truth = history
    note([_summary(e) for e in events])
    in_order = _run(events, truth)
    duplicates = data.draw(st.lists(st.sampled_from(events), max_size=len(events)))
    shuffled = data.draw(st.permutations(events + duplicates))
    note([_summary(e) for e in shuffled])
    assert _run(list(shuffled), truth) == in_order
    # Each refund and credit note counted once, whatever the order and repetition.
    assert [r["total_refunded"] for r in in_order.values()] == [_refunded(truth)]
    assert [r["net_paid"] for r in in_order.values()] == [
        r["total_paid"] - _refunded(truth) for r in in_order.values()
    ]
