"""What a customer's record should say, read from Stripe's own objects and computed independently of
revsync's domain code (per-unit prices, percent coupons: what the demo, the e2e stories and the
Stripe CLI's fixtures use)."""

from __future__ import annotations

import calendar
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


# The risk signals revsync derives from failed invoices, schedules and the default card (the part of
# revsync.domain.risk they read), worked out here from Stripe's objects and events alone.
FAILURE_EVENTS = (
    "invoice.payment_failed",
    "invoice.payment_action_required",
    "invoice.updated",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
RENEWING = ("active", "past_due", "trialing")


def expected_risk(client: stripe.StripeClient, customer_id: str, now: int) -> dict[str, Any]:
    customer = client.v1.customers.retrieve(customer_id)
    subscriptions = list(
        client.v1.subscriptions.list(
            params={"customer": customer_id, "status": "all", "limit": 100}
        ).auto_paging_iter()
    )
    failed = [
        i
        for i in client.v1.invoices.list(
            params={"customer": customer_id, "status": "open", "limit": 100}
        ).auto_paging_iter()
        if i.attempt_count > 0
    ]
    change = _scheduled_change(client, customer_id, subscriptions, now)
    return {
        "in_dunning": bool(failed)
        or bool(getattr(customer, "delinquent", False))
        or any(s.status in ("past_due", "unpaid") for s in subscriptions),
        "failed_payment_attempts": sum(i.attempt_count for i in failed),
        "last_payment_failed_at": max((_failure_seen(client, i) for i in failed), default=None),
        "amount_due": sum(i.amount_remaining for i in failed),
        "scheduled_change_at": change[0] if change else None,
        "scheduled_mrr": change[1] if change else None,
        "card_expires_at": _card_expiry(client, customer, subscriptions),
    }


def _failure_seen(client: stripe.StripeClient, invoice: Any) -> int:
    """When the latest attempt's failure was first seen: the earliest event showing that attempt."""
    events = client.v1.events.list(params={"types": list(FAILURE_EVENTS), "limit": 100}).auto_paging_iter()
    return min(
        e.created
        for e in events
        if e.data.object["id"] == invoice.id and e.data.object["attempt_count"] == invoice.attempt_count
    )


def _scheduled_change(
    client: stripe.StripeClient, customer_id: str, subscriptions: list[Any], now: int
) -> tuple[int, int] | None:
    live = {s.id for s in subscriptions if s.status in LIVE}
    changes = []
    schedules: Any = client.v1.subscription_schedules.list(params={"customer": customer_id})
    for schedule in schedules.auto_paging_iter():
        phase: Any
        if schedule.status == "not_started":
            phase = schedule.phases[0]
        elif schedule.status == "active" and (not schedule.subscription or schedule.subscription in live):
            phase = next(
                (p for p in schedule.phases if p.start_date == schedule.current_phase.end_date), None
            )
        else:
            phase = None
        if phase is None or phase.start_date <= now:
            continue
        mrr = 0.0
        for item in phase["items"]:
            price: Any = client.v1.prices.retrieve(str(item["price"]))
            recurring = price.recurring
            mrr += (
                price.unit_amount
                * (item.quantity or 1)
                / (MONTHS[recurring.interval] * recurring.interval_count)
            )
        changes.append((phase.start_date, int(mrr + 0.5)))
    return min(changes, default=None)


def _card_expiry(client: stripe.StripeClient, customer: Any, subscriptions: list[Any]) -> int | None:
    """The end of the default card's expiry month, when it comes at or before the next renewal."""
    settings = None if getattr(customer, "deleted", False) else customer.invoice_settings
    default = settings.default_payment_method if settings else None
    if not default:
        return None
    method = client.v1.payment_methods.retrieve(str(default))
    if method.customer != customer.id or method.card is None:
        return None
    renewals = [
        min(item.current_period_end for item in s["items"].data)
        for s in subscriptions
        if s.status in RENEWING and not s.cancel_at_period_end and not s.cancel_at
    ]
    month, year = method.card.exp_month, method.card.exp_year
    expires = calendar.timegm((year + month // 12, month % 12 + 1, 1, 0, 0, 0))
    return expires if renewals and expires <= min(renewals) else None
