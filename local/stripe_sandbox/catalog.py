"""What is sold: products, prices (per unit, tiered, metered) and coupons, and what a price costs.

Every interval is a fixed number of days (a month is 30).
"""

from __future__ import annotations

from typing import Any

from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError
from local.stripe_sandbox.forms import as_int

DAY = 86_400
INTERVAL_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


def create_product(sb: Sandbox, account: Account, params: Obj) -> Obj:
    return sb.put(
        account,
        {
            "id": params.get("id") or sb.new_id("prod"),
            "object": "product",
            "name": params.get("name", "Product"),
            "active": True,
            "created": sb.now(),
            "metadata": params.get("metadata", {}),
            "livemode": False,
            "default_price": None,
            "description": params.get("description"),
            "type": "service",
        },
    )


def create_price(sb: Sandbox, account: Account, params: Obj) -> Obj:
    product = params.get("product")
    if not product and isinstance(params.get("product_data"), dict):
        product = create_product(sb, account, params["product_data"])["id"]
    if not product:
        raise StripeError(400, "Missing required param: product.", param="product")
    recurring = params.get("recurring") or {}
    tiers = [
        {
            "up_to": None if t.get("up_to") in (None, "inf") else int(t["up_to"]),
            "unit_amount": as_int(t.get("unit_amount")),
            "unit_amount_decimal": t.get("unit_amount"),
            "flat_amount": as_int(t.get("flat_amount")),
            "flat_amount_decimal": t.get("flat_amount"),
        }
        for t in params.get("tiers", [])
    ]
    transform = params.get("transform_quantity")
    unit = as_int(params.get("unit_amount"))
    return sb.put(
        account,
        {
            "id": params.get("id") or sb.new_id("price"),
            "object": "price",
            "active": True,
            "billing_scheme": params.get("billing_scheme", "per_unit"),
            "currency": params.get("currency", "usd"),
            "created": sb.now(),
            "livemode": False,
            "lookup_key": params.get("lookup_key"),
            "metadata": params.get("metadata", {}),
            "nickname": params.get("nickname"),
            "product": product,
            "recurring": {
                "interval": recurring.get("interval", "month"),
                "interval_count": as_int(recurring.get("interval_count"), 1),
                "usage_type": recurring.get("usage_type", "licensed"),
                "meter": None,
                "trial_period_days": None,
            }
            if recurring or params.get("type") != "one_time"
            else None,
            "tax_behavior": "unspecified",
            "tiers_mode": params.get("tiers_mode"),
            "tiers": tiers or None,
            "transform_quantity": {"divide_by": int(transform["divide_by"]), "round": transform["round"]}
            if transform
            else None,
            "type": "recurring",
            "unit_amount": unit,
            "unit_amount_decimal": None if unit is None else str(unit),
        },
    )


def create_coupon(sb: Sandbox, account: Account, params: Obj) -> Obj:
    percent = params.get("percent_off")
    duration = params.get("duration", "once")
    return sb.put(
        account,
        {
            "id": params.get("id") or sb.new_id("co"),
            "object": "coupon",
            "created": sb.now(),
            "amount_off": as_int(params.get("amount_off")),
            "currency": params.get("currency"),
            "duration": duration,
            "duration_in_months": as_int(params.get("duration_in_months")),
            "percent_off": float(percent) if percent is not None else None,
            "livemode": False,
            "valid": True,
            "metadata": params.get("metadata", {}),
            "name": params.get("name"),
            "times_redeemed": 0,
            "max_redemptions": None,
            "redeem_by": None,
        },
    )


# --- what a price costs ----------------------------------------------------------------------------


def plan_of(price: Obj) -> Obj:
    """The legacy plan view of a recurring price (a subscription item carries both)."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": True,
        "amount": price["unit_amount"],
        "amount_decimal": price["unit_amount_decimal"],
        "billing_scheme": price["billing_scheme"],
        "currency": price["currency"],
        "interval": recurring.get("interval"),
        "interval_count": recurring.get("interval_count", 1),
        "usage_type": recurring.get("usage_type", "licensed"),
        "nickname": price["nickname"],
        "product": price["product"],
        "tiers_mode": price["tiers_mode"],
        "transform_usage": price["transform_quantity"],
        "livemode": False,
        "metadata": {},
        "meter": None,
        "trial_period_days": None,
        "created": price["created"],
    }


def period_seconds(price: Obj) -> int:
    recurring = price.get("recurring") or {"interval": "month", "interval_count": 1}
    return DAY * INTERVAL_DAYS[recurring["interval"]] * int(recurring.get("interval_count") or 1)


def item_amount(item: dict[str, Any]) -> int:
    """What one subscription item bills for a period: its quantity (transformed) at its price."""
    price, quantity = item["price"], int(item["quantity"])
    if (price.get("recurring") or {}).get("usage_type") == "metered":
        return 0
    transform = price.get("transform_quantity")
    if transform:
        divided = quantity / transform["divide_by"]
        quantity = int(-(-divided // 1)) if transform["round"] == "up" else int(divided)
    if price["billing_scheme"] == "tiered":
        tiers = price["tiers"] or []
        if price["tiers_mode"] == "volume":
            tier = next((t for t in tiers if t["up_to"] is None or quantity <= t["up_to"]), None)
            return (
                0
                if tier is None or quantity == 0
                else quantity * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            )
        total, lower = 0, 0
        for tier in tiers:
            upper = tier["up_to"] if tier["up_to"] is not None else quantity
            units = min(quantity, upper) - lower
            if units <= 0:
                break
            total += units * (tier["unit_amount"] or 0) + (tier["flat_amount"] or 0)
            lower = upper
        return total
    return quantity * int(price["unit_amount"] or 0)
