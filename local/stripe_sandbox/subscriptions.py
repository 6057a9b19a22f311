"""Subscriptions and their items: create (billing the first period unless trialing), update (items,
quantities, cancellation at period end, pause, discounts, trial end), cancel, resume; and the
transitions time makes (``clock``): a trial ends, a period starts, a subscription ends.

Billing periods live on the items (``current_period_start``/``_end``), as since 2025-03-31.basil.
"""

from __future__ import annotations

import copy

from local.stripe_sandbox import discounts, invoices
from local.stripe_sandbox.catalog import DAY, period_seconds, plan_of
from local.stripe_sandbox.core import Account, Obj, Sandbox, StripeError, not_found
from local.stripe_sandbox.events import emit
from local.stripe_sandbox.forms import as_bool, as_int

# Ended subscriptions: a list leaves them out unless asked for ``status=all`` (or the status itself).
ENDED = ("canceled", "incomplete_expired")


def matches(subscription: Obj, params: Obj) -> bool:
    """``GET /v1/subscriptions``'s filters: ``status`` (ended ones only when asked), ``customer``."""
    status = params.get("status")
    if status in (None, ""):
        if subscription["status"] in ENDED:
            return False
    elif status != "all" and subscription["status"] != status:
        return False
    return not params.get("customer") or subscription["customer"] == params["customer"]


def item(sb: Sandbox, account: Account, sub_id: str, spec: Obj, period: tuple[int, int]) -> Obj:
    price = sb.get(account, "price", spec["price"])
    return {
        "id": sb.new_id("si"),
        "object": "subscription_item",
        "created": sb.now(),
        "subscription": sub_id,
        "price": copy.deepcopy(price),
        "plan": plan_of(price),
        "quantity": as_int(spec.get("quantity"), 1),
        "current_period_start": period[0],
        "current_period_end": period[1],
        "discounts": [],
        "metadata": spec.get("metadata", {}),
        "tax_rates": [],
        "billing_thresholds": None,
    }


def create(sb: Sandbox, account: Account, params: Obj) -> Obj:
    customer = sb.get(account, "customer", str(params.get("customer")))
    if customer.get("deleted"):
        raise not_found("customer", customer["id"])
    specs = params.get("items") or []
    if not specs:
        raise StripeError(400, "Missing required param: items.", param="items")
    now = sb.now()
    trial_end = as_int(params.get("trial_end"))
    if params.get("trial_period_days"):
        trial_end = now + DAY * int(params["trial_period_days"])
    sub_id = sb.new_id("sub")
    first_price = sb.get(account, "price", specs[0]["price"])
    period = (now, trial_end if trial_end else now + period_seconds(first_price))
    subscription: Obj = {
        "id": sub_id,
        "object": "subscription",
        "customer": customer["id"],
        "created": now,
        "start_date": now,
        "status": "trialing" if trial_end else "active",
        "currency": first_price["currency"],
        "trial_start": now if trial_end else None,
        "trial_end": trial_end,
        "cancel_at_period_end": as_bool(params.get("cancel_at_period_end", False)),
        "cancel_at": None,
        "canceled_at": None,
        "ended_at": None,
        "discounts": [],
        "metadata": params.get("metadata", {}),
        "livemode": False,
        "latest_invoice": None,
        "pause_collection": None,
        "billing_cycle_anchor": now,
        "collection_method": invoices.collection_method(params),
        "days_until_due": as_int(params.get("days_until_due")),
        "test_clock": None,
        "trial_settings": {
            "end_behavior": {
                "missing_payment_method": (params.get("trial_settings") or {})
                .get("end_behavior", {})
                .get("missing_payment_method", "create_invoice")
            }
        },
        "items": {
            "object": "list",
            "data": [],
            "has_more": False,
            "url": f"/v1/subscription_items?subscription={sub_id}",
        },
    }
    subscription["items"]["data"] = [item(sb, account, sub_id, spec, period) for spec in specs]
    sb.put(account, subscription)
    if customer["currency"] is None:
        customer["currency"] = subscription["currency"]
        emit(sb, account, "customer.updated", customer, {"currency": None})
    for coupon_id in discounts.coupon_ids(params):
        subscription["discounts"].append(
            discounts.create(sb, account, coupon_id, customer["id"], sub_id)["id"]
        )
    emit(sb, account, "customer.subscription.created", subscription)
    if subscription["status"] == "active":
        invoices.bill(sb, account, subscription, "subscription_create")
    return subscription


