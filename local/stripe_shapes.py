"""Builders of Stripe objects in both API shapes, for tests, the demo and the sandbox.

``shape="current"`` is the API after 2025-03-31 (periods on subscription items, invoice parents,
``discount.source.coupon``); ``shape="legacy"`` the one before (periods on the subscription,
``invoice.subscription``, ``discount.coupon``). Field names and nesting follow Stripe's; values are
whatever the caller passes.
"""

from __future__ import annotations

import itertools
from typing import Any, Literal

Shape = Literal["current", "legacy"]
_ids = itertools.count(1)


def new_id(prefix: str) -> str:
    return f"{prefix}_{next(_ids):014d}"


def coupon(
    *,
    percent_off: float | None = None,
    amount_off: int | None = None,
    currency: str | None = "usd",
    duration: str = "forever",
    duration_in_months: int | None = None,
    id: str | None = None,
) -> dict[str, Any]:
    return {
        "id": id or new_id("co"),
        "object": "coupon",
        "percent_off": percent_off,
        "amount_off": amount_off,
        "currency": currency if amount_off is not None else None,
        "duration": duration,
        "duration_in_months": duration_in_months,
        "valid": True,
        "metadata": {},
        "livemode": False,
    }


def discount(
    the_coupon: dict[str, Any],
    *,
    shape: Shape = "current",
    customer: str | None = None,
    subscription: str | None = None,
    start: int = 0,
    end: int | None = None,
) -> dict[str, Any]:
    base: dict[str, Any] = {
        "id": new_id("di"),
        "object": "discount",
        "customer": customer,
        "subscription": subscription,
        "subscription_item": None,
        "invoice": None,
        "invoice_item": None,
        "promotion_code": None,
        "checkout_session": None,
        "start": start,
        "end": end,
    }
    if shape == "legacy":
        base["coupon"] = the_coupon
    else:
        base["source"] = {"type": "coupon", "coupon": the_coupon}
    return base


def price(
    unit_amount: int | None = 1000,
    *,
    interval: str = "month",
    interval_count: int = 1,
    currency: str = "usd",
    usage_type: str = "licensed",
    billing_scheme: str = "per_unit",
    tiers_mode: str | None = None,
    tiers: list[dict[str, Any]] | None = None,
    transform_quantity: dict[str, Any] | None = None,
    nickname: str | None = None,
    id: str | None = None,
    product: str = "prod_default",
) -> dict[str, Any]:
    return {
        "id": id or new_id("price"),
        "object": "price",
        "active": True,
        "billing_scheme": billing_scheme,
        "currency": currency,
        "nickname": nickname,
        "product": product,
        "type": "recurring",
        "recurring": {
            "interval": interval,
            "interval_count": interval_count,
            "usage_type": usage_type,
            "meter": None,
            "trial_period_days": None,
        },
        "tiers_mode": tiers_mode,
        "tiers": tiers,
        "transform_quantity": transform_quantity,
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_amount is None else str(unit_amount),
        "livemode": False,
        "metadata": {},
        "tax_behavior": "unspecified",
    }


