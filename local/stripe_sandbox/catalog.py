"""What is sold: products, prices (per unit, tiered, metered), legacy plans and coupons, and what a
price costs.

A plan is a recurring price seen through the older Plans API: they share an id, and creating,
updating or deleting either one sends both kinds of events (``plan.*`` and ``price.*``). Every
interval is a fixed number of days (a month is 30).
"""

from __future__ import annotations

import copy
from typing import Any

from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int

DAY = 86_400
INTERVAL_DAYS = {"day": 1, "week": 7, "month": 30, "year": 365}


def create_product(sb: Sandbox, account: Account, params: Obj) -> Obj:
    product = sb.put(
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
    emit(sb, account, "product.created", product)
    return product


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
    price = sb.put(
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
    emit(sb, account, "price.created", price)
    if price["recurring"]:
        emit(sb, account, "plan.created", sb.put(account, plan_of(price)))
    return price


def create_coupon(sb: Sandbox, account: Account, params: Obj) -> Obj:
    percent = params.get("percent_off")
    duration = params.get("duration", "once")
    coupon = sb.put(
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
    emit(sb, account, "coupon.created", coupon)
    return coupon


def _merge_metadata(current: Obj, update: Obj | None) -> Obj:
    """Stripe's metadata update: keys set, a key set to "" removed."""
    return {k: v for k, v in {**current, **(update or {})}.items() if v not in ("", None)}


def _update(sb: Sandbox, account: Account, obj: Obj, params: Obj, fields: tuple[str, ...]) -> Obj:
    """Set ``fields`` and metadata from ``params``; what changed, as ``previous_attributes``."""
    before = copy.deepcopy(obj)
    for key in fields:
        if key in params:
            obj[key] = as_bool(params[key]) if key == "active" else (params[key] or None)
    if "metadata" in params:
        obj["metadata"] = _merge_metadata(obj["metadata"], params["metadata"])
    return {k: before[k] for k in obj if obj[k] != before.get(k)}


def _live(sb: Sandbox, account: Account, kind: str, object_id: str) -> Obj:
    obj = sb.get(account, kind, object_id)
    if obj.get("deleted"):
        raise not_found(kind, object_id)
    return obj


def update_product(sb: Sandbox, account: Account, params: Obj, product_id: str) -> Obj:
    product = _live(sb, account, "product", product_id)
    previous = _update(sb, account, product, params, ("name", "description", "active", "default_price"))
    if previous:
        emit(sb, account, "product.updated", product, previous)
    return product


def delete_product(sb: Sandbox, account: Account, params: Obj, product_id: str) -> Obj:
    product = _live(sb, account, "product", product_id)
    if any(p["product"] == product_id for p in account.table("price").values()):
        raise StripeError(
            400,
            "This product cannot be deleted because it has one or more user-created prices.",
            code="resource_in_use",
        )
    emit(sb, account, "product.deleted", product)
    return _deleted(account, "product", product_id)


def _deleted(account: Account, kind: str, object_id: str) -> Obj:
    account.table(kind)[object_id] = {"id": object_id, "object": kind, "deleted": True}
    return {"id": object_id, "object": kind, "deleted": True}


def update_price(sb: Sandbox, account: Account, params: Obj, price_id: str) -> Obj:
    price = _live(sb, account, "price", price_id)
    previous = _update(sb, account, price, params, ("nickname", "active", "lookup_key"))
    if previous:
        emit(sb, account, "price.updated", price, previous)
        plan = account.table("plan").get(price_id)
        if plan is not None and not plan.get("deleted"):
            plan.update(nickname=price["nickname"], active=price["active"], metadata=price["metadata"])
            emit(sb, account, "plan.updated", plan, {k: v for k, v in previous.items() if k in plan})
    return price


def create_plan(sb: Sandbox, account: Account, params: Obj) -> Obj:
    """``POST /v1/plans``: a recurring price in the Plans API's terms (``amount``, ``interval``, a
    ``product`` id or an inline ``product``)."""
    product = params.get("product")
    if isinstance(product, dict):
        product = create_product(sb, account, product)["id"]
    if not product:
        raise StripeError(400, "Missing required param: product.", param="product")
    if not params.get("interval"):
        raise StripeError(400, "Missing required param: interval.", param="interval")
    price = sb.put(
        account,
        {
            "id": params.get("id") or sb.new_id("price"),
            "object": "price",
            "active": as_bool(params.get("active", True)),
            "billing_scheme": params.get("billing_scheme", "per_unit"),
            "currency": params.get("currency", "usd"),
            "created": sb.now(),
            "livemode": False,
            "lookup_key": None,
            "metadata": params.get("metadata", {}),
            "nickname": params.get("nickname"),
            "product": product,
            "recurring": {
                "interval": params["interval"],
                "interval_count": as_int(params.get("interval_count"), 1),
                "usage_type": params.get("usage_type", "licensed"),
                "meter": None,
                "trial_period_days": as_int(params.get("trial_period_days")),
            },
            "tax_behavior": "unspecified",
            "tiers_mode": None,
            "tiers": None,
            "transform_quantity": None,
            "type": "recurring",
            "unit_amount": as_int(params.get("amount")),
            "unit_amount_decimal": params.get("amount_decimal")
            or (None if params.get("amount") is None else str(params["amount"])),
        },
    )
    plan = sb.put(account, plan_of(price))
    emit(sb, account, "plan.created", plan)
    emit(sb, account, "price.created", price)
    return plan


def update_plan(sb: Sandbox, account: Account, params: Obj, plan_id: str) -> Obj:
    plan = _live(sb, account, "plan", plan_id)
    previous = _update(sb, account, plan, params, ("nickname", "active", "product", "trial_period_days"))
    if previous:
        emit(sb, account, "plan.updated", plan, previous)
        price = account.table("price").get(plan_id)
        if price is not None:
            price.update(nickname=plan["nickname"], active=plan["active"], metadata=plan["metadata"])
            emit(sb, account, "price.updated", price, {k: v for k, v in previous.items() if k in price})
    return plan


def delete_plan(sb: Sandbox, account: Account, params: Obj, plan_id: str) -> Obj:
    """A deleted plan takes no new subscribers; its price stays (prices are never deleted), inactive."""
    plan = _live(sb, account, "plan", plan_id)
    emit(sb, account, "plan.deleted", plan)
    price = account.table("price").get(plan_id)
    if price is not None and price["active"]:
        price["active"] = False
        emit(sb, account, "price.updated", price, {"active": True})
    return _deleted(account, "plan", plan_id)


def plan_matches(plan: Obj, params: Obj) -> bool:
    """``GET /v1/plans``'s filters: ``active``, ``product``."""
    if "active" in params and as_bool(params["active"]) != plan["active"]:
        return False
    return not params.get("product") or plan["product"] == params["product"]


def update_coupon(sb: Sandbox, account: Account, params: Obj, coupon_id: str) -> Obj:
    coupon = _live(sb, account, "coupon", coupon_id)
    previous = _update(sb, account, coupon, params, ("name",))
    if previous:
        emit(sb, account, "coupon.updated", coupon, previous)
    return coupon


def delete_coupon(sb: Sandbox, account: Account, params: Obj, coupon_id: str) -> Obj:
    """A deleted coupon is no longer redeemable; discounts already made from it stay."""
    coupon = _live(sb, account, "coupon", coupon_id)
    emit(sb, account, "coupon.deleted", coupon)
    account.table("coupon")[coupon_id] = {**coupon, "deleted": True}
    return {"id": coupon_id, "object": "coupon", "deleted": True}


# --- what a price costs ----------------------------------------------------------------------------


def plan_of(price: Obj) -> Obj:
    """The legacy plan view of a recurring price (a subscription item carries both)."""
    recurring = price.get("recurring") or {}
    return {
        "id": price["id"],
        "object": "plan",
        "active": price["active"],
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
        "metadata": dict(price["metadata"]),
        "meter": None,
        "trial_period_days": recurring.get("trial_period_days"),
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