def update(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] in ENDED:
        raise StripeError(
            400, "A canceled subscription can only update its cancellation_details and metadata."
        )
    before = copy.deepcopy(subscription)
    items = subscription["items"]["data"]
    period = (
        (items[0]["current_period_start"], items[0]["current_period_end"]) if items else (sb.now(), sb.now())
    )
    for spec in params.get("items", []):
        existing = next((i for i in items if i["id"] == spec.get("id")), None)
        if existing is None:
            items.append(item(sb, account, sub_id, spec, period))
        elif as_bool(spec.get("deleted", False)):
            items.remove(existing)
        else:
            if spec.get("price"):
                price = sb.get(account, "price", spec["price"])
                existing["price"], existing["plan"] = copy.deepcopy(price), plan_of(price)
            if spec.get("quantity") is not None:
                existing["quantity"] = int(spec["quantity"])
    if "cancel_at_period_end" in params:
        subscription["cancel_at_period_end"] = as_bool(params["cancel_at_period_end"])
        subscription["canceled_at"] = sb.now() if subscription["cancel_at_period_end"] else None
    if "metadata" in params:
        subscription["metadata"] = {**subscription["metadata"], **params["metadata"]}
    if "pause_collection" in params:
        subscription["pause_collection"] = params["pause_collection"] or None
    if "collection_method" in params:
        subscription["collection_method"] = invoices.collection_method(params)
    if "days_until_due" in params:
        subscription["days_until_due"] = as_int(params["days_until_due"])
    if params.get("trial_end") == "now" and subscription["status"] == "trialing":
        end_trial(sb, account, subscription)
        return subscription
    added = [
        discounts.create(sb, account, c, subscription["customer"], sub_id)
        for c in discounts.coupon_ids(params)
    ]
    subscription["discounts"].extend(d["id"] for d in added)
    for discount in added:
        emit(sb, account, "customer.discount.created", discount)
    previous = {k: before[k] for k in subscription if subscription[k] != before.get(k)}
    if previous:
        emit(sb, account, "customer.subscription.updated", subscription, previous)
    return subscription


def cancel(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] in ENDED:
        raise StripeError(400, "This subscription is already canceled.")
    end(sb, account, subscription, sb.now())
    return subscription


def resume(sb: Sandbox, account: Account, params: Obj, sub_id: str) -> Obj:
    subscription = sb.get(account, "subscription", sub_id)
    if subscription["status"] != "paused":
        raise StripeError(400, "Only a paused subscription can be resumed.")
    previous = {"status": "paused"}
    subscription["status"] = "active"
    start_period(subscription, sb.now())
    emit(sb, account, "customer.subscription.resumed", subscription, previous)
    invoices.bill(sb, account, subscription, "subscription_cycle")
    return subscription


def list_items(sb: Sandbox, account: Account, params: Obj) -> list[Obj]:
    """``GET /v1/subscription_items``: the items of one subscription (``subscription`` required)."""
    if not params.get("subscription"):
        raise StripeError(400, "Missing required param: subscription.", param="subscription")
    return list(sb.get(account, "subscription", str(params["subscription"]))["items"]["data"])


# --- what time does to a subscription --------------------------------------------------------------


def end(sb: Sandbox, account: Account, subscription: Obj, at: int) -> None:
    previous = {"status": subscription["status"]}
    subscription.update(status="canceled", ended_at=at, canceled_at=subscription["canceled_at"] or at)
    emit(sb, account, "customer.subscription.deleted", subscription, previous)


def start_period(subscription: Obj, start: int) -> None:
    for entry in subscription["items"]["data"]:
        entry["current_period_start"] = start
        entry["current_period_end"] = start + period_seconds(entry["price"])


def end_trial(sb: Sandbox, account: Account, subscription: Obj) -> None:
    """Active from the trial's end and billed, or paused when it has no payment method and its
    ``trial_settings`` say so."""
    previous = {"status": "trialing", "trial_end": subscription["trial_end"]}
    now = sb.now()
    customer = sb.get(account, "customer", subscription["customer"])
    no_payment_method = not customer["invoice_settings"].get("default_payment_method")
    pause = subscription["trial_settings"]["end_behavior"]["missing_payment_method"] == "pause"
    subscription["trial_end"] = min(subscription["trial_end"] or now, now)
    if pause and no_payment_method:
        subscription["status"] = "paused"
        emit(sb, account, "customer.subscription.paused", subscription, previous)
        return
    subscription["status"] = "active"
    start_period(subscription, subscription["trial_end"])
    emit(sb, account, "customer.subscription.updated", subscription, previous)
    invoices.bill(sb, account, subscription, "subscription_cycle")


def renew(sb: Sandbox, account: Account, subscription: Obj, now: int) -> None:
    """Every period that ended by ``now`` renews and bills, or ends the subscription when it was to
    cancel at period end; a trial that ended first ends first."""
    for _ in range(1000):
        if subscription["status"] in (*ENDED, "paused", "incomplete"):
            return
        if subscription["status"] == "trialing":
            if subscription["trial_end"] is None or subscription["trial_end"] > now:
                return
            end_trial(sb, account, subscription)
            continue
        period_end = subscription["items"]["data"][0]["current_period_end"]
        if period_end > now:
            return
        if subscription["cancel_at_period_end"]:
            end(sb, account, subscription, period_end)
            return
        before = copy.deepcopy(subscription["items"])
        start_period(subscription, period_end)
        emit(sb, account, "customer.subscription.updated", subscription, {"items": before})
        invoices.bill(sb, account, subscription, "subscription_cycle")
