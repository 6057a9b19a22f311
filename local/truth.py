"""What a customer's record should say, read from Stripe's own objects and computed independently of
revsync's domain code (per-unit prices, percent coupons: what the demo, the e2e stories and the
Stripe CLI's fixtures use)."""

from __future__ import annotations

from typing import Any

import stripe

LIVE = ("trialing", "active", "past_due", "unpaid", "paused")
MONTHS = {"month": 1, "year": 12}


def expected_record(client: stripe.StripeClient, customer_id: str) -> dict[str, Any]:
    customer = client.v1.customers.retrieve(customer_id)
    # Asked by customer: Stripe lists a test clock's subscriptions only when asked that way (or by clock).
    subscriptions = list(
        client.v1.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        ).auto_paging_iter()
    )
    paid = list(
        client.v1.invoices.list(
            params={"customer": customer_id, "status": "paid", "limit": 100}
        ).auto_paging_iter()
    )
    total_paid = sum(i.amount_paid for i in paid)
    refunded = given_back(client, customer_id, paid)
    deleted = bool(getattr(customer, "deleted", False))
    mrr = 0.0
    for subscription in subscriptions:
        if subscription.status not in ("active", "past_due"):
            continue
        amount = 0.0
        for item in subscription["items"].data:
            recurring = item.price.recurring
            months = MONTHS[recurring.interval] * recurring.interval_count
            amount += item.price.unit_amount * item.quantity / months
        expanded: Any = client.v1.subscriptions.retrieve(subscription.id, params={"expand": ["discounts"]})
        # The subscription's discounts, then the customer's (which applies to every subscription).
        customer_discount = getattr(customer, "discount", None)
        discounts = [*expanded.discounts, *([customer_discount] if customer_discount else [])]
        for discount in discounts:
            amount *= 1 - (client.v1.coupons.retrieve(discount.source.coupon).percent_off or 0) / 100
        mrr += amount
    live = [s for s in subscriptions if s.status in LIVE]
    return {
        "mrr": 0 if deleted else int(mrr + 0.5),
        "trialing": not deleted and any(s.status == "trialing" for s in subscriptions),
        "churned": deleted or (bool(subscriptions) and not live),
        "deleted_in_stripe": deleted,
        "total_paid": total_paid,
        "total_refunded": refunded,
        "net_paid": total_paid - refunded,
        "last_payment_at": max((int(i.status_transitions.paid_at or 0) for i in paid), default=None),
    }


def given_back(client: stripe.StripeClient, customer_id: str, paid: list[Any]) -> int:
    """What the customer got back of its paid invoices (``paid``): every refund of a charge that paid
    one of them (a credit note's refund is one of those), plus what their credit notes not voided
    credited other than by refund (to the balance, out of band)."""
    intents = {p.payment.payment_intent for i in paid for p in (i.payments.data if i.payments else ())}
    charges = client.v1.charges.list(params={"customer": customer_id, "limit": 100}).auto_paging_iter()
    refunded = sum(c.amount_refunded for c in charges if c.payment_intent in intents)
    paid_ids = {i.id for i in paid}
    notes = client.v1.credit_notes.list(params={"customer": customer_id, "limit": 100}).auto_paging_iter()
    for note in notes:
        if note.status != "void" and note.invoice in paid_ids:
            refunded += note.post_payment_amount - sum(r.amount_refunded for r in note.refunds)
    return refunded
