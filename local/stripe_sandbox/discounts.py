"""Discounts: a coupon applied to a customer or a subscription, what it takes off, when it expires.

A subscription lists its discounts' ids (``discounts``); a customer holds its one discount inline
(``discount``). A repeating coupon's discount ends after its months; an ended discount is marked
``expired`` in the table (never shown: ``public_view``).
"""

from __future__ import annotations

import copy

from local.stripe_sandbox.catalog import DAY
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.events import emit


def create(sb: Sandbox, account: Account, coupon_id: str, customer: str, subscription: str | None) -> Obj:
    coupon = sb.get(account, "coupon", coupon_id)
    start = sb.now()
    end = (
        start + 30 * DAY * int(coupon["duration_in_months"] or 0)
        if coupon["duration"] == "repeating"
        else None
    )
    return sb.put(
        account,
        {
            "id": sb.new_id("di"),
            "object": "discount",
            "customer": customer,
            "subscription": subscription,
            "subscription_item": None,
            "invoice": None,
            "invoice_item": None,
            "promotion_code": None,
            "checkout_session": None,
            "customer_account": None,
            "source": {"type": "coupon", "coupon": coupon_id},
            "start": start,
            "end": end,
        },
    )


def public_view(discount: Obj) -> Obj:
    return {k: v for k, v in discount.items() if k != "expired"}


def coupon_ids(params: Obj) -> list[str]:
    """The coupons of a ``discounts`` parameter (``[{"coupon": …}]``)."""
    return [d["coupon"] for d in params.get("discounts", []) if isinstance(d, dict) and d.get("coupon")]


def discounted(sb: Sandbox, account: Account, subscription: Obj, amount: float) -> float:
    """``amount`` less the subscription's and its customer's discounts that are still running."""
    now = sb.now()
    customer = sb.get(account, "customer", subscription["customer"])
    discounts = [
        account.table("discount")[d] for d in subscription["discounts"] if d in account.table("discount")
    ]
    if customer.get("discount"):
        discounts.append(customer["discount"])
    for discount in discounts:
        coupon = account.table("coupon").get(discount["source"]["coupon"])
        if coupon is None or (discount["end"] is not None and discount["end"] <= now):
            continue
        if coupon["percent_off"] is not None:
            amount -= amount * coupon["percent_off"] / 100
        elif coupon["amount_off"] is not None:
            amount -= coupon["amount_off"]
    return amount


def expire(sb: Sandbox, account: Account, discount: Obj) -> None:
    """A repeating coupon's months are over: the discount leaves its subscription or customer."""
    discount["expired"] = True
    if discount["subscription"]:
        subscription = account.table("subscription").get(discount["subscription"])
        if subscription and discount["id"] in subscription["discounts"]:
            subscription["discounts"].remove(discount["id"])
            emit(sb, account, "customer.discount.deleted", public_view(discount))
            emit(
                sb,
                account,
                "customer.subscription.updated",
                subscription,
                {"discounts": [*subscription["discounts"], discount["id"]]},
            )
        return
    customer = account.table("customer").get(discount["customer"])
    if customer and customer.get("discount") and customer["discount"]["id"] == discount["id"]:
        customer["discount"] = None
        emit(sb, account, "customer.discount.deleted", public_view(discount))
        emit(sb, account, "customer.updated", customer, {"discount": public_view(discount)})


def due(sb: Sandbox, account: Account, discount: Obj) -> tuple[int, str] | None:
    if discount["end"] is None or discount.get("expired"):
        return None
    return int(discount["end"]), "expire"


def run_due(sb: Sandbox, account: Account, discount: Obj, action: str) -> None:
    expire(sb, account, discount)


# --- a customer's discount -------------------------------------------------------------------------


def set_customer_coupon(sb: Sandbox, account: Account, customer: Obj, coupon_id: str) -> None:
    """Stripe's API dropped ``coupon`` on customers in 2025-03-31.basil: the sandbox's control route
    ``/_sandbox/customers/{id}/discount`` calls this in its place."""
    previous = {"discount": copy.deepcopy(customer["discount"])}
    discount = create(sb, account, coupon_id, customer["id"], None)
    customer["discount"] = discount
    emit(sb, account, "customer.discount.created", discount)
    emit(sb, account, "customer.updated", customer, previous)


def delete_customer_discount(sb: Sandbox, account: Account, params: Obj, customer_id: str) -> Obj:
    customer = sb.get(account, "customer", customer_id)
    discount = customer["discount"]
    if discount is None:
        raise StripeError(404, "No active discount for this customer.", code="resource_missing")
    customer["discount"] = None
    emit(sb, account, "customer.discount.deleted", discount)
    emit(sb, account, "customer.updated", customer, {"discount": discount})
    return {"object": "discount", "deleted": True, "id": discount["id"]}