def plan_from_price(p: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` object that Stripe sends beside each price."""
    recurring = p["recurring"]
    return {
        "id": p["id"],
        "object": "plan",
        "active": True,
        "amount": p["unit_amount"],
        "amount_decimal": p["unit_amount_decimal"],
        "billing_scheme": p["billing_scheme"],
        "currency": p["currency"],
        "interval": recurring["interval"],
        "interval_count": recurring["interval_count"],
        "usage_type": recurring["usage_type"],
        "nickname": p["nickname"],
        "product": p["product"],
        "tiers_mode": p["tiers_mode"],
        "tiers": p["tiers"],
        "transform_usage": p["transform_quantity"],
        "livemode": False,
        "metadata": {},
    }


def customer(
    id: str | None = None,
    *,
    email: str | None = None,
    name: str | None = None,
    metadata: dict[str, str] | None = None,
    created: int = 1_700_000_000,
    currency: str | None = "usd",
    balance: int = 0,
    delinquent: bool = False,
    the_discount: dict[str, Any] | None = None,
    shape: Shape = "current",
) -> dict[str, Any]:
    return {
        "id": id or new_id("cus"),
        "object": "customer",
        "email": email,
        "name": name,
        "created": created,
        "currency": currency,
        "balance": balance,
        "delinquent": delinquent,
        "metadata": dict(metadata or {}),
        "discount": the_discount,
        "livemode": False,
        "description": None,
        "phone": None,
        "address": None
        if shape == "legacy"
        else {
            "city": None,
            "country": None,
            "line1": None,
            "line2": None,
            "postal_code": None,
            "state": None,
        },
        "invoice_prefix": "ABC123",
        "tax_exempt": "none",
        "test_clock": None,
    }


def subscription_item(
    the_price: dict[str, Any],
    *,
    quantity: int = 1,
    subscription: str = "",
    period_start: int = 1_700_000_000,
    period_end: int = 1_702_592_000,
    discounts: list[Any] | None = None,
    shape: Shape = "current",
    legacy_plan_only: bool = False,
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": new_id("si"),
        "object": "subscription_item",
        "quantity": quantity,
        "subscription": subscription,
        "price": None if legacy_plan_only else the_price,
        "plan": plan_from_price(the_price),
        "discounts": list(discounts or []),
        "metadata": {},
        "tax_rates": [],
        "created": period_start,
    }
    if shape == "current":
        item["current_period_start"] = period_start
        item["current_period_end"] = period_end
    return item


def subscription(
    customer_id: str,
    items: list[dict[str, Any]] | None = None,
    *,
    id: str | None = None,
    status: str = "active",
    shape: Shape = "current",
    created: int = 1_700_000_000,
    period_start: int = 1_700_000_000,
    period_end: int = 1_702_592_000,
    trial_end: int | None = None,
    cancel_at_period_end: bool = False,
    canceled_at: int | None = None,
    ended_at: int | None = None,
    discounts: list[Any] | None = None,
    currency: str = "usd",
) -> dict[str, Any]:
    sub_id = id or new_id("sub")
    items = (
        items
        if items is not None
        else [
            subscription_item(
                price(), subscription=sub_id, shape=shape, period_start=period_start, period_end=period_end
            )
        ]
    )
    for item in items:
        item["subscription"] = sub_id
    sub: dict[str, Any] = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer_id,
        "status": status,
        "currency": currency,
        "created": created,
        "start_date": created,
        "trial_start": None if trial_end is None else created,
        "trial_end": trial_end,
        "cancel_at_period_end": cancel_at_period_end,
        "cancel_at": None,
        "canceled_at": canceled_at,
        "ended_at": ended_at,
        "discounts": list(discounts or []),
        "items": {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
        "metadata": {},
        "livemode": False,
        "collection_method": "charge_automatically",
        "latest_invoice": None,
        "pause_collection": None,
        "billing_cycle_anchor": period_start,
    }
    if shape == "legacy":
        sub["current_period_start"] = period_start
        sub["current_period_end"] = period_end
        sub["discount"] = next((d for d in sub["discounts"] if isinstance(d, dict)), None)
    return sub


def invoice(
    customer_id: str,
    subscription_id: str | None,
    *,
    amount_paid: int = 1000,
    paid_at: int | None = 1_700_000_100,
    status: str = "paid",
    period_start: int = 1_700_000_000,
    period_end: int = 1_702_592_000,
    shape: Shape = "current",
    currency: str = "usd",
    id: str | None = None,
    payment_intent: str | None = None,
) -> dict[str, Any]:
    inv_id = id or new_id("in")
    line: dict[str, Any] = {
        "id": new_id("il"),
        "object": "line_item",
        "amount": amount_paid,
        "currency": currency,
        "invoice": inv_id,
        "period": {"start": period_start, "end": period_end},
        "quantity": 1,
        "metadata": {},
    }
    if shape == "current":
        line["parent"] = (
            {
                "type": "subscription_item_details",
                "subscription_item_details": {
                    "subscription": subscription_id,
                    "subscription_item": new_id("si"),
                    "invoice_item": None,
                    "proration": False,
                },
            }
            if subscription_id
            else {
                "type": "invoice_item_details",
                "invoice_item_details": {"invoice_item": new_id("ii"), "subscription": None},
            }
        )
    else:
        line["type"] = "subscription" if subscription_id else "invoiceitem"
        line["subscription"] = subscription_id
    inv: dict[str, Any] = {
        "id": inv_id,
        "object": "invoice",
        "customer": customer_id,
        "status": status,
        "currency": currency,
        "amount_due": amount_paid,
        "amount_paid": amount_paid if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else amount_paid,
        "created": period_start,
        "status_transitions": {
            "paid_at": paid_at if status == "paid" else None,
            "finalized_at": period_start,
            "marked_uncollectible_at": None,
            "voided_at": None,
        },
        "lines": {"object": "list", "data": [line], "has_more": False, "url": f"/v1/invoices/{inv_id}/lines"},
        "livemode": False,
        "metadata": {},
        "billing_reason": "subscription_cycle",
    }
    if shape == "current":
        inv["parent"] = (
            {
                "type": "subscription_details",
                "quote_details": None,
                "subscription_details": {"subscription": subscription_id, "metadata": {}},
            }
            if subscription_id
            else None
        )
    else:
        inv["subscription"] = subscription_id
        inv["paid"] = status == "paid"
    if payment_intent is not None and shape == "current":
        payment = {"type": "payment_intent", "payment_intent": payment_intent, "charge": None}
        inv["payments"] = {
            "object": "list",
            "data": [{"id": new_id("inpay"), "object": "invoice_payment", "payment": payment}],
            "has_more": False,
            "url": f"/v1/invoices/{inv_id}/payments",
        }
    elif payment_intent is not None:
        inv["payment_intent"] = payment_intent
    return inv


def credit_note(
    customer_id: str,
    invoice_id: str,
    *,
    amount: int,
    refund_amount: int = 0,
    refund_id: str | None = None,
    status: str = "issued",
    shape: Shape = "current",
    currency: str = "usd",
    id: str | None = None,
) -> dict[str, Any]:
    """A credit note on a paid invoice (post-payment): ``refund_amount`` of it refunded."""
    note: dict[str, Any] = {
        "id": id or new_id("cn"),
        "object": "credit_note",
        "amount": amount,
        "currency": currency,
        "customer": customer_id,
        "invoice": invoice_id,
        "status": status,
        "type": "post_payment",
        "out_of_band_amount": None,
        "livemode": False,
        "metadata": {},
    }
    refund = (refund_id or new_id("re")) if refund_amount else None
    if shape == "current":
        note["post_payment_amount"] = amount
        note["pre_payment_amount"] = 0
        note["refunds"] = (
            [
                {
                    "refund": refund,
                    "amount_refunded": refund_amount,
                    "type": "refund",
                    "payment_record_refund": None,
                }
            ]
            if refund
            else []
        )
    else:
        note["refund"] = refund
    return note


def charge(
    customer_id: str | None,
    *,
    amount: int,
    amount_refunded: int = 0,
    payment_intent: str | None = None,
    invoice_id: str | None = None,
    shape: Shape = "current",
    currency: str = "usd",
    id: str | None = None,
) -> dict[str, Any]:
    """A succeeded charge (``invoice_id``: its invoice, a field only before 2025-03-31)."""
    ch: dict[str, Any] = {
        "id": id or new_id("ch"),
        "object": "charge",
        "amount": amount,
        "amount_captured": amount,
        "amount_refunded": amount_refunded,
        "captured": True,
        "currency": currency,
        "customer": customer_id,
        "paid": True,
        "payment_intent": payment_intent,
        "refunded": amount_refunded == amount,
        "status": "succeeded",
        "livemode": False,
        "metadata": {},
    }
    if shape == "legacy":
        ch["invoice"] = invoice_id
    return ch


def payment_method(
    customer_id: str | None,
    *,
    exp_month: int = 12,
    exp_year: int = 2030,
    card: bool = True,
    id: str | None = None,
) -> dict[str, Any]:
    """A payment method attached to ``customer_id`` (a card unless ``card`` is false: a SEPA debit)."""
    return {
        "id": id or new_id("pm"),
        "object": "payment_method",
        "type": "card" if card else "sepa_debit",
        "customer": customer_id,
        "card": {"brand": "visa", "last4": "4242", "exp_month": exp_month, "exp_year": exp_year}
        if card
        else None,
        "created": 1_700_000_000,
        "livemode": False,
        "metadata": {},
    }


def schedule_phase(
    the_price: dict[str, Any] | str, start: int, end: int, *, quantity: int = 1, currency: str = "usd"
) -> dict[str, Any]:
    """A schedule phase of one item: its price as an id (as webhooks send it) or expanded."""
    price_id = the_price if isinstance(the_price, str) else the_price["id"]
    return {
        "start_date": start,
        "end_date": end,
        "currency": currency,
        "items": [
            {"price": the_price, "plan": price_id, "quantity": quantity, "metadata": {}, "discounts": []}
        ],
        "discounts": [],
        "metadata": {},
        "trial_end": None,
    }


def subscription_schedule(
    customer_id: str,
    phases: list[dict[str, Any]],
    *,
    status: str = "active",
    subscription: str | None = None,
    current: int | None = 0,
    id: str | None = None,
) -> dict[str, Any]:
    """A schedule in ``status``; an active one is in its phase number ``current``."""
    live = status == "active" and current is not None
    return {
        "id": id or new_id("sub_sched"),
        "object": "subscription_schedule",
        "customer": customer_id,
        "status": status,
        "subscription": subscription,
        "current_phase": {
            "start_date": phases[current]["start_date"],
            "end_date": phases[current]["end_date"],
        }
        if live and current is not None
        else None,
        "phases": phases,
        "end_behavior": "release",
        "created": phases[0]["start_date"],
        "canceled_at": None,
        "completed_at": None,
        "released_at": None,
        "released_subscription": None,
        "livemode": False,
        "metadata": {},
        "test_clock": None,
    }


def event(
    event_type: str,
    obj: dict[str, Any],
    *,
    created: int,
    account: str | None = None,
    livemode: bool = False,
    id: str | None = None,
    previous_attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    data: dict[str, Any] = {"object": obj}
    if previous_attributes is not None:
        data["previous_attributes"] = previous_attributes
    body: dict[str, Any] = {
        "id": id or new_id("evt"),
        "object": "event",
        "api_version": "2025-03-31.basil",
        "created": created,
        "data": data,
        "livemode": livemode,
        "pending_webhooks": 1,
        "type": event_type,
        "request": {"id": None, "idempotency_key": None},
    }
    if account is not None:
        body["account"] = account
    return body


def previous_attributes(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """What Stripe puts in ``data.previous_attributes`` for an update from ``before`` to ``after``:
    the old value of each changed top-level field, and for ``metadata`` only the changed keys (null
    for a key that was added)."""
    changed: dict[str, Any] = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old == new:
            continue
        if key == "metadata" and isinstance(old, dict) and isinstance(new, dict):
            changed[key] = {k: old.get(k) for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)}
        else:
            changed[key] = old
    return changed
